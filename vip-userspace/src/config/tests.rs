use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("t.toml"))
}

fn with_ranges(ranges: &[(&str, &str)]) -> String {
    let mut text = String::from("interfaces = [\"eth0\"]\n");
    for (name, cidr) in ranges {
        text.push_str(&format!(
            "[[range]]\nname = \"{name}\"\ncidr = \"{cidr}\"\n"
        ));
    }
    text
}

#[test]
fn defaults_apply() {
    let config = parse(&with_ranges(&[("web", "192.0.2.0/24")])).unwrap();
    assert_eq!(config.xdp_mode, XdpMode::Auto);
    assert_eq!(config.sparse_vip_capacity, DEFAULT_SPARSE_VIP_CAPACITY);
    assert_eq!(
        config.ranges[0].cidr,
        "192.0.2.0/24".parse::<IpNet>().unwrap()
    );
}

#[test]
fn every_documented_key_parses() {
    let config = parse(
        "interfaces = [\"eth0\", \"eth1\"]\nxdp_mode = \"generic\"\nsparse_vip_capacity = 10\n\
         [[range]]\nname = \"v6\"\ncidr = \"2001:db8::/48\"\n",
    )
    .unwrap();
    assert_eq!(config.interfaces, ["eth0", "eth1"]);
    assert_eq!(config.xdp_mode, XdpMode::Generic);
    assert_eq!(config.sparse_vip_capacity, 10);
}

#[test]
fn syntax_errors_have_a_location_and_fit_on_one_line() {
    let err = parse("interfaces = [\"eth0\"]\nxdp_mode = \"turbo\"\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("config t.toml:2:12: unknown variant `turbo`"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn unknown_keys_are_errors() {
    let err = parse(&format!(
        "{}typo = 1\n",
        with_ranges(&[("web", "192.0.2.0/24")])
    ))
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `typo`"), "{err}");
    let err = parse(
        "interfaces = [\"eth0\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\nport = 1\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `port`"), "{err}");
}

