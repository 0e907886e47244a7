//! `cargo xtask demo`: a two-namespace lab, vip on the server side with the
//! embedded example config, traffic to several VIPs, the stats, then cleanup.

use std::net::IpAddr;

use vip_tests::{
    daemon::{Daemon, Instance},
    netns::Lab,
    packets::FrameSpec,
};

const CONFIG: &str = include_str!("../../../examples/demo.toml");

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("vip-demo: needs root (run it through `cargo xtask demo`)");
        std::process::exit(1);
    }
    println!("demo: building a lab: namespaces client and server, veth vipc0 <-> vips0");
    let lab = Lab::new("demo");
    let instance = Instance::new("demo");
    println!("demo: starting `vip run` in the server namespace with examples/demo.toml");
    let daemon = Daemon::start(&lab.server, CONFIG, &instance);

    let traffic: [(&str, usize); 10] = [
        ("192.0.2.1", 10),
        ("192.0.2.7", 25),
        ("192.0.2.53", 4),
        ("192.0.2.80", 5),
        ("192.0.2.255", 3),
        ("198.51.100.5", 12),
        ("2001:db8:1::1", 8),
        ("2001:db8:1::53", 4),
        ("203.0.113.9", 6),
        ("2001:db8:2::1", 2),
    ];
    let mut frames = Vec::new();
    for (addr, count) in traffic {
        let dst: IpAddr = addr.parse().expect("demo address");
        println!("demo: sending {count} UDP and {count} TCP packets to {dst}");
        for _ in 0..count {
            frames.push(FrameSpec::udp(dst, 53).payload(32).build());
            frames.push(FrameSpec::tcp(dst, 80).build());
        }
    }
    lab.client.send_frames(Lab::CLIENT_IF, frames);
    println!(
        "demo: 192.0.2.53 is range dns inside web, whose list allows UDP 53 only: its TCP packets are dropped"
    );
    println!("demo: 203.0.113.9 and 2001:db8:2::1 are in no range: they count as non-VIP\n");

    print!("{}", instance.vip_ok(&lab.server, &["stats"]));

    let log = daemon.stop();
    println!("\ndemo: vip run log:\n{log}");
    drop(lab);
    println!("demo: done; the namespaces and pins are gone");
}
