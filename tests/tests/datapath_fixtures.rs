//! Fixture table for `vip_xdp` under BPF_PROG_TEST_RUN: frame in, verdict and
//! exact counter deltas out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vip_tests::{
    fixture::{self, Deltas},
    packets::{arp_request, FrameSpec, ETH_P_8021AD, ETH_P_8021Q, L3_OFFSET},
    root::require_root,
};
use vip_userspace::stats::GlobalReport;

const XDP_PASS: u32 = 2;

const CONFIG: &str = r#"
interfaces = ["lo"]
sparse_vip_capacity = 8

[[range]]
name = "web"
cidr = "192.0.2.0/24"

[[range]]
name = "small"
cidr = "198.51.100.16/28"

[[range]]
name = "v6"
cidr = "2001:db8:1::/64"
"#;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// What a frame should do to the counters.
enum Expect {
    /// Counted for this range and VIP.
    Hit(&'static str, IpAddr),
    /// Well-formed, in no range.
    NonVip,
    Malformed,
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, frame: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        frame,
        expect,
    }
}

fn truncated(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    assert!(len < frame.len());
    frame.truncate(len);
    frame
}

fn with_byte(mut frame: Vec<u8>, offset: usize, value: u8) -> Vec<u8> {
    frame[offset] = value;
    frame
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let vip = v4(192, 0, 2, 7);
    let udp = |dst: IpAddr| FrameSpec::udp(dst, 53).frame_len(64).build();
    let qinq = FrameSpec::udp(vip, 53)
        .vlan(ETH_P_8021AD, 100)
        .vlan(ETH_P_8021Q, 200);
    vec![
        case("v4 udp hit", udp(vip), Hit("web", vip)),
        case(
            "v4 tcp hit",
            FrameSpec::tcp(v4(192, 0, 2, 8), 80).build(),
            Hit("web", v4(192, 0, 2, 8)),
        ),
        case(
            "v4 first address of /24",
            udp(v4(192, 0, 2, 0)),
            Hit("web", v4(192, 0, 2, 0)),
        ),
        case(
            "v4 last address of /24",
            udp(v4(192, 0, 2, 255)),
            Hit("web", v4(192, 0, 2, 255)),
        ),
        case(
            "v4 first address of /28",
            udp(v4(198, 51, 100, 16)),
            Hit("small", v4(198, 51, 100, 16)),
        ),
        case(
            "v4 last address of /28",
            udp(v4(198, 51, 100, 31)),
            Hit("small", v4(198, 51, 100, 31)),
        ),
        case("v4 miss just below /28", udp(v4(198, 51, 100, 15)), NonVip),
        case("v4 miss just above /28", udp(v4(198, 51, 100, 32)), NonVip),
        case("v4 miss other block", udp(v4(203, 0, 113, 9)), NonVip),
        case("v4 miss link address", udp(v4(198, 18, 0, 2)), NonVip),
        case(
            "v6 udp hit",
            udp(v6("2001:db8:1::7")),
            Hit("v6", v6("2001:db8:1::7")),
        ),
        case(
            "v6 tcp hit",
            FrameSpec::tcp(v6("2001:db8:1::8"), 443).build(),
            Hit("v6", v6("2001:db8:1::8")),
        ),
        case(
            "v6 first address of /64",
            udp(v6("2001:db8:1::")),
            Hit("v6", v6("2001:db8:1::")),
        ),
        case(
            "v6 last address of /64",
            udp(v6("2001:db8:1:0:ffff:ffff:ffff:ffff")),
            Hit("v6", v6("2001:db8:1:0:ffff:ffff:ffff:ffff")),
        ),
        case("v6 miss", udp(v6("2001:db8:2::1")), NonVip),
        case(
            "one 802.1Q tag",
            FrameSpec::udp(vip, 53).vlan(ETH_P_8021Q, 10).build(),
            Hit("web", vip),
        ),
        case(
            "one 802.1ad tag",
            FrameSpec::udp(vip, 53).vlan(ETH_P_8021AD, 10).build(),
            Hit("web", vip),
        ),
        case("802.1ad then 802.1Q", qinq.clone().build(), Hit("web", vip)),
        case(
            "802.1Q then 802.1ad, IPv6",
            FrameSpec::udp(v6("2001:db8:1::9"), 53)
                .vlan(ETH_P_8021Q, 1)
                .vlan(ETH_P_8021AD, 2)
                .build(),
            Hit("v6", v6("2001:db8:1::9")),
        ),
        case(
            "three tags are not parsed",
            qinq.clone().vlan(ETH_P_8021Q, 300).build(),
            NonVip,
        ),
        case(
            "IPv4 with 4 bytes of options",
            FrameSpec::udp(vip, 53).ipv4_options(&[1, 1, 1, 0]).build(),
            Hit("web", vip),
        ),
        case(
            "IPv4 with 40 bytes of options",
            FrameSpec::udp(vip, 53).ipv4_options(&[1; 40]).build(),
            Hit("web", vip),
        ),
        case("ARP", arp_request(), NonVip),
        case(
            "truncated in the VLAN tag",
            truncated(qinq.clone().build(), 16),
            Malformed,
        ),
        case(
            "truncated in the second VLAN tag",
            truncated(qinq.build(), 20),
            Malformed,
        ),
        case(
            "truncated IPv4 header",
            truncated(udp(vip), L3_OFFSET + 19),
            Malformed,
        ),
        case(
            "IPv4 options cut short",
            truncated(
                FrameSpec::udp(vip, 53).ipv4_options(&[1; 8]).build(),
                L3_OFFSET + 24,
            ),
            Malformed,
        ),
        case(
            "IPv4 IHL 4",
            with_byte(udp(vip), L3_OFFSET, 0x44),
            Malformed,
        ),
        case(
            "IPv4 version 6 under the IPv4 ethertype",
            with_byte(udp(vip), L3_OFFSET, 0x65),
            Malformed,
        ),
        case(
            "truncated IPv6 header",
            truncated(udp(v6("2001:db8:1::7")), L3_OFFSET + 39),
            Malformed,
        ),
        case(
            "IPv6 version 4 under the IPv6 ethertype",
            with_byte(udp(v6("2001:db8:1::7")), L3_OFFSET, 0x40),
            Malformed,
        ),
    ]
}