#[test]
fn cidrs_are_checked() {
    for bad in ["192.0.2.0", "192.0.2.0/33", "2001:db8::/129", "web", ""] {
        assert!(
            matches!(
                parse(&with_ranges(&[("a", bad)])),
                Err(ConfigError::InvalidCidr { .. })
            ),
            "{bad}"
        );
    }
    match parse(&with_ranges(&[("a", "198.51.100.7/28")])) {
        Err(ConfigError::HostBitsSet { network, .. }) => {
            assert_eq!(network.to_string(), "198.51.100.0/28")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_are_checked() {
    for bad in ["", "has space", "a/b", &"x".repeat(64)] {
        assert!(
            matches!(
                parse(&with_ranges(&[(bad, "192.0.2.0/24")])),
                Err(ConfigError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    let err = parse(&with_ranges(&[
        ("a", "192.0.2.0/24"),
        ("a", "198.51.100.0/24"),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::DuplicateName { ref name } if name == "a"),
        "{err}"
    );
}

#[test]
fn ranges_may_nest_and_each_knows_the_smallest_range_holding_it() {
    let config = parse(&with_ranges(&[
        ("pair", "192.0.2.70/31"),
        ("web", "192.0.2.0/24"),
        ("quarter", "192.0.2.64/26"),
        ("other", "198.51.100.0/24"),
        ("v6", "2001:db8:1::/64"),
        ("host6", "2001:db8:1::53/128"),
        ("half", "192.0.2.128/25"),
    ]))
    .unwrap();
    let parents = nesting::parents(&config.ranges);
    assert_eq!(
        parents,
        vec![Some(2), None, Some(1), None, None, Some(4), Some(1)]
    );
}

#[test]
fn nesting_that_cannot_mean_one_thing_is_refused() {
    let same = parse(&with_ranges(&[
        ("a", "192.0.2.0/24"),
        ("b", "192.0.2.0/24"),
    ]));
    assert!(
        matches!(&same, Err(ConfigError::SameCidr { first, second, .. }) if first == "a" && second == "b"),
        "{same:?}"
    );
    // An IPv6 range inside another must be dense: /112 or longer, learning.
    let sparse_inner = parse(&with_ranges(&[
        ("v6", "2001:db8:1::/64"),
        ("inner", "2001:db8:1::/96"),
    ]));
    assert_eq!(
        sparse_inner.unwrap_err().to_string(),
        "range \"inner\" (2001:db8:1::/96) lies in range \"v6\" (2001:db8:1::/64): an IPv6 range inside another must count per VIP densely (a /112 or longer that learns every VIP: no vips, no learn = false)"
    );
    let declaring_inner = parse(
        "interfaces = [\"eth0\"]\n[[range]]\nname = \"v6\"\ncidr = \"2001:db8:1::/64\"\n\
         [[range]]\nname = \"inner\"\ncidr = \"2001:db8:1::100/120\"\nvips = [\"2001:db8:1::105\"]\n",
    );
    assert!(
        matches!(declaring_inner, Err(ConfigError::NestedSparseV6 { ref range, .. }) if range == "inner"),
        "{declaring_inner:?}"
    );
    // A declared VIP of the outer range that an inner range would count.
    let declared_outer = parse(
        "interfaces = [\"eth0\"]\n[[range]]\nname = \"v6\"\ncidr = \"2001:db8:1::/64\"\n\
         vips = [\"2001:db8:1::7\", \"2001:db8:1::105\"]\n\
         [[range]]\nname = \"inner\"\ncidr = \"2001:db8:1::100/120\"\n",
    );
    assert_eq!(
        declared_outer.unwrap_err().to_string(),
        "range \"v6\": vips entry 2001:db8:1::105 lies in range \"inner\" (2001:db8:1::100/120), which judges and counts it"
    );
    // Dense IPv6 inside sparse or dense, and any IPv4 nesting, are fine.
    let fine = [
        ("v6", "2001:db8:1::/64"),
        ("block", "2001:db8:1::/112"),
        ("host", "2001:db8:1::53/128"),
        ("web", "192.0.2.0/24"),
        ("one", "192.0.2.7/32"),
    ];
    assert_eq!(parse(&with_ranges(&fine)).unwrap().ranges.len(), 5);
    let disjoint = [
        ("a", "192.0.2.0/25"),
        ("b", "192.0.2.128/25"),
        ("c", "2001:db8::/64"),
        ("d", "2001:db8:0:1::/64"),
    ];
    assert_eq!(parse(&with_ranges(&disjoint)).unwrap().ranges.len(), 4);
}

#[test]
fn empty_and_duplicate_lists_are_rejected() {
    // A router-only config is valid; `vip run` needs interfaces and ranges.
    let runnable = |text: &str| parse(text).unwrap().check_runnable();
    assert!(matches!(
        runnable("interfaces = []\n"),
        Err(ConfigError::NoInterfaces)
    ));
    assert!(matches!(
        runnable("interfaces = [\"eth0\"]\n"),
        Err(ConfigError::NoRanges)
    ));
    let text = with_ranges(&[("a", "192.0.2.0/24")]).replace("[\"eth0\"]", "[\"eth0\", \"eth0\"]");
    assert!(
        matches!(parse(&text), Err(ConfigError::DuplicateInterface { .. })),
        "{text}"
    );
    let text =
        with_ranges(&[("a", "192.0.2.0/24")]).replacen("]\n", "]\nsparse_vip_capacity = 0\n", 1);
    assert!(matches!(
        parse(&text),
        Err(ConfigError::SparseCapacity { value: 0 })
    ));
}

#[test]
fn host_contract_keys_parse_with_defaults() {
    let config = parse(
        "interfaces = [\"eth0\"]\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n\
         [[route]]\ncidr = \"198.51.100.0/24\"\nvia = \"198.18.0.2\"\n",
    )
    .unwrap();
    assert_eq!(config.ranges[0].accept, Accept::Alias);
    assert!(
        config.arp_sysctls,
        "on by default when a range accepts locally"
    );
    assert_eq!(
        config.router.ip_forward,
        Some(true),
        "on by default with an IPv4 route"
    );
    assert_eq!(config.router.ipv6_forwarding, None);
    assert_eq!(config.router.rp_filter, None);
    let count_only = parse(&with_ranges(&[("a", "192.0.2.0/24")])).unwrap();
    assert!(!count_only.arp_sysctls);
    assert_eq!(count_only.ranges[0].accept, Accept::None);
}

#[test]
fn host_contract_mistakes_are_refused() {
    let range = |extra: &str| {
        parse(&format!(
            "interfaces = [\"eth0\"]\n[[range]]\nname = \"a\"\ncidr = \"2001:db8::/64\"\n{extra}"
        ))
    };
    assert!(matches!(
        range("accept = \"alias\"\n"),
        Err(ConfigError::AliasV6 { .. })
    ));
    assert!(range("accept = \"route\"\n").is_ok());
    let broad = |cidr: &str, allow: bool| {
        parse(&format!(
            "[[range]]\nname = \"a\"\ncidr = \"{cidr}\"\nallow_broad = {allow}\n"
        ))
    };
    assert!(matches!(
        broad("198.0.0.0/7", false),
        Err(ConfigError::TooBroad { limit: 8, .. })
    ));
    assert!(broad("198.0.0.0/7", true).is_ok());
    assert!(broad("2001:db8::/32", false).is_ok());
    assert!(matches!(
        broad("2001:db8::/31", false),
        Err(ConfigError::TooBroad { limit: 32, .. })
    ));
    for mapped in [
        "::ffff:192.0.2.0/120",
        "::ffff:0:0/96",
        "::/32",
        "::ffff:c000:200/127",
    ] {
        assert!(
            matches!(broad(mapped, false), Err(ConfigError::V4Mapped { .. })),
            "{mapped}"
        );
    }
    assert!(matches!(
        broad("::/0", true),
        Err(ConfigError::V4Mapped { .. })
    ));
    assert!(broad("::fffe:0:0/96", false).is_ok());
    assert!(broad("::1:0:0:0/80", false).is_ok());
    let route = |via: &str| {
        parse(&format!(
            "[[route]]\ncidr = \"192.0.2.0/24\"\nvia = \"{via}\"\n"
        ))
    };
    assert!(matches!(
        route("2001:db8::1"),
        Err(ConfigError::RouteFamily { .. })
    ));
    let v6_route = |via: &str, dev: &str| {
        parse(&format!(
            "[[route]]\ncidr = \"2001:db8:1::/64\"\nvia = \"{via}\"\n{dev}"
        ))
    };
    let error = v6_route("fe80::2", "").unwrap_err();
    assert!(
        matches!(error, ConfigError::LinkLocalWithoutDev { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "route 2001:db8:1::/64: next hop fe80::2 is link-local: name its interface with dev = \"...\""
    );
    let config = v6_route("fe80::2", "dev = \"eth1\"\n").unwrap();
    assert_eq!(config.routes[0].dev.as_deref(), Some("eth1"));
    assert!(v6_route("2001:db8:ff02::2", "").is_ok());
    for dev in ["", "a/b", "a b", "sixteen-chars-xx", "..", "eth0:1"] {
        assert!(
            matches!(
                v6_route("fe80::2", &format!("dev = \"{dev}\"\n")),
                Err(ConfigError::InvalidDev { .. })
            ),
            "{dev:?}"
        );
    }
    assert!(matches!(
        parse("[[route]]\ncidr = \"192.0.2.0/24\"\nvia = \"169.254.0.1\"\n"),
        Err(ConfigError::LinkLocalWithoutDev { .. })
    ));
    assert!(matches!(
        parse("[[route]]\ncidr = \"192.0.2.0/24\"\nvia = \"198.18.0.1\"\n[[route]]\ncidr = \"192.0.2.0/24\"\nvia = \"198.18.0.2\"\n"),
        Err(ConfigError::DuplicateRoute { .. })
    ));
    assert!(matches!(
        parse("[router]\nrp_filter = 3\n"),
        Err(ConfigError::RpFilter { value: 3 })
    ));
}

#[test]
fn decap_defaults_to_every_interface_and_is_checked() {
    let decap = |extra: &str| {
        parse(&format!(
            "interfaces = [\"eth0\", \"eth1\"]\n{extra}\n[[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n"
        ))
    };
    let none = decap("").unwrap().decap;
    assert!(none.encaps.is_empty());
    assert!(none.interfaces.is_empty());
    assert_eq!(none.gue_port, DEFAULT_GUE_PORT);

    let all = decap("decap = [\"gue\", \"ipip\", \"gue\"]").unwrap().decap;
    assert_eq!(all.encaps, [Encap::Ipip, Encap::Gue]);
    assert_eq!(all.interfaces, ["eth0", "eth1"]);

    let one = decap("decap = [\"ip6ip6\"]\ngue_port = 7000\ndecap_interfaces = [\"eth1\"]")
        .unwrap()
        .decap;
    assert_eq!(
        (one.interfaces, one.gue_port),
        (vec!["eth1".to_string()], 7000)
    );

    assert!(matches!(
        decap("decap = [\"ipip\"]\ndecap_interfaces = [\"eth9\"]"),
        Err(ConfigError::DecapInterface { name }) if name == "eth9"
    ));
    assert!(matches!(decap("gue_port = 0"), Err(ConfigError::GuePort)));
    assert!(matches!(
        decap("decap = [\"ipip\"]\nxdp_mode = \"tc\""),
        Err(ConfigError::DecapNeedsXdp)
    ));
    assert!(matches!(
        decap("decap = [\"vxlan\"]"),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn steer_entries_parse_and_mistakes_are_refused() {
    let range = |accept: &str, steer: &str| {
        parse(&format!(
            "interfaces = [\"eth0\"]\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"{accept}\"\nsteer = [{steer}]\n"
        ))
    };
    let config = range(
        "route",
        r#"{ match = "tcp/80", to = "127.0.0.1:8080" }, { match = "udp/5353", to = "[::1]:5353" }"#,
    )
    .unwrap();
    let steer = &config.ranges[0].steer;
    assert_eq!(steer.len(), 2);
    assert_eq!(
        (steer[0].proto, steer[0].port, steer[0].to),
        (
            vip_common::IPPROTO_TCP,
            80,
            "127.0.0.1:8080".parse().unwrap()
        )
    );
    assert_eq!(steer[1].label(), "udp/5353");
    assert_eq!(steer[1].to, "[::1]:5353".parse().unwrap());

    let err = range("none", r#"{ match = "tcp/80", to = "127.0.0.1:8080" }"#).unwrap_err();
    assert!(matches!(err, ConfigError::SteerNeedsAccept { .. }));
    assert_eq!(
        err.to_string(),
        "range \"web\": steering needs the range's addresses to be local; set accept = \"alias\" or \"route\""
    );
    for bad in ["tcp", "sctp/80", "tcp/0", "tcp/http", "udp/70000"] {
        assert!(
            matches!(
                range(
                    "route",
                    &format!(r#"{{ match = "{bad}", to = "127.0.0.1:1" }}"#)
                ),
                Err(ConfigError::SteerMatch { .. })
            ),
            "{bad}"
        );
    }
    for bad in ["127.0.0.1", "localhost:80", "127.0.0.1:0"] {
        assert!(
            matches!(
                range("route", &format!(r#"{{ match = "tcp/80", to = "{bad}" }}"#)),
                Err(ConfigError::SteerTo { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        range(
            "alias",
            r#"{ match = "tcp/80", to = "127.0.0.1:1" }, { match = "tcp/80", to = "127.0.0.1:2" }"#
        ),
        Err(ConfigError::DuplicateSteer { .. })
    ));
}

#[test]
fn sparse_accounting_keys_parse_with_defaults() {
    let config = parse(&with_ranges(&[("v6", "2001:db8::/64")])).unwrap();
    assert_eq!(config.sparse_idle_seconds, DEFAULT_SPARSE_IDLE_SECONDS);
    assert_eq!(config.ranges[0].vips, Vec::<std::net::IpAddr>::new());
    assert!(config.ranges[0].learn);
    let config = parse(&format!(
        "sparse_idle_seconds = 10\n{}vips = [\"2001:db8::10\", \" 2001:db8::1 \"]\nlearn = false\n",
        with_ranges(&[("v6", "2001:db8::/64")])
    ))
    .unwrap();
    assert_eq!(config.sparse_idle_seconds, 10);
    let want: Vec<std::net::IpAddr> = vec![
        "2001:db8::10".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    assert_eq!(config.ranges[0].vips, want, "in config order");
    assert!(!config.ranges[0].learn);
}

#[test]
fn bad_sparse_accounting_values_are_refused_by_name() {
    let v6 = with_ranges(&[("v6", "2001:db8::/64")]);
    let web = with_ranges(&[("web", "192.0.2.0/24")]);
    for (text, want) in [
        (
            format!("sparse_idle_seconds = 1\n{v6}"),
            "sparse_idle_seconds = 1 is out of range 2..=86400",
        ),
        (
            format!("{v6}vips = [\"2001:db8:1::1\"]\n"),
            "range \"v6\": vips entry \"2001:db8:1::1\" is not an address in 2001:db8::/64",
        ),
        (
            format!("{v6}vips = [\"banana\"]\n"),
            "range \"v6\": vips entry \"banana\" is not an address in 2001:db8::/64",
        ),
        (
            format!("{v6}vips = [\"2001:db8::1\", \"2001:db8:0::1\"]\n"),
            "range \"v6\": vips lists 2001:db8::1 twice",
        ),
        (
            format!("{web}vips = [\"192.0.2.1\"]\n"),
            "range \"web\": vips applies to sparse ranges (IPv6, IPv4 wider than /16); every address of 192.0.2.0/24 has its own row already",
        ),
        (
            format!("{web}learn = false\n"),
            "range \"web\": learn = false applies to sparse ranges",
        ),
    ] {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with(want), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn declared_vips_are_bounded_over_all_ranges() {
    let list = |range: u32, count: u32| {
        (0..count)
            .map(|i| format!("\"2001:db8:{range}::{i:x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = |second: u32| {
        format!(
            "interfaces = [\"eth0\"]\n[[range]]\nname = \"a\"\ncidr = \"2001:db8:1::/64\"\nvips = [{}]\n\
             [[range]]\nname = \"b\"\ncidr = \"2001:db8:2::/64\"\nvips = [{}]\n",
            list(1, 60_000),
            list(2, second)
        )
    };
    assert!(parse(&text(5_536)).is_ok());
    assert_eq!(
        parse(&text(5_537)).unwrap_err().to_string(),
        "the ranges declare 65537 VIPs in all; at most 65536"
    );
}

const BGP: &str = "interfaces = [\"eth0\"]\n\
    [bgp]\nlocal_as = 65001\nrouter_id = \"198.18.1.2\"\n\
    [[bgp.neighbor]]\naddress = \"198.18.1.1\"\nas = 65000\n";

fn announced(range_extra: &str) -> String {
    format!(
        "{BGP}[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\nannounce = true\n{range_extra}"
    )
}

#[test]
fn bgp_keys_parse_with_defaults_and_each_kind_of_check() {
    let config = parse(&announced(
        "health = [\n\
           { check = \"tcp:198.18.1.2:80\" },\n\
           { check = \"http://198.18.1.2:8080/health?deep=1\", interval_ms = 300, timeout_ms = 100, rise = 1, fall = 3 },\n\
           { check = \"http://[2001:db8::1]:80\" },\n\
           { check = \"exec:/usr/local/bin/ok\" },\n\
         ]\n",
    ))
    .unwrap();
    let bgp = config.bgp.as_ref().unwrap();
    assert_eq!(bgp.local_as, 65001);
    assert_eq!(bgp.drain_seconds, bgp::DEFAULT_DRAIN_SECONDS);
    assert_eq!(bgp.bird, Path::new("bird"));
    assert_eq!(bgp.neighbors[0].remote_as, 65000);
    let range = &config.ranges[0];
    assert!(range.announce);
    let probes: Vec<&Probe> = range.health.iter().map(|h| &h.probe).collect();
    assert_eq!(*probes[0], Probe::Tcp("198.18.1.2:80".parse().unwrap()));
    assert_eq!(
        *probes[1],
        Probe::Http {
            addr: "198.18.1.2:8080".parse().unwrap(),
            path: "/health?deep=1".into()
        }
    );
    assert_eq!(
        *probes[2],
        Probe::Http {
            addr: "[2001:db8::1]:80".parse().unwrap(),
            path: "/".into()
        }
    );
    assert_eq!(*probes[3], Probe::Exec("/usr/local/bin/ok".into()));
    let first = &range.health[0];
    assert_eq!(
        (
            first.interval.as_millis(),
            first.timeout.as_millis(),
            first.rise,
            first.fall
        ),
        (1000, 500, 2, 2)
    );
    assert_eq!(range.health[1].fall, 3);
    // Without [bgp] nothing is announced and nothing is required.
    let plain = parse(&with_ranges(&[("web", "192.0.2.0/24")])).unwrap();
    assert_eq!(plain.bgp, None);
    assert!(!plain.ranges[0].announce);
}

#[test]
fn bgp_mistakes_are_refused_with_the_value_named() {
    let cases = [
        (
            BGP.replace("as = 65000", "as = 0"),
            "bgp neighbor 198.18.1.1: as = 0",
        ),
        (
            format!("{BGP}[[bgp.neighbor]]\naddress = \"198.18.1.1\"\nas = 65002\n"),
            "bgp neighbor 198.18.1.1 is listed twice",
        ),
        (
            BGP.replace("as = 65000\n", "as = 65000\n[bgp.x]\n"),
            "unknown field",
        ),
        (
            BGP.replace(
                "router_id = \"198.18.1.2\"\n",
                "router_id = \"198.18.1.2\"\ncommunities = [\"65536:1\"]\n",
            ),
            "bgp.communities entry \"65536:1\"",
        ),
        (
            BGP.replace(
                "router_id = \"198.18.1.2\"\n",
                "router_id = \"198.18.1.2\"\ndrain_seconds = 3601\n",
            ),
            "bgp.drain_seconds = 3601",
        ),
        (
            "interfaces = [\"eth0\"]\n[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.1.2\"\n"
                .to_string(),
            "[bgp] has no [[bgp.neighbor]]",
        ),
        (
            announced("health = [{ check = \"tcp:198.18.1.2:80\", timeout_ms = 1000 }]"),
            "timeout_ms = 1000 must be above 0 and below interval_ms (1000)",
        ),
        (
            announced("health = [{ check = \"tcp:198.18.1.2:80\", interval_ms = 50 }]"),
            "interval_ms = 50 is out of range",
        ),
        (
            announced("health = [{ check = \"tcp:198.18.1.2:80\", rise = 0 }]"),
            "rise = 0 is out of range",
        ),
        (
            announced("health = [{ check = \"exec:relative/path\" }]"),
            "is not tcp:ADDRESS:PORT",
        ),
        (
            announced("health = [{ check = \"https://198.18.1.2/\" }]"),
            "is not tcp:ADDRESS:PORT",
        ),
        (
            announced(
                "health = [{ check = \"tcp:198.18.1.2:80\" }, { check = \"tcp:198.18.1.2:80\" }]",
            ),
            "is listed twice",
        ),
        (
            announced("").replace(
                "announce = true\n",
                "health = [{ check = \"tcp:198.18.1.2:80\" }]\n",
            ),
            "health checks gate the announcement; set announce = true",
        ),
    ];
    for (text, wanted) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(wanted), "{wanted:?} in {err:?}\n{text}");
        assert!(!err.contains('\n'), "{err}");
    }
}
