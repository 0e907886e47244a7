//! Fixture tables for `vip_xdp` and `vip_tc` under BPF_PROG_TEST_RUN: frame in,
//! verdict and exact counter deltas out. Every case runs through both programs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vip_tests::{
    fixture::{self, Deltas, Moved, Program, Verdict},
    packets::{arp_request, Ext, FrameSpec, ETH_P_8021AD, ETH_P_8021Q, L3_OFFSET},
    root::require_root,
};
use vip_userspace::stats::GlobalReport;

const CONFIG: &str = r#"
interfaces = ["lo"]
sparse_vip_capacity = 64

[[range]]
name = "web"
cidr = "192.0.2.0/24"
allow = ["tcp/80", "tcp/443", "udp/53", "udp/5000-5100", "icmp"]

[[range]]
name = "small"
cidr = "198.51.100.16/28"

[[range]]
name = "ssh"
cidr = "203.0.113.0/24"
allow = ["tcp/22"]

[[range]]
name = "v6"
cidr = "2001:db8:1::/64"
allow = ["tcp/80", "udp/53", "icmp"]

[[range]]
name = "open6"
cidr = "2001:db8:2::/64"

[[range]]
name = "ssh6"
cidr = "2001:db8:3::/64"
allow = ["tcp/22"]

# 32 entries, the most a list may have: tcp/1, tcp/3 ... tcp/61, then udp/65535.
[[range]]
name = "many"
cidr = "198.51.100.128/25"
allow = ["tcp/1", "tcp/3", "tcp/5", "tcp/7", "tcp/9", "tcp/11", "tcp/13", "tcp/15", "tcp/17", "tcp/19", "tcp/21", "tcp/23", "tcp/25", "tcp/27", "tcp/29", "tcp/31", "tcp/33", "tcp/35", "tcp/37", "tcp/39", "tcp/41", "tcp/43", "tcp/45", "tcp/47", "tcp/49", "tcp/51", "tcp/53", "tcp/55", "tcp/57", "tcp/59", "tcp/61", "udp/65535"]

# Dense IPv6 ranges (/112 or longer): alone in its /112 block, two in one
# block (found through the trie), a whole block; and one that declares VIPs,
# so stays sparse.
[[range]]
name = "dense6"
cidr = "2001:db8:5::100/120"
allow = ["tcp/80"]

[[range]]
name = "pair6a"
cidr = "2001:db8:6::10/124"

[[range]]
name = "pair6b"
cidr = "2001:db8:6::40/126"

[[range]]
name = "whole6"
cidr = "2001:db8:7::/112"

[[range]]
name = "declared6"
cidr = "2001:db8:8::/120"
vips = ["2001:db8:8::5"]
"#;

/// Ranges inside ranges, in a datapath of their own (so that the other tables'
/// /24s keep their direct entries). The most specific range judges and counts.
const NESTED_CONFIG: &str = r#"
interfaces = ["lo"]
sparse_vip_capacity = 64

# Inner ranges may come before their outer ones.
[[range]]
name = "admin"
cidr = "192.0.2.53/32"
allow = ["tcp/22"]

[[range]]
name = "web"
cidr = "192.0.2.0/24"
allow = ["tcp/80"]

[[range]]
name = "quarter"
cidr = "192.0.2.64/26"

[[range]]
name = "pair"
cidr = "192.0.2.70/31"
allow = ["udp/9"]

# The link range as a sparse range (wider than /16) with a dense /24 inside:
# the inner range takes the /24's direct entry. Nothing is sent anywhere:
# BPF_PROG_TEST_RUN only.
[[range]]
name = "wide_in"
cidr = "198.18.7.0/24"

[[range]]
name = "wide"
cidr = "198.18.0.0/15"
allow = ["tcp/80"]

[[range]]
name = "v6"
cidr = "2001:db8:1::/64"
allow = ["tcp/80"]

[[range]]
name = "v6host"
cidr = "2001:db8:1::53/128"
allow = ["udp/53"]

[[range]]
name = "v6block"
cidr = "2001:db8:1::1:0/112"

[[range]]
name = "d6"
cidr = "2001:db8:2::/112"
allow = ["tcp/80"]

