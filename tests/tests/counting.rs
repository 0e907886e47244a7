//! `vip run` attached to a veth in a server namespace counts exactly what a client
//! namespace sends, per VIP, in native and in generic mode.

use std::{collections::BTreeMap, net::IpAddr};

use vip_tests::{
    daemon::{number, Daemon, Instance},
    netns::Lab,
    packets::{arp_request, FrameSpec},
    root::require_root,
};

fn config(mode: &str) -> String {
    format!(
        r#"
interfaces = ["{}"]
xdp_mode = "{mode}"

[[range]]
name = "web"
cidr = "192.0.2.0/24"

[[range]]
name = "web6"
cidr = "2001:db8:1::/64"
"#,
        Lab::SERVER_IF
    )
}

/// (destination, UDP packets, TCP packets); UDP frames carry 100 bytes of payload.
const VIP_TRAFFIC: [(&str, u64, u64); 8] = [
    ("192.0.2.1", 3, 1),
    ("192.0.2.7", 5, 2),
    ("192.0.2.100", 1, 7),
    ("192.0.2.200", 4, 4),
    ("192.0.2.255", 2, 3),
    ("2001:db8:1::1", 6, 1),
    ("2001:db8:1::80", 2, 5),
    ("2001:db8:1:0:ffff::9", 3, 3),
];
const NON_VIP_TRAFFIC: [(&str, u64); 3] =
    [("203.0.113.9", 4), ("198.18.0.2", 3), ("2001:db8:2::1", 2)];

fn udp(dst: IpAddr) -> Vec<u8> {
    FrameSpec::udp(dst, 5353).payload(100).build()
}

fn tcp(dst: IpAddr) -> Vec<u8> {
    FrameSpec::tcp(dst, 80).build()
}

fn counts_exact_per_vip(mode: &str) {
    let lab = Lab::new(&format!("cnt{}", &mode[..3]));
    let instance = Instance::new(mode);
    let daemon = Daemon::start(&lab.server, &config(mode), &instance);
    assert!(lab.server.has_xdp(Lab::SERVER_IF), "attached while running");

    let mut frames = Vec::new();
    let mut expected: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
    for (addr, n_udp, n_tcp) in VIP_TRAFFIC {
        let dst: IpAddr = addr.parse().unwrap();
        let (u, t) = (udp(dst), tcp(dst));
        expected.insert(
            dst,
            (
                n_udp + n_tcp,
                n_udp * u.len() as u64 + n_tcp * t.len() as u64,
            ),
        );
        frames.extend(std::iter::repeat_n(u, n_udp as usize));
        frames.extend(std::iter::repeat_n(t, n_tcp as usize));
    }
    let mut non_vip = 0;
    for (addr, n) in NON_VIP_TRAFFIC {
        frames.extend(std::iter::repeat_n(udp(addr.parse().unwrap()), n as usize));
        non_vip += n;
    }
    frames.push(arp_request());
    non_vip += 1;
    let total = frames.len() as u64;
    lab.client.send_frames(Lab::CLIENT_IF, frames);

    let stats = daemon.stats_once_counted(total);
    let global = &stats["global"];
    assert_eq!(
        number(global, "packets"),
        total,
        "every frame seen once: {stats:#}"
    );
    assert_eq!(number(global, "non_vip_packets"), non_vip, "{stats:#}");
    assert_eq!(number(global, "malformed_packets"), 0, "{stats:#}");

    let attachments = stats["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["interface"], Lab::SERVER_IF);
    assert_eq!(attachments[0]["mode"], mode);

    let mut seen: BTreeMap<IpAddr, (u64, u64)> = BTreeMap::new();
    for range in stats["ranges"].as_array().expect("ranges") {
        let (mut packets, mut bytes) = (0, 0);
        for vip in range["vips"].as_array().expect("vips") {
            let addr: IpAddr = vip["addr"]
                .as_str()
                .expect("addr")
                .parse()
                .expect("an address");
            let cidr: ipnet::IpNet = range["cidr"].as_str().unwrap().parse().unwrap();
            assert!(cidr.contains(&addr), "{addr} listed under {cidr}");
            seen.insert(addr, (number(vip, "packets"), number(vip, "bytes")));
            packets += number(vip, "packets");
            bytes += number(vip, "bytes");
        }
        assert_eq!(
            (number(range, "packets"), number(range, "bytes")),
            (packets, bytes),
            "range total = sum of VIPs: {range}"
        );
    }
    assert_eq!(seen, expected, "per-VIP packets and bytes");
    selected_ranges_and_busiest_vips(&lab, &instance, &stats);

    let log = daemon.stop();
    assert!(
        log.contains(&format!("{}: attached in {mode} mode", Lab::SERVER_IF)),
        "{log}"
    );
    assert!(
        !lab.server.has_xdp(Lab::SERVER_IF),
        "detached after SIGTERM"
    );
    assert!(!instance.pin_dir().exists(), "pins removed after SIGTERM");
}

/// `vip stats web --top 2`: only web, its two busiest VIPs (.100 and .200, 8
/// packets each: the lower address first), the other three counted as left
/// out, and web's totals still those of all five. A name the datapath does
/// not have is the operator's error.
fn selected_ranges_and_busiest_vips(lab: &Lab, instance: &Instance, all: &serde_json::Value) {
    let web_total = all["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .expect("web in the full report")
        .clone();
    let json: serde_json::Value = serde_json::from_str(
        &instance.vip_ok(&lab.server, &["stats", "web", "--top", "2", "--json"]),
    )
    .unwrap();
    let ranges = json["ranges"].as_array().expect("ranges");
    assert_eq!(ranges.len(), 1, "{json:#}");
    let web = &ranges[0];
    assert_eq!(web["name"], "web");
    let rows: Vec<(&str, u64)> = web["vips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["addr"].as_str().unwrap(), number(v, "packets")))
        .collect();
    assert_eq!(rows, [("192.0.2.100", 8), ("192.0.2.200", 8)]);
    assert_eq!(number(web, "vips_omitted"), 3);
    for total in ["packets", "bytes", "dropped_packets", "dropped_bytes"] {
        assert_eq!(number(web, total), number(&web_total, total), "{total}");
    }
    assert_eq!(number(web, "packets"), 32);

    let text = instance.vip_ok(&lab.server, &["stats", "web", "--top", "2"]);
    let vip_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  192.") || l.starts_with("  2001:"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(vip_rows, ["192.0.2.100", "192.0.2.200"], "{text}");
    assert!(
        text.contains("  (3 quieter VIPs not shown, in the range's totals)"),
        "{text}"
    );
    assert!(!text.contains("web6"), "{text}");

    let refused = instance.vip_refused(&lab.server, &["stats", "web", "nosuch"]);
    assert_eq!(
        refused.trim_end(),
        "vip: error: no range named \"nosuch\" in the running datapath (vip stats without names lists every range)"
    );
}

#[test]
fn counts_exact_per_vip_native() {
    if require_root("counts_exact_per_vip_native") {
        counts_exact_per_vip("native");
    }
}

#[test]
fn counts_exact_per_vip_generic() {
    if require_root("counts_exact_per_vip_generic") {
        counts_exact_per_vip("generic");
    }
}