fn expected(case: &Case) -> Deltas {
    let bytes = case.frame.len() as u64;
    let mut deltas = Deltas {
        global: GlobalReport {
            packets: 1,
            ..GlobalReport::default()
        },
        ..Deltas::default()
    };
    match case.expect {
        Expect::Hit(range, vip) => {
            deltas.ranges.insert(range.to_string(), (1, bytes, 0));
            deltas.vips.insert(vip, (1, bytes));
        }
        Expect::NonVip => deltas.global.non_vip_packets = 1,
        Expect::Malformed => deltas.global.malformed_packets = 1,
    }
    deltas
}

#[test]
fn xdp_fixture_table() {
    if !require_root("xdp_fixture_table") {
        return;
    }
    let mut datapath = fixture::load(CONFIG);
    let mut failures = Vec::new();
    for case in cases() {
        let (verdict, deltas) = fixture::run_xdp(&mut datapath, &case.frame);
        let want = expected(&case);
        if verdict != XDP_PASS || deltas != want {
            failures.push(format!(
                "{}: verdict {verdict} (want {XDP_PASS})\n  got  {deltas:?}\n  want {want:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sparse_table_overflow_is_counted_in_the_range() {
    if !require_root("sparse_table_overflow_is_counted_in_the_range") {
        return;
    }
    let config = CONFIG.replace("sparse_vip_capacity = 8", "sparse_vip_capacity = 2");
    let mut datapath = fixture::load(&config);
    let frame = |vip: &str| FrameSpec::udp(v6(vip), 53).frame_len(80).build();
    for vip in ["2001:db8:1::1", "2001:db8:1::2"] {
        let (_, deltas) = fixture::run_xdp(&mut datapath, &frame(vip));
        assert_eq!(
            deltas.vips.get(&v6(vip)),
            Some(&(1, 80)),
            "{vip} gets a slot"
        );
    }
    let (verdict, deltas) = fixture::run_xdp(&mut datapath, &frame("2001:db8:1::3"));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        deltas.ranges.get("v6"),
        Some(&(1, 80, 1)),
        "counted in the range, as overflow"
    );
    assert!(deltas.vips.is_empty(), "no VIP slot moved: {deltas:?}");
    // A VIP that has a slot still counts once the table is full.
    let (_, deltas) = fixture::run_xdp(&mut datapath, &frame("2001:db8:1::1"));
    assert_eq!(deltas.vips.get(&v6("2001:db8:1::1")), Some(&(1, 80)));
    assert_eq!(deltas.ranges.get("v6"), Some(&(1, 80, 0)));
}