[[range]]
name = "d6in"
cidr = "2001:db8:2::10/124"
"#;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// What a frame should do.
#[derive(Clone, Copy)]
enum Expect {
    Accept(&'static str, IpAddr),
    /// Accepted, and counted as a later fragment.
    Fragment(&'static str, IpAddr),
    Drop(&'static str, IpAddr),
    /// Well-formed, in no range.
    NonVip,
    /// Counted as malformed; passed.
    Malformed,
    /// Counted as malformed; dropped (to a range with an allow list).
    MalformedDrop,
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

fn udp(dst: IpAddr, port: u16) -> Vec<u8> {
    FrameSpec::udp(dst, port).frame_len(80).build()
}

fn tcp(dst: IpAddr, port: u16) -> Vec<u8> {
    FrameSpec::tcp(dst, port).build()
}

/// Parsing, addressing and layer 2: the foundation cases.
fn parsing_cases() -> Vec<Case> {
    use Expect::*;
    let vip = v4(192, 0, 2, 7);
    let qinq = FrameSpec::udp(vip, 53)
        .vlan(ETH_P_8021AD, 100)
        .vlan(ETH_P_8021Q, 200);
    vec![
        case("v4 udp hit", udp(vip, 53), Accept("web", vip)),
        case(
            "v4 tcp hit",
            tcp(v4(192, 0, 2, 8), 80),
            Accept("web", v4(192, 0, 2, 8)),
        ),
        case(
            "v4 first address of /24",
            udp(v4(192, 0, 2, 0), 53),
            Accept("web", v4(192, 0, 2, 0)),
        ),
        case(
            "v4 last address of /24",
            udp(v4(192, 0, 2, 255), 53),
            Accept("web", v4(192, 0, 2, 255)),
        ),
        case(
            "v4 first address of /28",
            udp(v4(198, 51, 100, 16), 9),
            Accept("small", v4(198, 51, 100, 16)),
        ),
        case(
            "v4 last address of /28",
            udp(v4(198, 51, 100, 31), 9),
            Accept("small", v4(198, 51, 100, 31)),
        ),
        case(
            "v4 miss just below /28",
            udp(v4(198, 51, 100, 15), 9),
            NonVip,
        ),
        case(
            "v4 miss just above /28",
            udp(v4(198, 51, 100, 32), 9),
            NonVip,
        ),
        case("v4 miss link address", udp(v4(198, 18, 0, 2), 53), NonVip),
        case(
            "v6 udp hit",
            udp(v6("2001:db8:1::7"), 53),
            Accept("v6", v6("2001:db8:1::7")),
        ),
        case(
            "v6 tcp hit",
            tcp(v6("2001:db8:1::8"), 80),
            Accept("v6", v6("2001:db8:1::8")),
        ),
        case(
            "v6 first address of /64",
            udp(v6("2001:db8:1::"), 53),
            Accept("v6", v6("2001:db8:1::")),
        ),
        case(
            "v6 last address of /64",
            udp(v6("2001:db8:1:0:ffff:ffff:ffff:ffff"), 53),
            Accept("v6", v6("2001:db8:1:0:ffff:ffff:ffff:ffff")),
        ),
        case("v6 miss", udp(v6("2001:db8:4::1"), 53), NonVip),
        case(
            "one 802.1Q tag",
            FrameSpec::udp(vip, 53).vlan(ETH_P_8021Q, 10).build(),
            Accept("web", vip),
        ),
        case(
            "one 802.1ad tag",
            FrameSpec::udp(vip, 53).vlan(ETH_P_8021AD, 10).build(),
            Accept("web", vip),
        ),
        case(
            "802.1ad then 802.1Q",
            qinq.clone().build(),
            Accept("web", vip),
        ),
        case(
            "802.1Q then 802.1ad, IPv6",
            FrameSpec::udp(v6("2001:db8:1::9"), 53)
                .vlan(ETH_P_8021Q, 1)
                .vlan(ETH_P_8021AD, 2)
                .build(),
            Accept("v6", v6("2001:db8:1::9")),
        ),
        case(
            "two tags, denied port",
            FrameSpec::udp(vip, 54)
                .vlan(ETH_P_8021AD, 1)
                .vlan(ETH_P_8021Q, 2)
                .build(),
            Drop("web", vip),
        ),
        case(
            "three tags are not parsed",
            qinq.clone().vlan(ETH_P_8021Q, 300).build(),
            NonVip,
        ),
        case(
            "IPv4 with 4 bytes of options",
            FrameSpec::udp(vip, 53).ipv4_options(&[1, 1, 1, 0]).build(),
            Accept("web", vip),
        ),
        case(
            "IPv4 with 40 bytes of options",
            FrameSpec::udp(vip, 53).ipv4_options(&[1; 40]).build(),
            Accept("web", vip),
        ),
        case(
            "IPv4 options, denied port",
            FrameSpec::udp(vip, 54).ipv4_options(&[1; 12]).build(),
            Drop("web", vip),
        ),
        case("ARP", arp_request(), NonVip),
    ]
}

/// Allow lists: ports, ranges of ports, ICMP, path MTU.
fn policy_cases() -> Vec<Case> {
    use Expect::*;
    let web = v4(192, 0, 2, 20);
    let ssh = v4(203, 0, 113, 5);
    let (v6vip, ssh6) = (v6("2001:db8:1::20"), v6("2001:db8:3::5"));
    let many = v4(198, 51, 100, 200);
    vec![
        case("tcp/443 allowed", tcp(web, 443), Accept("web", web)),
        case("tcp/8080 denied", tcp(web, 8080), Drop("web", web)),
        case("udp/54 denied", udp(web, 54), Drop("web", web)),
        case(
            "udp 4999 below the port range",
            udp(web, 4999),
            Drop("web", web),
        ),
        case(
            "udp 5000 first of the port range",
            udp(web, 5000),
            Accept("web", web),
        ),
        case(
            "udp 5100 last of the port range",
            udp(web, 5100),
            Accept("web", web),
        ),
        case(
            "udp 5101 above the port range",
            udp(web, 5101),
            Drop("web", web),
        ),
        case("tcp/53 is not udp/53", tcp(web, 53), Drop("web", web)),
        case(
            "no allow list: any port",
            tcp(v4(198, 51, 100, 20), 12345),
            Accept("small", v4(198, 51, 100, 20)),
        ),
        case(
            "no allow list: any protocol",
            FrameSpec::icmp(v4(198, 51, 100, 21), 8, 0).build(),
            Accept("small", v4(198, 51, 100, 21)),
        ),
        case(
            "echo allowed by icmp",
            FrameSpec::icmp(web, 8, 0).build(),
            Accept("web", web),
        ),
        case(
            "echo denied without icmp",
            FrameSpec::icmp(ssh, 8, 0).build(),
            Drop("ssh", ssh),
        ),
        case(
            "fragmentation needed always passes",
            FrameSpec::icmp(ssh, 3, 4).build(),
            Accept("ssh", ssh),
        ),
        case(
            "port unreachable denied without icmp",
            FrameSpec::icmp(ssh, 3, 3).build(),
            Drop("ssh", ssh),
        ),
        case(
            "time exceeded allowed by icmp",
            FrameSpec::icmp(web, 11, 0).build(),
            Accept("web", web),
        ),
        case(
            "v6 echo allowed by icmp",
            FrameSpec::icmp(v6vip, 128, 0).build(),
            Accept("v6", v6vip),
        ),
        case(
            "v6 echo denied without icmp",
            FrameSpec::icmp(ssh6, 128, 0).build(),
            Drop("ssh6", ssh6),
        ),
        case(
            "v6 packet too big always passes",
            FrameSpec::icmp(ssh6, 2, 0).build(),
            Accept("ssh6", ssh6),
        ),
        case("v6 tcp/22 allowed", tcp(ssh6, 22), Accept("ssh6", ssh6)),
        case("v6 udp/22 denied", udp(ssh6, 22), Drop("ssh6", ssh6)),
        case(
            "v6 to a range without allow list",
            tcp(v6("2001:db8:2::1"), 9),
            Accept("open6", v6("2001:db8:2::1")),
        ),
        case(
            "gre to an allow list",
            with_byte(udp(web, 53), L3_OFFSET + 9, 47),
            Drop("web", web),
        ),
        case("32 entries: the first", tcp(many, 1), Accept("many", many)),
        case("32 entries: the 31st", tcp(many, 61), Accept("many", many)),
        case(
            "32 entries: the last, port 65535",
            udp(many, 65_535),
            Accept("many", many),
        ),
        case("32 entries: between two", tcp(many, 2), Drop("many", many)),
        case("32 entries: port 0", tcp(many, 0), Drop("many", many)),
        case(
            "32 entries: past the 31st",
            tcp(many, 63),
            Drop("many", many),
        ),
        case(
            "32 entries: tcp/65535 is not udp/65535",
            tcp(many, 65_535),
            Drop("many", many),
        ),
        case(
            "32 entries: udp/1 is not tcp/1",
            udp(many, 1),
            Drop("many", many),
        ),
        case(
            "32 entries: later fragment of tcp",
            FrameSpec::tcp(many, 9).ipv4_fragment(10, true).build(),
            Fragment("many", many),
        ),
    ]
}

/// Fragments and IPv6 extension headers.
fn fragment_and_extension_cases() -> Vec<Case> {
    use Expect::*;
    let web = v4(192, 0, 2, 30);
    let ssh = v4(203, 0, 113, 30);
    let vip = v6("2001:db8:1::30");
    let six = [
        Ext::HopByHop,
        Ext::DestOpts,
        Ext::Routing,
        Ext::Fragment {
            offset: 0,
            more: true,
        },
        Ext::Auth,
        Ext::DestOpts,
    ];
    let mut chain6 = FrameSpec::tcp(vip, 80);
    for ext in six {
        chain6 = chain6.ext(ext);
    }
    let mut cases = vec![
        case(
            "v4 first fragment judged by its port",
            FrameSpec::udp(web, 53).ipv4_fragment(0, true).build(),
            Accept("web", web),
        ),
        case(
            "v4 first fragment, denied port",
            FrameSpec::udp(web, 54).ipv4_fragment(0, true).build(),
            Drop("web", web),
        ),
        case(
            "v4 later fragment of an allowed protocol",
            FrameSpec::udp(web, 54).ipv4_fragment(185, false).build(),
            Fragment("web", web),
        ),
        case(
            "v4 later fragment of a denied protocol",
            FrameSpec::udp(ssh, 22).ipv4_fragment(185, true).build(),
            Drop("ssh", ssh),
        ),
        case(
            "v4 later fragment of tcp to tcp/22",
            FrameSpec::tcp(ssh, 9).ipv4_fragment(10, true).build(),
            Fragment("ssh", ssh),
        ),
        // A range without an allow list reads nothing past the IP header.
        case(
            "v4 later fragment, no allow list",
            FrameSpec::udp(v4(198, 51, 100, 22), 1)
                .ipv4_fragment(3, false)
                .build(),
            Accept("small", v4(198, 51, 100, 22)),
        ),
        case(
            "v6 first fragment judged by its port",
            FrameSpec::udp(vip, 53)
                .ext(Ext::Fragment {
                    offset: 0,
                    more: true,
                })
                .build(),
            Accept("v6", vip),
        ),
        case(
            "v6 later fragment of an allowed protocol",
            FrameSpec::udp(vip, 54)
                .ext(Ext::Fragment {
                    offset: 100,
                    more: false,
                })
                .build(),
            Fragment("v6", vip),
        ),
        case(
            "v6 later fragment of a denied protocol",
            FrameSpec::udp(v6("2001:db8:3::9"), 22)
                .ext(Ext::Fragment {
                    offset: 1,
                    more: true,
                })
                .build(),
            Drop("ssh6", v6("2001:db8:3::9")),
        ),
        // Found by the differential test: the walk read past a later fragment.
        case(
            "v6 later fragment with one byte of payload",
            truncated(
                FrameSpec::udp(vip, 53)
                    .ext(Ext::Fragment {
                        offset: 9,
                        more: true,
                    })
                    .build(),
                L3_OFFSET + 40 + 8 + 1,
            ),
            Fragment("v6", vip),
        ),
        case(
            "six extension headers, allowed port",
            chain6.clone().build(),
            Accept("v6", vip),
        ),
        case(
            "seven extension headers",
            chain6.clone().ext(Ext::DestOpts).build(),
            MalformedDrop,
        ),
        case(
            "seven extension headers, no allow list",
            {
                let mut spec = FrameSpec::tcp(v6("2001:db8:2::7"), 80);
                for _ in 0..7 {
                    spec = spec.ext(Ext::DestOpts);
                }
                spec.build()
            },
            Accept("open6", v6("2001:db8:2::7")),
        ),
        case(
            "extension chain cut short",
            truncated(chain6.build(), L3_OFFSET + 40 + 20),
            MalformedDrop,
        ),
    ];
    for (name_ok, name_denied, ext) in [
        (
            "hop-by-hop, allowed port",
            "hop-by-hop, denied port",
            Ext::HopByHop,
        ),
        (
            "routing, allowed port",
            "routing, denied port",
            Ext::Routing,
        ),
        (
            "destination options, allowed port",
            "destination options, denied port",
            Ext::DestOpts,
        ),
        (
            "authentication header, allowed port",
            "authentication header, denied port",
            Ext::Auth,
        ),
        (
            "fragment header, allowed port",
            "fragment header, denied port",
            Ext::Fragment {
                offset: 0,
                more: false,
            },
        ),
    ] {
        cases.push(case(
            name_ok,
            FrameSpec::tcp(vip, 80).ext(ext).build(),
            Accept("v6", vip),
        ));
        cases.push(case(
            name_denied,
            FrameSpec::tcp(vip, 81).ext(ext).build(),
            Drop("v6", vip),
        ));
    }
    cases
}

/// Truncation at every layer.
fn truncation_cases() -> Vec<Case> {
    use Expect::*;
    let web = v4(192, 0, 2, 40);
    let open = v4(198, 51, 100, 23);
    let qinq = FrameSpec::udp(web, 53)
        .vlan(ETH_P_8021AD, 100)
        .vlan(ETH_P_8021Q, 200);
    vec![
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
            truncated(udp(web, 53), L3_OFFSET + 19),
            Malformed,
        ),
        case(
            "IPv4 options cut short",
            truncated(
                FrameSpec::udp(web, 53).ipv4_options(&[1; 8]).build(),
                L3_OFFSET + 24,
            ),
            Malformed,
        ),
        case(
            "IPv4 IHL 4",
            with_byte(udp(web, 53), L3_OFFSET, 0x44),
            Malformed,
        ),
        case(
            "IPv4 version 6 under the IPv4 ethertype",
            with_byte(udp(web, 53), L3_OFFSET, 0x65),
            Malformed,
        ),
        case(
            "truncated IPv6 header",
            truncated(udp(v6("2001:db8:1::7"), 53), L3_OFFSET + 39),
            Malformed,
        ),
        case(
            "IPv6 version 4 under the IPv6 ethertype",
            with_byte(udp(v6("2001:db8:1::7"), 53), L3_OFFSET, 0x40),
            Malformed,
        ),
        case(
            "truncated TCP header, allow list",
            truncated(tcp(web, 80), L3_OFFSET + 20 + 19),
            MalformedDrop,
        ),
        case(
            "truncated TCP header, no allow list",
            truncated(tcp(open, 80), L3_OFFSET + 20 + 19),
            Accept("small", open),
        ),
        case(
            "truncated UDP header, allow list",
            truncated(udp(web, 53), L3_OFFSET + 20 + 7),
            MalformedDrop,
        ),
        case(
            "truncated ICMP header, allow list",
            truncated(FrameSpec::icmp(web, 8, 0).build(), L3_OFFSET + 20 + 7),
            MalformedDrop,
        ),
        case(
            "truncated IPv6 UDP header",
            truncated(udp(v6("2001:db8:1::7"), 53), L3_OFFSET + 40 + 7),
            MalformedDrop,
        ),
        case(
            "truncated IPv6 extension header",
            truncated(
                FrameSpec::tcp(v6("2001:db8:1::7"), 80)
                    .ext(Ext::HopByHop)
                    .build(),
                L3_OFFSET + 40 + 6,
            ),
            MalformedDrop,
        ),
    ]
}

/// The IPv6 dense index: each VIP in its own dense slot, its allow list
/// applied, and the addresses of a block that no range holds left alone.
fn v6_dense_cases() -> Vec<Case> {
    use Expect::*;
    vec![
        case(
            "first address of a range alone in its block",
            tcp(v6("2001:db8:5::100"), 80),
            Accept("dense6", v6("2001:db8:5::100")),
        ),
        case(
            "last address of a range alone in its block",
            tcp(v6("2001:db8:5::1ff"), 80),
            Accept("dense6", v6("2001:db8:5::1ff")),
        ),
        case(
            "a denied port of a dense range",
            udp(v6("2001:db8:5::180"), 80),
            Drop("dense6", v6("2001:db8:5::180")),
        ),
        case(
            "just below a range, in its block",
            tcp(v6("2001:db8:5::ff"), 80),
            NonVip,
        ),
        case(
            "just above a range, in its block",
            tcp(v6("2001:db8:5::200"), 80),
            NonVip,
        ),
        case(
            "the first of two ranges in one block",
            udp(v6("2001:db8:6::1f"), 9),
            Accept("pair6a", v6("2001:db8:6::1f")),
        ),
        case(
            "the second of two ranges in one block",
            udp(v6("2001:db8:6::42"), 9),
            Accept("pair6b", v6("2001:db8:6::42")),
        ),
        case(
            "between two ranges in one block",
            udp(v6("2001:db8:6::20"), 9),
            NonVip,
        ),
        case(
            "the first address of a whole block",
            udp(v6("2001:db8:7::"), 9),
            Accept("whole6", v6("2001:db8:7::")),
        ),
        case(
            "the last address of a whole block",
            udp(v6("2001:db8:7::ffff"), 9),
            Accept("whole6", v6("2001:db8:7::ffff")),
        ),
        case(
            "a declared VIP of a /120 that stays sparse",
            udp(v6("2001:db8:8::5"), 9),
            Accept("declared6", v6("2001:db8:8::5")),
        ),
        case(
            "a learned VIP of a /120 that stays sparse",
            udp(v6("2001:db8:8::6"), 9),
            Accept("declared6", v6("2001:db8:8::6")),
        ),
    ]
}

fn nesting_cases() -> Vec<Case> {
    use Expect::*;
    let web = |d| v4(192, 0, 2, d);
    vec![
        case(
            "the outer /24, its list",
            tcp(web(10), 80),
            Accept("web", web(10)),
        ),
        case(
            "the outer /24, off its list",
            tcp(web(10), 22),
            Drop("web", web(10)),
        ),
        case(
            "a /32 inside, its own list",
            tcp(web(53), 22),
            Accept("admin", web(53)),
        ),
        case(
            "a /32 inside, the outer's port is not on its list",
            tcp(web(53), 80),
            Drop("admin", web(53)),
        ),
        case("beside the /32", tcp(web(54), 80), Accept("web", web(54))),
        case(
            "a /26 inside, first",
            udp(web(64), 9),
            Accept("quarter", web(64)),
        ),
        case(
            "a /26 inside, last",
            udp(web(127), 9),
            Accept("quarter", web(127)),
        ),
        case("just below the /26", udp(web(63), 9), Drop("web", web(63))),
        case(
            "just above the /26",
            tcp(web(128), 80),
            Accept("web", web(128)),
        ),
        case(
            "a /31 inside the /26",
            udp(web(71), 9),
            Accept("pair", web(71)),
        ),
        case(
            "a /31 inside the /26, off its list",
            udp(web(70), 10),
            Drop("pair", web(70)),
        ),
        case(
            "beside the /31, in the /26",
            udp(web(72), 10),
            Accept("quarter", web(72)),
        ),
        case(
            "a dense /24 inside a sparse /15",
            udp(v4(198, 18, 7, 255), 9),
            Accept("wide_in", v4(198, 18, 7, 255)),
        ),
        case(
            "the /15 above it",
            udp(v4(198, 18, 8, 0), 9),
            Drop("wide", v4(198, 18, 8, 0)),
        ),
        case(
            "the /15 below it",
            tcp(v4(198, 18, 6, 255), 80),
            Accept("wide", v4(198, 18, 6, 255)),
        ),
        case(
            "the /15's other /16",
            tcp(v4(198, 19, 7, 1), 80),
            Accept("wide", v4(198, 19, 7, 1)),
        ),
        case(
            "a sparse /64",
            tcp(v6("2001:db8:1::99"), 80),
            Accept("v6", v6("2001:db8:1::99")),
        ),
        case(
            "a sparse /64, off its list",
            udp(v6("2001:db8:1::99"), 53),
            Drop("v6", v6("2001:db8:1::99")),
        ),
        case(
            "a /128 inside the /64",
            udp(v6("2001:db8:1::53"), 53),
            Accept("v6host", v6("2001:db8:1::53")),
        ),
        case(
            "a /128 inside the /64, the outer's port",
            tcp(v6("2001:db8:1::53"), 80),
            Drop("v6host", v6("2001:db8:1::53")),
        ),
        case(
            "beside the /128, in its /112 block",
            tcp(v6("2001:db8:1::52"), 80),
            Accept("v6", v6("2001:db8:1::52")),
        ),
        case(
            "a whole /112 inside the /64",
            udp(v6("2001:db8:1::1:ffff"), 9),
            Accept("v6block", v6("2001:db8:1::1:ffff")),
        ),
        case(
            "the /64 past the /112",
            udp(v6("2001:db8:1::2:0"), 9),
            Drop("v6", v6("2001:db8:1::2:0")),
        ),
        case(
            "a dense /112",
            tcp(v6("2001:db8:2::5"), 80),
            Accept("d6", v6("2001:db8:2::5")),
        ),
        case(
            "a dense /112, off its list",
            udp(v6("2001:db8:2::5"), 9),
            Drop("d6", v6("2001:db8:2::5")),
        ),
        case(
            "a /124 inside the dense /112",
            udp(v6("2001:db8:2::1f"), 9),
            Accept("d6in", v6("2001:db8:2::1f")),
        ),
        case(
            "the /112 just past the /124",
            udp(v6("2001:db8:2::20"), 9),
            Drop("d6", v6("2001:db8:2::20")),
        ),
    ]
}

fn expected(case: &Case) -> (Verdict, Deltas) {
    let bytes = case.frame.len() as u64;
    let mut deltas = Deltas {
        global: GlobalReport {
            packets: 1,
            ..GlobalReport::default()
        },
        ..Deltas::default()
    };
    let mut counted = |range: &str, vip: IpAddr, moved: Moved| {
        deltas.ranges.insert(range.to_string(), moved);
        deltas.vips.insert(vip, moved);
    };
    let verdict = match case.expect {
        Expect::Accept(range, vip) => {
            counted(range, vip, Moved::accepted(bytes));
            Verdict::Pass
        }
        Expect::Fragment(range, vip) => {
            counted(range, vip, Moved::accepted(bytes));
            deltas.global.fragments = 1;
            Verdict::Pass
        }
        Expect::Drop(range, vip) => {
            counted(range, vip, Moved::dropped(bytes));
            Verdict::Drop
        }
        Expect::NonVip => {
            deltas.global.non_vip_packets = 1;
            Verdict::Pass
        }
        Expect::Malformed => {
            deltas.global.malformed_packets = 1;
            Verdict::Pass
        }
        Expect::MalformedDrop => {
            deltas.global.malformed_packets = 1;
            Verdict::Drop
        }
    };
    (verdict, deltas)
}

/// BPF_PROG_TEST_RUN builds an skb for TC, and kernels with "bpf: reject short
/// IPv4/IPv6 inputs in bpf_prog_test_run_skb" (6.1.176 on, and the newer
/// series) refuse (EINVAL) a frame whose IP header is cut short. Older ones run
/// it, and then the verdict and counters are checked like any other case.
fn maybe_refused_by_tc_test_run(case: &Case) -> bool {
    matches!(case.name, "truncated IPv4 header" | "truncated IPv6 header")
}

fn run_table(config: &str, program: Program, cases: Vec<Case>) {
    let mut datapath = fixture::load(config);
    let mut failures = Vec::new();
    for case in &cases {
        let (verdict, deltas) = if program == Program::Tc && maybe_refused_by_tc_test_run(case) {
            let before = fixture::snapshot(&datapath);
            match fixture::try_run_once(&mut datapath, program, &case.frame) {
                Err(_) => {
                    let after = fixture::snapshot(&datapath);
                    assert_eq!(after, before, "{}: refused, yet counted", case.name);
                    continue;
                }
                Ok(verdict) => (
                    verdict,
                    fixture::deltas(&before, &fixture::snapshot(&datapath)),
                ),
            }
        } else {
            fixture::run(&mut datapath, program, &case.frame)
        };
        let (want_verdict, want) = expected(case);
        if verdict != want_verdict || deltas != want {
            failures.push(format!(
                "{}: verdict {verdict:?} (want {want_verdict:?})\n  got  {deltas:?}\n  want {want:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{program:?}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

macro_rules! table_tests {
    ($($name:ident: $cases:ident on $config:ident,)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn xdp() {
                if require_root(concat!(stringify!($name), "::xdp")) {
                    run_table($config, Program::Xdp, $cases());
                }
            }

            #[test]
            fn tc() {
                if require_root(concat!(stringify!($name), "::tc")) {
                    run_table($config, Program::Tc, $cases());
                }
            }
        }
    )*};
}

table_tests! {
    parsing: parsing_cases on CONFIG,
    policy: policy_cases on CONFIG,
    fragments_and_extensions: fragment_and_extension_cases on CONFIG,
    truncation: truncation_cases on CONFIG,
    v6_dense: v6_dense_cases on CONFIG,
    nesting: nesting_cases on NESTED_CONFIG,
}

/// Checks that `MAP_V6_BLOCKS` holds `layout`'s entries; returns how many.
fn v6_blocks_hold(datapath: &vip_userspace::Loaded, layout: &vip_userspace::Layout) -> usize {
    let blocks: aya::maps::Array<_, vip_common::V6Block> = datapath
        .maps()
        .map(vip_common::MAP_V6_BLOCKS)
        .unwrap()
        .try_into()
        .unwrap();
    let entries = layout.v6_blocks();
    for (entry, value) in &entries {
        assert_eq!(blocks.get(entry, 0).unwrap(), *value, "entry {entry}");
    }
    entries.len()
}

/// Dense IPv6 VIPs count in their own dense slots, where the layout put them,
/// and take no slot of the sparse table; a VIP of a /120 that declares VIPs
/// still learns one.
#[test]
fn dense_ipv6_vips_count_in_their_dense_slots_and_never_in_the_sparse_table() {
    if !require_root("dense_ipv6_vips_count_in_their_dense_slots_and_never_in_the_sparse_table") {
        return;
    }
    fixture::pin_to_cpu0();
    let config = vip_userspace::Config::parse(CONFIG, std::path::Path::new("fixtures")).unwrap();
    let layout = vip_userspace::Layout::new(&config);
    let mut datapath = fixture::load(CONFIG);
    assert_eq!(
        v6_blocks_hold(&datapath, &layout),
        8,
        "dense6's, pair6's and whole6's blocks, the declared 2001:db8:8::5, and the \
         sparse v6, open6, ssh6 and declared6 by their /64s"
    );
    let sparse_rows = |datapath: &vip_userspace::Loaded| {
        let table = &datapath.maps().tables().sparse;
        (0..table.stride())
            .filter_map(|i| table.get(0, i))
            .collect::<Vec<_>>()
    };
    let sends = [
        (v6("2001:db8:5::180"), "dense6", 0x80, 3),
        (v6("2001:db8:6::42"), "pair6b", 2, 2),
        (v6("2001:db8:7::ffff"), "whole6", 0xffff, 1),
    ];
    for &(vip, _, _, times) in &sends {
        for _ in 0..times {
            assert_eq!(
                fixture::run_once(&mut datapath, Program::Xdp, &tcp(vip, 80)),
                Verdict::Pass
            );
        }
    }
    assert_eq!(sparse_rows(&datapath), vec![], "dense VIPs learned no slot");
    let dense = &datapath.maps().tables().dense;
    for &(vip, range, offset, times) in &sends {
        let slot = &layout.ranges.iter().find(|r| r.name == range).unwrap();
        assert_eq!(
            slot.value.per_vip_mode,
            vip_common::PER_VIP_DENSE,
            "{range}"
        );
        let counts = dense.get(0, slot.value.dense_base + offset);
        assert_eq!(counts.accepted.packets, times, "{vip}");
        assert_eq!(
            counts.accepted.bytes,
            times * tcp(vip, 80).len() as u64,
            "{vip}"
        );
    }
    let declared = v6("2001:db8:8::6");
    fixture::run_once(&mut datapath, Program::Xdp, &udp(declared, 9));
    let rows = sparse_rows(&datapath);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].vip, vip_common::VipAddr::from_ip(declared));
    assert_eq!(rows[0].verdicts.accepted.packets, 1);
}

/// A reload moves the IPv6 dense index with the ranges: a removed range's
/// block is marked removed (its addresses are to no VIP at once), a new
/// range's block is found, a block that stays keeps its entry, and the map
/// holds exactly the new layout's entries.
#[test]
fn a_reload_moves_the_ipv6_dense_index_with_the_ranges() {
    if !require_root("a_reload_moves_the_ipv6_dense_index_with_the_ranges") {
        return;
    }
    fixture::pin_to_cpu0();
    let parse =
        |text: &str| vip_userspace::Config::parse(text, std::path::Path::new("fixtures")).unwrap();
    let range =
        |name: &str, cidr: &str| format!("[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\n");
    let head = "interfaces = [\"lo\"]\n";
    let before = format!(
        "{head}{}{}",
        range("stays", "2001:db8:5::100/120"),
        range("goes", "2001:db8:6::/112")
    );
    let after = format!(
        "{head}{}{}",
        range("stays", "2001:db8:5::100/120"),
        range("comes", "2001:db8:7::40/122")
    );
    let mut datapath = fixture::load(&before);
    let old = vip_userspace::Layout::new(&parse(&before));
    let new = old.update(&parse(&after)).unwrap();
    datapath.update(&old, &new).unwrap();
    assert_eq!(
        v6_blocks_hold(&datapath, &new),
        3,
        "stays' and comes' blocks, and goes' removed"
    );
    let entry_of = |layout: &vip_userspace::Layout, block: &str| {
        let block: Ipv6Addr = block.parse().unwrap();
        layout
            .v6_index
            .live
            .iter()
            .find(|(_, b)| *b == block)
            .map(|(e, _)| *e)
    };
    assert_eq!(
        entry_of(&new, "2001:db8:5::"),
        entry_of(&old, "2001:db8:5::")
    );
    assert_eq!(
        new.v6_index.removed,
        vec![entry_of(&old, "2001:db8:6::").unwrap()]
    );
    let before_frame = fixture::snapshot(&datapath);
    for (vip, want) in [
        ("2001:db8:5::1ff", Verdict::Pass),
        ("2001:db8:6::1", Verdict::Pass),
        ("2001:db8:7::7f", Verdict::Pass),
    ] {
        assert_eq!(
            fixture::run_once(&mut datapath, Program::Xdp, &udp(v6(vip), 9)),
            want
        );
    }
    let deltas = fixture::deltas(&before_frame, &fixture::snapshot(&datapath));
    let vips: Vec<IpAddr> = deltas.vips.keys().copied().collect();
    assert_eq!(vips, vec![v6("2001:db8:5::1ff"), v6("2001:db8:7::7f")]);
    assert_eq!(
        deltas.global.non_vip_packets, 1,
        "the removed range's address"
    );
    let dense = &datapath.maps().tables().dense;
    let comes = new.ranges.iter().find(|r| r.name == "comes").unwrap();
    assert_eq!(
        dense.get(0, comes.value.dense_base + 0x3f).accepted.packets,
        1
    );
}

/// A steer entry new to a reload starts with no counts: the per-VIP counts an
/// earlier datapath left at its index are removed (both new entries' at once,
/// from one batch read of the keys) and its total zeroed, while the counts
/// of an entry that stays, and of one whose key went away, are left as they
/// were.
#[test]
fn a_reload_clears_the_steered_counts_at_the_indexes_it_gives_new_entries() {
    use aya::maps::{PerCpuArray, PerCpuHashMap, PerCpuValues};
    use vip_common::{SteeredVip, VipAddr, MAP_STEERED_VIPS, MAP_STEER_STATS};

    if !require_root("a_reload_clears_the_steered_counts_at_the_indexes_it_gives_new_entries") {
        return;
    }
    let parse =
        |text: &str| vip_userspace::Config::parse(text, std::path::Path::new("fixtures")).unwrap();
    let config = |steers: &str| {
        format!(
            "interfaces = [\"lo\"]\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
             steer = [{steers}]\n"
        )
    };
    let before = config(
        r#"{ match = "tcp/80", to = "127.0.0.1:8080" }, { match = "udp/53", to = "127.0.0.1:5353" }"#,
    );
    let after = config(
        r#"{ match = "tcp/80", to = "127.0.0.1:8080" }, { match = "tcp/81", to = "127.0.0.1:8081" }, { match = "tcp/82", to = "127.0.0.1:8082" }"#,
    );
    let mut datapath = fixture::load(&before);
    let old = vip_userspace::Layout::new(&parse(&before));
    let new = old.update(&parse(&after)).unwrap();
    let entries = |layout: &vip_userspace::Layout| -> Vec<(String, u32)> {
        layout
            .steers
            .iter()
            .map(|s| (s.steer.label(), s.entry))
            .collect()
    };
    assert_eq!(
        entries(&old),
        [("tcp/80".to_string(), 0), ("udp/53".to_string(), 1)]
    );
    assert_eq!(
        entries(&new),
        [
            ("tcp/80".to_string(), 0),
            ("tcp/81".to_string(), 2),
            ("tcp/82".to_string(), 3)
        ]
    );
    let cpus = aya::util::nr_cpus().unwrap();
    let key = |vip: u8, entry: u32| SteeredVip {
        vip: VipAddr::from_v4_be([192, 0, 2, vip]),
        entry,
        _pad: 0,
    };
    // Counts at every index: 0 and 1 the layout's own, 2 and 3 left by an
    // earlier datapath.
    {
        let map = datapath.maps_mut().map_mut(MAP_STEERED_VIPS).unwrap();
        let mut vips: PerCpuHashMap<_, SteeredVip, u64> = PerCpuHashMap::try_from(map).unwrap();
        for entry in 0..4 {
            for vip in 1..=3 {
                let counts = PerCpuValues::try_from(vec![u64::from(vip) + 10; cpus]).unwrap();
                vips.insert(key(vip, entry), counts, 0).unwrap();
            }
        }
        let map = datapath.maps_mut().map_mut(MAP_STEER_STATS).unwrap();
        let mut totals: PerCpuArray<_, u64> = PerCpuArray::try_from(map).unwrap();
        for entry in 0..4 {
            let counts = PerCpuValues::try_from(vec![100 + u64::from(entry); cpus]).unwrap();
            totals.set(entry, counts, 0).unwrap();
        }
    }
    datapath.update(&old, &new).unwrap();
    let map = datapath.maps().map(MAP_STEERED_VIPS).unwrap();
    let vips: PerCpuHashMap<_, SteeredVip, u64> = PerCpuHashMap::try_from(map).unwrap();
    let mut left: Vec<(u32, [u8; 16], u64)> = vips
        .iter()
        .map(|item| {
            let (key, values) = item.unwrap();
            (key.entry, key.vip.addr_be, values.iter().sum())
        })
        .collect();
    left.sort();
    let mut expected: Vec<(u32, [u8; 16], u64)> = (0..2)
        .flat_map(|entry| {
            (1..=3u8).map(move |vip| {
                (
                    entry,
                    key(vip, entry).vip.addr_be,
                    (u64::from(vip) + 10) * cpus as u64,
                )
            })
        })
        .collect();
    expected.sort();
    assert_eq!(left, expected, "entries 0 and 1 kept, 2 and 3 forgotten");
    let map = datapath.maps().map(MAP_STEER_STATS).unwrap();
    let totals: PerCpuArray<_, u64> = PerCpuArray::try_from(map).unwrap();
    let total = |entry: u32| -> u64 { totals.get(&entry, 0).unwrap().iter().sum() };
    assert_eq!(
        [total(0), total(1), total(2), total(3)],
        [100 * cpus as u64, 101 * cpus as u64, 0, 0]
    );
}
