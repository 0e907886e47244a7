//! The end-to-end generator's packet-socket source, the one it falls back to
//! where the kernel refuses XDP live frames: every frame it says it sent
//! reaches the receiver's XDP program, whichever source this kernel allows.

use std::{net::IpAddr, time::Duration};

use vip_tests::{
    e2e::{attach_baseline, choose_source, received, source, Generator, Source},
    netns::Lab,
    packets::FrameSpec,
    root::require_root,
};

#[test]
fn the_packet_socket_source_delivers_every_frame_it_sends() {
    if !require_root("the_packet_socket_source_delivers_every_frame_it_sends") {
        return;
    }
    assert!(choose_source(Source::PacketSocket));
    let lab = Lab::new("e2e-gen");
    let _drop = attach_baseline(&lab, "baseline_drop");
    let targets: Vec<IpAddr> = (1..=3)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect();
    let generator = Generator::new(FrameSpec::udp(targets[0], 9), &targets);
    let before = received(&lab);
    let (sent, elapsed) = generator.run(&lab, Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(200)); // let NAPI drain
    assert_eq!(source(), Some(Source::PacketSocket));
    assert!(sent > 1_000, "sent {sent} frames in {elapsed:?}");
    assert_eq!(received(&lab) - before, sent);
}
