//! The real-server contract in the seed's own topology (client -- router --
//! server): install, count, repair, remove; ARP and NDP; plan; safety refusals.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant},
};

use vip_tests::{
    daemon::{config_file, Daemon, Instance},
    netns::Netns,
    root::require_root,
    seed::{
        arp_request_for, assert_same_dump, drift_local_route, host_dump, is_arp_reply_for,
        is_neighbor_advertisement_for, neighbor_solicitation_for, tcp_connect, udp_echoes, SeedLab,
        Services, ROUTER_SERVER_IF, SERVER_IF,
    },
    wait,
};

const ROUTER_CONFIG: &str = r#"
[[route]]
cidr = "192.0.2.0/24"
via = "198.18.2.2"

[[route]]
cidr = "2001:db8:1::/64"
via = "2001:db8:ff02::2"
"#;
const ROUTER_SYSCTLS: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];
const SERVER_SYSCTLS: [&str; 4] = [
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.s0.arp_ignore",
    "net.ipv4.conf.s0.arp_announce",
];
const V4_VIPS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.50",
    "192.0.2.100",
    "192.0.2.254",
];
const V6_VIPS: [&str; 3] = ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::ffff"];
const PATIENT: Duration = Duration::from_secs(2);
const IMPATIENT: Duration = Duration::from_millis(500);

