//! An LVS-TUN-style lab: the router is a director that tunnels client traffic
//! to VIPs towards the real server (with a TC egress program written for this
//! test, since this kernel has no ipip, ip6_tunnel or fou), and the real server
//! has no tunnel device. Without `decap`, TCP and UDP to the VIPs fail; with it,
//! they succeed through IPIP, IPv6-in-IPv6 and GUE, and every inner VIP is
//! counted exactly.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use aya::{
    maps::Array,
    programs::{tc::TcAttachType, SchedClassifier},
    Ebpf,
};
use serde_json::Value;
use vip_tests::{
    bench::baseline_object,
    daemon::{Daemon, Instance},
    netns::Netns,
    root::require_root,
    seed::{
        tcp_connect, udp_echoes, SeedLab, Services, ROUTER_SERVER_IF, SERVER_IF, SERVER_V4,
        SERVER_V6,
    },
};

const GUE_PORT: u16 = 6080;
const ROUTER_ON_SERVER_LINK_V6: &str = "2001:db8:ff02::1";

/// The director's modes (see `test_encap` in vip-ebpf's baseline.rs).
#[derive(Clone, Copy, Debug)]
enum Tunnel {
    Ipip = 1,
    Ip6ip6 = 2,
    Gue = 3,
}

/// Each tunnel with the VIP sent through it, and what `vip stats` calls it.
const CASES: [(Tunnel, &str, &str); 4] = [
    (Tunnel::Ipip, "192.0.2.11", "ipip"),
    (Tunnel::Ip6ip6, "2001:db8:1::12", "ip6ip6"),
    (Tunnel::Gue, "192.0.2.13", "gue"),
    (Tunnel::Gue, "2001:db8:1::14", "gue"),
];
/// Per VIP: SYN, ACK and RST of one connection, and two echoed datagrams.
const PACKETS_PER_VIP: u64 = 5;

fn config(decap: bool) -> String {
    let decap = if decap {
        format!("decap = [\"ipip\", \"ip6ip6\", \"gue\"]\ngue_port = {GUE_PORT}\n")
    } else {
        String::new()
    };
    format!(
        "interfaces = [\"{SERVER_IF}\"]\n{decap}\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         [[range]]\nname = \"web6\"\ncidr = \"2001:db8:1::/64\"\naccept = \"route\"\n"
    )
}

/// The test's tunnel director on the router's server-side link.
struct Director {
    ebpf: Ebpf,
}

impl Director {
    fn attach(router: &Netns) -> Director {
        let mut ebpf = Ebpf::load_file(baseline_object()).expect("loading the baseline object");
        let mut addrs: Array<_, [u8; 16]> = ebpf
            .map_mut("TEST_ENCAP_ADDRS")
            .expect("TEST_ENCAP_ADDRS")
            .try_into()
            .unwrap();
        let v4 = |s: &str| {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&s.parse::<std::net::Ipv4Addr>().unwrap().octets());
            out
        };
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        for (index, value) in [
            v4("198.18.2.1"),
            v4(SERVER_V4),
            v6(ROUTER_ON_SERVER_LINK_V6),
            v6(SERVER_V6),
            v4("192.0.2.0"),
            v6("2001:db8:1::"),
        ]
        .into_iter()
        .enumerate()
        {
            addrs.set(index as u32, value, 0).unwrap();
        }
        let ebpf = router.run_in(move || {
            let program: &mut SchedClassifier = ebpf
                .program_mut("test_encap")
                .expect("test_encap")
                .try_into()
                .unwrap();
            program.load().expect("loading test_encap");
            program
                .attach(ROUTER_SERVER_IF, TcAttachType::Egress)
                .expect("attaching test_encap");
            ebpf
        });
        let mut director = Director { ebpf };
        director.config(1, u32::from(GUE_PORT));
        director
    }

    fn config(&mut self, index: u32, value: u32) {
        let mut config: Array<_, u32> = self
            .ebpf
            .map_mut("TEST_ENCAP_CONFIG")
            .expect("TEST_ENCAP_CONFIG")
            .try_into()
            .unwrap();
        config.set(index, value, 0).unwrap();
    }

    fn tunnel(&mut self, tunnel: Tunnel) {
        self.config(0, tunnel as u32);
    }
}

fn vip_packets(stats: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for range in stats["ranges"].as_array().unwrap() {
        for vip in range["vips"].as_array().unwrap() {
            out.insert(
                vip["addr"].as_str().unwrap().to_string(),
                vip["packets"].as_u64().unwrap(),
            );
        }
    }
    out
}

#[test]
fn tunnelled_traffic_reaches_vips_only_with_decap() {
    if !require_root("tunnelled_traffic_reaches_vips_only_with_decap") {
        return;
    }
    let lab = SeedLab::new("tun");
    lab.router.sysctl("net.ipv4.ip_forward", "1");
    lab.router.sysctl("net.ipv6.conf.all.forwarding", "1");
    lab.router
        .ip(&["route", "add", "192.0.2.0/24", "via", SERVER_V4]);
    lab.router
        .ip(&["-6", "route", "add", "2001:db8:1::/64", "via", SERVER_V6]);
    let _services = Services::start(&lab.server);
    let mut director = Director::attach(&lab.router);
    let instance = Instance::new("tun");
    let daemon = Daemon::start(&lab.server, &config(false), &instance);

    for (tunnel, vip, _) in CASES {
        director.tunnel(tunnel);
        let vip: IpAddr = vip.parse().unwrap();
        assert!(
            tcp_connect(&lab.client, vip, Duration::from_millis(700)).is_err(),
            "TCP to {vip} through {tunnel:?} works without decap"
        );
        assert!(
            !udp_echoes(&lab.client, vip, Duration::from_millis(500)),
            "UDP to {vip} through {tunnel:?} works without decap"
        );
    }
    let stats = daemon.stats_json();
    assert_eq!(vip_packets(&stats), BTreeMap::new(), "no VIP saw a packet");
    assert!(
        stats["global"]["non_vip_packets"].as_u64().unwrap() >= 8,
        "the tunnels arrived, to the server's own address: {stats}"
    );

    daemon.rewrite_config(&config(true));
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    for (tunnel, vip, _) in CASES {
        director.tunnel(tunnel);
        let vip: IpAddr = vip.parse().unwrap();
        if let Err(e) = tcp_connect(&lab.client, vip, Duration::from_secs(3)) {
            panic!(
                "TCP to {vip} through {tunnel:?}: {e}\n{}",
                lab.diagnostics()
            );
        }
        for _ in 0..PACKETS_PER_VIP - 3 {
            assert!(
                udp_echoes(&lab.client, vip, Duration::from_secs(3)),
                "UDP to {vip} through {tunnel:?}"
            );
        }
    }

    let stats = daemon.stats_json();
    let expected: BTreeMap<String, u64> = CASES
        .iter()
        .map(|(_, vip, _)| (vip.to_string(), PACKETS_PER_VIP))
        .collect();
    assert_eq!(vip_packets(&stats), expected, "inner VIPs counted exactly");
    let mut decapsulated = BTreeMap::new();
    for (_, _, name) in CASES {
        *decapsulated.entry(name).or_insert(0) += PACKETS_PER_VIP;
    }
    for (name, packets) in decapsulated {
        assert_eq!(
            stats["global"]["decapsulated"][name].as_u64(),
            Some(packets),
            "{name}: {stats}"
        );
    }
}
