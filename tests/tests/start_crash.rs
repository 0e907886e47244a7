//! A fresh start killed (`VIP_FAULT_AT=start-pinning`) after it pinned its
//! links and every map but the last: the pins are incomplete, its link still
//! attached. The next start (as the shipped unit's restart would be) removes
//! them and starts afresh, counting exactly, where it used to refuse until
//! `vip down`.
//!
//! The test thread is pinned to CPU 0, and so the threads that send its frames.

use std::net::IpAddr;

use vip_tests::{
    daemon::{number, Daemon, Instance},
    fixture,
    netns::Lab,
    root::require_root,
};
use vip_userspace::datapath::pin;

const VIPS: [&str; 2] = ["192.0.2.10", "192.0.2.11"];

fn config() -> String {
    format!(
        "interfaces = [\"{}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n",
        Lab::SERVER_IF
    )
}

#[test]
fn a_start_after_one_killed_before_its_pins_were_complete_starts_afresh() {
    if !require_root("a_start_after_one_killed_before_its_pins_were_complete_starts_afresh") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("scrash");
    let instance = Instance::new("scrash");
    let wrapper = ["env".to_string(), "VIP_FAULT_AT=start-pinning".to_string()];
    let Err(log) = Daemon::try_start(&lab.server, &config(), &instance, &[], &wrapper) else {
        panic!("vip run came up past start-pinning");
    };
    assert!(log.contains("VIP_FAULT_AT=start-pinning"), "{log}");
    assert!(instance.pin_dir().exists(), "no pins were left");
    assert!(
        !pin::is_complete(instance.pin_dir()),
        "the pins are complete"
    );
    let orphan = lab.server.xdp_prog_id(Lab::SERVER_IF);
    assert!(orphan.is_some(), "the pinned link was detached");

    let daemon = Daemon::start(&lab.server, &config(), &instance);
    let log = daemon.log();
    assert!(
        log.contains("holds the pins of a start that never finished"),
        "{log}"
    );
    let attached = lab.server.xdp_prog_id(Lab::SERVER_IF);
    assert!(
        attached.is_some() && attached != orphan,
        "attached {attached:?}, the killed start's {orphan:?}"
    );
    let vips: Vec<IpAddr> = VIPS.iter().map(|v| v.parse().unwrap()).collect();
    let sent = lab.send_udp(&vips, 53, |_| 3);
    assert_eq!(sent, 6);
    let stats = daemon.stats_once_counted(sent);
    let range = &stats["ranges"][0];
    assert_eq!(range["name"], "web", "{stats:#}");
    assert_eq!(number(range, "packets"), 6, "{stats:#}");
    assert_eq!(number(range, "bytes"), 6 * 90, "{stats:#}");
    assert_eq!(number(range, "dropped_packets"), 0, "{stats:#}");
    daemon.stop();
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}