fn server_config(accept: &str, v6: bool, extra: &str) -> String {
    let mut text = format!(
        "interfaces = [\"{SERVER_IF}\"]\n{extra}\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"{accept}\"\n"
    );
    if v6 {
        text.push_str(
            "[[range]]\nname = \"web6\"\ncidr = \"2001:db8:1::/64\"\naccept = \"route\"\n",
        );
    }
    text
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// Packets per VIP in `vip stats --json`, polled until they add up to `total`.
fn vip_packets(daemon: &Daemon, total: u64) -> BTreeMap<IpAddr, u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = daemon.stats_json();
        let mut seen = BTreeMap::new();
        for range in stats["ranges"].as_array().unwrap() {
            for vip in range["vips"].as_array().unwrap() {
                let addr: IpAddr = vip["addr"].as_str().unwrap().parse().unwrap();
                seen.insert(addr, vip["packets"].as_u64().unwrap());
            }
        }
        if seen.values().sum::<u64>() >= total || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alias or route mode end to end, then `vip down` restores both hosts exactly.
fn seed_topology(tag: &str, accept: &str, vips: Vec<IpAddr>) {
    seed_topology_routed(tag, accept, vips, ROUTER_CONFIG);
}

/// The server's IPv6 link-local address on its link to the router (EUI-64 of
/// `SERVER_MAC`).
const SERVER_LINK_LOCAL: &str = "fe80::ff:fe00:202";

/// [`seed_topology`] with the router's config `router_config` (two routes).
fn seed_topology_routed(tag: &str, accept: &str, vips: Vec<IpAddr>, router_config: &str) {
    let lab = SeedLab::new(tag);
    let _services = Services::start(&lab.server);
    let (router, server) = (Instance::new("router"), Instance::new("server"));
    let router_config = config_file(router_config);
    let router_before = host_dump(&lab.router, &ROUTER_SYSCTLS);
    let server_before = host_dump(&lab.server, &SERVER_SYSCTLS);

    let apply = || {
        router.vip_ok(
            &lab.router,
            &["apply", "--config", router_config.path().to_str().unwrap()],
        )
    };
    for expected in [
        "applied 4 change(s), 0 already in place",
        "applied 0 change(s), 4 already in place",
    ] {
        let out = apply();
        assert!(out.starts_with(expected), "{out}");
    }
    let v6 = vips.iter().any(IpAddr::is_ipv6);
    let daemon = Daemon::start(&lab.server, &server_config(accept, v6, ""), &server);

    let mut expected = BTreeMap::new();
    for (i, &vip) in vips.iter().enumerate() {
        if let Err(e) = tcp_connect(&lab.client, vip, PATIENT) {
            panic!(
                "TCP connect to {vip}: {e}
{}",
                lab.diagnostics()
            );
        }
        let datagrams = i as u64 + 1;
        for _ in 0..datagrams {
            assert!(udp_echoes(&lab.client, vip, PATIENT), "UDP echo from {vip}");
        }
        // SYN, ACK, RST, and the datagrams.
        expected.insert(vip, 3 + datagrams);
    }
    let total = expected.values().sum();
    assert_eq!(vip_packets(&daemon, total), expected, "packets per VIP");

    let out = server.vip_ok(&lab.server, &["down"]);
    assert!(
        out.contains("stopping vip run")
            && out.contains("stopped: it detached")
            && !out.contains("nothing to do"),
        "{out}"
    );
    let log = daemon.wait_exit();
    assert!(log.contains("reverted: "), "{log}");
    for &vip in vips.iter().take(2) {
        assert!(
            tcp_connect(&lab.client, vip, IMPATIENT).is_err(),
            "TCP to {vip} after down"
        );
        assert!(
            !udp_echoes(&lab.client, vip, IMPATIENT),
            "UDP to {vip} after down"
        );
    }
    let out = router.vip_ok(&lab.router, &["down"]);
    assert!(out.starts_with("reverted 4 change(s)"), "{out}");
    assert_same_dump(
        &server_before,
        &host_dump(&lab.server, &SERVER_SYSCTLS),
        "server",
    );
    assert_same_dump(
        &router_before,
        &host_dump(&lab.router, &ROUTER_SYSCTLS),
        "router",
    );
    let again = server.vip_ok(&lab.server, &["down"]);
    assert!(again.starts_with("nothing to do"), "{again}");
}

#[test]
fn alias_mode_serves_and_counts_the_seed_topology_then_down_restores_it() {
    if require_root("alias_mode_serves_and_counts_the_seed_topology_then_down_restores_it") {
        seed_topology("alias", "alias", ips(&V4_VIPS));
    }
}

#[test]
fn route_mode_serves_ipv4_and_ipv6_then_down_restores_it() {
    if require_root("route_mode_serves_ipv4_and_ipv6_then_down_restores_it") {
        let mut vips = ips(&V4_VIPS);
        vips.extend(ips(&V6_VIPS));
        seed_topology("route", "route", vips);
    }
}

/// The usual IPv6 next hop on a router: the server's link-local address,
/// which needs the interface (`dev`). Traffic flows through it and `vip
/// down` removes it; without `dev`, or with an interface that is not there,
/// `vip apply` is refused with one line and changes nothing.
#[test]
fn an_ipv6_route_through_a_link_local_next_hop_serves_then_down_restores_it() {
    if !require_root("an_ipv6_route_through_a_link_local_next_hop_serves_then_down_restores_it") {
        return;
    }
    let link_local = ROUTER_CONFIG.replace(
        "via = \"2001:db8:ff02::2\"",
        &format!("via = \"{SERVER_LINK_LOCAL}\"\ndev = \"{ROUTER_SERVER_IF}\""),
    );
    assert_ne!(link_local, ROUTER_CONFIG);
    let mut vips = ips(&V4_VIPS[..2]);
    vips.extend(ips(&V6_VIPS));
    seed_topology_routed("llroute", "route", vips, &link_local);

    let lab = SeedLab::new("llrefuse");
    let without_dev = link_local.replace(&format!("dev = \"{ROUTER_SERVER_IF}\""), "");
    refused(
        &lab.router,
        &ROUTER_SYSCTLS,
        &without_dev,
        &format!("route 2001:db8:1::/64: next hop {SERVER_LINK_LOCAL} is link-local: name its interface with dev"),
    );
    let unknown = link_local.replace(
        &format!("dev = \"{ROUTER_SERVER_IF}\""),
        "dev = \"nowhere0\"",
    );
    refused(
        &lab.router,
        &ROUTER_SYSCTLS,
        &unknown,
        "unknown interface \"nowhere0\" (the dev of route 2001:db8:1::/64)",
    );
}

fn arp_answered(arp_sysctls: bool) -> bool {
    let lab = SeedLab::new("arp");
    let server = Instance::new("arp");
    let extra = format!("arp_sysctls = {arp_sysctls}");
    let _daemon = Daemon::start(&lab.server, &server_config("alias", false, &extra), &server);
    let vip = [192, 0, 2, 7];
    lab.router
        .exchange(
            ROUTER_SERVER_IF,
            arp_request_for(vip),
            Duration::from_secs(1),
            move |f| is_arp_reply_for(f, vip),
        )
        .is_some()
}

#[test]
fn arp_for_vips_is_answered_only_without_the_arp_sysctls() {
    if !require_root("arp_for_vips_is_answered_only_without_the_arp_sysctls") {
        return;
    }
    assert!(!arp_answered(true), "arp_ignore=1: no reply for a VIP");
    assert!(
        arp_answered(false),
        "without the sysctls the alias answers ARP"
    );
}

/// What the kernel does with Neighbor Solicitations for AnyIP VIPs: it answers an
/// NS only for addresses configured on the interface it arrived on, so VIPs are
/// never answered, whatever the ARP sysctls. The server's own address is.
#[test]
fn neighbor_solicitations_for_anyip_vips_are_never_answered() {
    if !require_root("neighbor_solicitations_for_anyip_vips_are_never_answered") {
        return;
    }
    for arp_sysctls in [true, false] {
        let lab = SeedLab::new("ndp");
        let server = Instance::new("ndp");
        let extra = format!("arp_sysctls = {arp_sysctls}");
        let _daemon = Daemon::start(&lab.server, &server_config("route", true, &extra), &server);
        let answered = |target: Ipv6Addr| {
            lab.router
                .exchange(
                    ROUTER_SERVER_IF,
                    neighbor_solicitation_for(target),
                    Duration::from_secs(1),
                    move |f| is_neighbor_advertisement_for(f, target),
                )
                .is_some()
        };
        assert!(
            answered("2001:db8:ff02::2".parse().unwrap()),
            "the server's own address is answered"
        );
        assert!(
            !answered("2001:db8:1::7".parse().unwrap()),
            "a VIP is not (arp_sysctls = {arp_sysctls})"
        );
    }
}

#[test]
fn drift_is_repaired_within_5_seconds_and_counted() {
    if !require_root("drift_is_repaired_within_5_seconds_and_counted") {
        return;
    }
    let lab = SeedLab::new("drift");
    let alias = Instance::new("drift-alias");
    let daemon = Daemon::start(&lab.server, &server_config("alias", false, ""), &alias);
    lab.server.ip(&["addr", "del", "192.0.2.0/24", "dev", "lo"]);
    wait::until("alias restored", Duration::from_secs(5), || {
        lab.server
            .ip_output(&["addr", "show", "dev", "lo"])
            .contains("192.0.2.0/24")
    });
    lab.server.sysctl("net.ipv4.conf.all.arp_ignore", "0");
    wait::until("arp_ignore restored", Duration::from_secs(5), || {
        lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore") == "1"
    });
    let repairs = &daemon.stats_json()["drift_repairs"];
    assert_eq!(repairs, &serde_json::json!({"alias": 1, "sysctl": 1}));
    let log = daemon.stop();
    assert!(
        log.contains(
            "drift: ip addr add 192.0.2.0/24 dev lo label lo:vip0 was changed from outside"
        ),
        "{log}"
    );

    let route = Instance::new("drift-route");
    let daemon = Daemon::start(&lab.server, &server_config("route", false, ""), &route);
    let local = ["route", "show", "table", "local", "192.0.2.0/24"];
    drift_local_route(&lab.server, "192.0.2.0/24");
    wait::until("local route restored", Duration::from_secs(5), || {
        !lab.server.ip_output(&local).is_empty()
    });
    assert_eq!(
        daemon.stats_json()["drift_repairs"],
        serde_json::json!({"local_route": 1})
    );
    daemon.stop();
}

#[test]
fn plan_prints_the_commands_and_changes_nothing() {
    if !require_root("plan_prints_the_commands_and_changes_nothing") {
        return;
    }
    let lab = SeedLab::new("plan");
    let instance = Instance::new("plan");
    let config = config_file(&server_config("alias", true, ""));
    let before = host_dump(&lab.server, &SERVER_SYSCTLS);
    let out = instance.vip_ok(
        &lab.server,
        &["plan", "--config", config.path().to_str().unwrap()],
    );
    assert_eq!(
        out,
        "ip addr add 192.0.2.0/24 dev lo label lo:vip0\n\
         ip -6 route add local 2001:db8:1::/64 dev lo table local\n\
         sysctl -w net.ipv4.conf.all.arp_ignore=1\n\
         sysctl -w net.ipv4.conf.all.arp_announce=2\n\
         sysctl -w net.ipv4.conf.s0.arp_ignore=1\n\
         sysctl -w net.ipv4.conf.s0.arp_announce=2\n"
    );
    assert_same_dump(&before, &host_dump(&lab.server, &SERVER_SYSCTLS), "plan");
    assert!(!instance.state_file().exists());
}

/// `vip apply` with `config` in `ns`: exit 2, one line saying `message`, no change.
fn refused(ns: &Netns, sysctls: &[&str], config: &str, message: &str) {
    let instance = Instance::new("safety");
    let file = config_file(config);
    let before = host_dump(ns, sysctls);
    let stderr = instance.vip_refused(ns, &["apply", "--config", file.path().to_str().unwrap()]);
    assert!(
        stderr.contains(message),
        "{stderr:?} should say {message:?}"
    );
    assert_same_dump(&before, &host_dump(ns, sysctls), message);
    assert!(!instance.state_file().exists());
}

fn range(cidr: &str, extra: &str) -> String {
    format!("interfaces = [\"{SERVER_IF}\"]\n[[range]]\nname = \"r\"\ncidr = \"{cidr}\"\naccept = \"alias\"\n{extra}")
}

#[test]
fn unsafe_ranges_are_refused_without_changing_anything() {
    if !require_root("unsafe_ranges_are_refused_without_changing_anything") {
        return;
    }
    let lab = SeedLab::new("safe");
    refused(
        &lab.server,
        &SERVER_SYSCTLS,
        &range("198.18.2.0/28", ""),
        "range \"r\" (198.18.2.0/28) contains 198.18.2.2, configured on interface s0",
    );
    refused(
        &lab.server,
        &SERVER_SYSCTLS,
        &range("198.18.2.0/31", ""),
        "range \"r\" (198.18.2.0/31) contains the default gateway 198.18.2.1",
    );
    refused(
        &lab.server,
        &SERVER_SYSCTLS,
        &range("198.0.0.0/7", ""),
        "range \"r\": 198.0.0.0/7 is broader than /8; set allow_broad = true if you mean it",
    );
    refused(
        &lab.server,
        &SERVER_SYSCTLS,
        "[[range]]\nname = \"r\"\ncidr = \"2001:db8::/31\"\naccept = \"route\"\n",
        "2001:db8::/31 is broader than /32",
    );
    lab.router
        .ip(&["route", "add", "192.0.2.0/24", "via", "198.18.1.2"]);
    refused(
        &lab.router,
        &ROUTER_SYSCTLS,
        ROUTER_CONFIG,
        "ip route add 192.0.2.0/24 via 198.18.2.2: 192.0.2.0/24 is already routed via 198.18.1.2",
    );
}

#[test]
fn allow_broad_lets_a_broad_range_through() {
    if !require_root("allow_broad_lets_a_broad_range_through") {
        return;
    }
    let ns = Netns::new("broad");
    let instance = Instance::new("broad");
    let config = config_file(
        "arp_sysctls = false\n[[range]]\nname = \"r\"\ncidr = \"198.0.0.0/7\"\naccept = \"route\"\nallow_broad = true\n",
    );
    let out = instance.vip_ok(&ns, &["plan", "--config", config.path().to_str().unwrap()]);
    assert_eq!(out, "ip route add local 198.0.0.0/7 dev lo table local\n");
}

/// What the drift repair cannot put back (a route that someone replaced
/// with their own) is logged once, not every second, and the rest is still
/// repaired; it clears when the route is as vip had it again. Someone
/// else's address beside vip's alias (the same network address, another
/// prefix) is no drift, and a stop removes vip's alias and leaves it.
/// Before, the replaced route failed the whole repair every second (EEXIST)
/// before it reached the sysctls, the other address could make the alias
/// read as changed, and the stop deleted whichever of the two came first.
#[test]
fn drift_it_cannot_repair_is_logged_once_and_the_rest_still_repaired() {
    if !require_root("drift_it_cannot_repair_is_logged_once_and_the_rest_still_repaired") {
        return;
    }
    let lab = SeedLab::new("driftc");
    let instance = Instance::new("driftc");
    let route = "[[route]]\ncidr = \"203.0.113.0/24\"\nvia = \"198.18.2.1\"\n";
    let daemon = Daemon::start(
        &lab.server,
        &server_config("alias", false, route),
        &instance,
    );
    lab.server.ip(&["addr", "add", "192.0.2.0/25", "dev", "lo"]);
    lab.server
        .ip(&["route", "replace", "203.0.113.0/24", "via", "198.18.2.3"]);
    daemon.wait_logged(
        "drift not repaired: ip route add 203.0.113.0/24 via 198.18.2.1: 203.0.113.0/24 is already routed via 198.18.2.3",
    );
    lab.server.sysctl("net.ipv4.conf.all.arp_ignore", "0");
    wait::until("arp_ignore restored", Duration::from_secs(5), || {
        lab.server.read_sysctl("net.ipv4.conf.all.arp_ignore") == "1"
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = daemon.log();
    assert_eq!(log.matches("ERROR").count(), 1, "{log}");
    assert_eq!(log.matches("drift not repaired").count(), 1, "{log}");
    let problem = "ip route add 203.0.113.0/24 via 198.18.2.1: 203.0.113.0/24 is already routed via 198.18.2.3; vip does not replace what it did not add";
    let stats = daemon.stats_json();
    assert_eq!(stats["drift_repairs"], serde_json::json!({"sysctl": 1}));
    assert_eq!(stats["drift_unrepaired"], serde_json::json!([problem]));
    let text = instance.vip_ok(&lab.server, &["stats"]);
    assert!(
        text.contains(&format!("drift NOT repaired: {problem}")),
        "{text}"
    );

    lab.server
        .ip(&["route", "replace", "203.0.113.0/24", "via", "198.18.2.1"]);
    daemon.wait_logged("drift: no longer a problem: ip route add 203.0.113.0/24 via 198.18.2.1");
    assert_eq!(
        daemon.stats_json()["drift_unrepaired"],
        serde_json::json!([])
    );
    let log = daemon.stop();
    assert_eq!(log.matches("ERROR").count(), 1, "{log}");
    let on_lo = lab.server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(
        on_lo.contains("192.0.2.0/25") && !on_lo.contains("192.0.2.0/24"),
        "{on_lo}"
    );
    assert!(lab
        .server
        .ip_output(&["route", "show", "203.0.113.0/24"])
        .is_empty());
}

/// A range inside one that accepts locally needs nothing of its own, and
/// `vip plan` says so rather than leave it out without a word.
#[test]
fn plan_names_a_range_that_needs_nothing_of_its_own() {
    if !require_root("plan_names_a_range_that_needs_nothing_of_its_own") {
        return;
    }
    let ns = Netns::new("plannest");
    let instance = Instance::new("plannest");
    let config = config_file(
        "arp_sysctls = false\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         [[range]]\nname = \"dns\"\ncidr = \"192.0.2.53/32\"\naccept = \"alias\"\n",
    );
    let out = instance.vip_ok(&ns, &["plan", "--config", config.path().to_str().unwrap()]);
    assert_eq!(
        out,
        "ip route add local 192.0.2.0/24 dev lo table local\n\
         # nothing of its own: range \"dns\" (192.0.2.53/32) lies in range \"web\" (192.0.2.0/24), whose AnyIP route makes it local\n"
    );
}
