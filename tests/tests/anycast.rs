//! Anycast over BGP in a netns lab: FRR on the router (ECMP, L4 hash), vip
//! driving BIRD on two real servers. Traffic spreads over both and is counted
//! exactly once; a failed health check moves it to the other server and back;
//! a graceful stop refuses no datagram.

use std::{
    collections::BTreeMap,
    net::{IpAddr, TcpListener, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use vip_tests::{
    anycast::{AnycastLab, RANGE, RANGE_V6, STEER_TO},
    daemon::{config_file, Daemon, Instance},
    deploy::{bounded, unit_capabilities},
    flow::{send_echoed, vip_packets},
    http,
    root::require_root,
    seed::Services,
    wait,
};

/// 20 VIPs of the announced range.
fn vips() -> Vec<String> {
    (1..=20).map(|n| format!("192.0.2.{n}")).collect()
}

/// What a round of datagrams did.
#[derive(Default)]
struct Sent {
    per_vip: BTreeMap<String, u64>,
    lost: u64,
}

/// One datagram to every VIP from each of `flows` new sockets (a new source
/// port each: new flows for the router's hash), each waiting for its echo.
fn round(lab: &AnycastLab, flows: usize) -> Sent {
    round_to(lab, flows, vips())
}

/// [`round`] to other VIPs, IPv4 or IPv6.
fn round_to(lab: &AnycastLab, flows: usize, vips: Vec<String>) -> Sent {
    let any = if vips[0].contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    lab.client.run_in(move || {
        let mut sent = Sent::default();
        for _ in 0..flows {
            let socket = UdpSocket::bind(any).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            for (n, vip) in vips.iter().enumerate() {
                let addr: IpAddr = vip.parse().unwrap();
                *sent.per_vip.entry(vip.clone()).or_default() += 1;
                if !send_echoed(&socket, addr, (n as u64).to_be_bytes()) {
                    sent.lost += 1;
                }
            }
        }
        sent
    })
}

fn per_vip(instance: &Instance, lab_server: &vip_tests::netns::Netns) -> BTreeMap<String, u64> {
    vip_packets(&instance.stats_json(lab_server))
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

fn minus(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(vip, n)| (vip.clone(), n - before.get(vip).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// 8 new flows to each of `vips`: every datagram echoed, both servers get
/// some, and each VIP counted exactly once over the two. Each server's counts.
fn spread_exactly(
    lab: &AnycastLab,
    instances: &[Instance; 2],
    vips: Vec<String>,
) -> [BTreeMap<String, u64>; 2] {
    let counts = |i: usize| per_vip(&instances[i], &lab.servers[i].ns);
    let before = [counts(0), counts(1)];
    let sent = round_to(lab, 8, vips);
    assert_eq!(sent.lost, 0, "datagrams without an echo");
    let got = [minus(&counts(0), &before[0]), minus(&counts(1), &before[1])];
    assert!(
        total(&got[0]) > 0 && total(&got[1]) > 0,
        "both servers get flows: {got:?}"
    );
    for (vip, n) in &sent.per_vip {
        let counted = got[0].get(vip).copied().unwrap_or(0) + got[1].get(vip).copied().unwrap_or(0);
        assert_eq!(
            counted, *n,
            "{vip}: sent {n}, counted {counted} over both servers"
        );
    }
    got
}

fn phase(instance: &Instance, ns: &vip_tests::netns::Netns) -> String {
    let stats = instance.stats_json(ns);
    stats["bgp"][0]["phase"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Each server's health flag (its exec check passes while it exists), its
/// services (UDP echo, the TCP check's listener) and its vip instance.
struct Servers {
    _dir: tempfile::TempDir,
    flags: [std::path::PathBuf; 2],
    _services: Vec<Services>,
    instances: [Instance; 2],
    /// Server 1's steer target, while it is up.
    steer_target: std::sync::Mutex<Option<TcpListener>>,
}

impl Servers {
    fn new(lab: &AnycastLab) -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let flags = [1, 2].map(|n| dir.path().join(format!("healthy{n}")));
        for flag in &flags {
            std::fs::write(flag, "").unwrap();
        }
        let servers = Servers {
            _services: lab.servers.iter().map(|s| Services::start(&s.ns)).collect(),
            instances: [Instance::new("any1"), Instance::new("any2")],
            flags,
            _dir: dir,
            steer_target: std::sync::Mutex::new(None),
        };
        servers.steer_target_up(lab, true);
        servers
    }

    /// Starts or stops server 1's steer target.
    fn steer_target_up(&self, lab: &AnycastLab, up: bool) {
        let listener = up.then(|| {
            lab.servers[0]
                .ns
                .run_in(|| TcpListener::bind(STEER_TO).expect("the steer target"))
        });
        *self.steer_target.lock().unwrap() = listener;
    }

    /// `vip run` on both servers, draining for `drain_seconds` on the way out;
    /// server 2 bounded to the shipped unit's capabilities, as is the BIRD it
    /// starts.
    fn start<'a>(&'a self, lab: &'a AnycastLab, drain_seconds: u32) -> Vec<Daemon<'a>> {
        self.start_with(lab, |i| lab.server_config(i, &self.flags[i], drain_seconds))
    }

    /// [`Servers::start`] with each server's config from `config`.
    fn start_with<'a>(
        &'a self,
        lab: &'a AnycastLab,
        config: impl Fn(usize) -> String,
    ) -> Vec<Daemon<'a>> {
        let wrappers = [Vec::new(), bounded(&unit_capabilities())];
        (0..2)
            .map(|i| {
                Daemon::try_start(
                    &lab.servers[i].ns,
                    &config(i),
                    &self.instances[i],
                    &[],
                    &wrappers[i],
                )
                .unwrap_or_else(|log| panic!("vip run on server {} did not start:\n{log}", i + 1))
            })
            .collect()
    }
}

impl Servers {
    /// Each server's BIRD log, for failure messages.
    fn diagnostics(&self) -> String {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, instance)| {
                let bgp = instance.run_dir().join("bgp");
                let log = std::fs::read_to_string(bgp.join("bird.log"))
                    .unwrap_or_else(|e| format!("({e})"));
                let protocols = std::process::Command::new("birdc")
                    .arg("-s")
                    .arg(bgp.join("bird.ctl"))
                    .args(["show", "protocols", "all"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_else(|e| format!("({e})"));
                format!("server {} bird.log:\n{log}\n{protocols}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const BOTH: [&str; 2] = ["198.18.1.2", "198.18.2.2"];

fn wait_hops(lab: &AnycastLab, servers: &Servers, wanted: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    while lab.next_hops() != wanted {
        if start.elapsed() > within {
            panic!(
                "router next hops {:?}, not {wanted:?}, after {within:?}\n{}\n{}",
                lab.next_hops(),
                lab.vtysh("show bgp summary"),
                servers.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn flows_spread_over_both_servers_move_on_a_failed_check_and_come_back() {
    if !require_root("anycast lab") {
        return;
    }
    let lab = AnycastLab::new("any");
    let servers = Servers::new(&lab);
    let mut daemons = servers.start(&lab, 1);
    let Servers {
        flags, instances, ..
    } = &servers;
    wait_hops(&lab, &servers, &BOTH, Duration::from_secs(30));
    assert!(lab.vtysh("show bgp ipv4 unicast").contains(RANGE));
    wait::until("both sessions in vip stats", Duration::from_secs(3), || {
        (0..2).all(|i| {
            instances[i].stats_json(&lab.servers[i].ns)["bgp_sessions"][0]["established"] == true
        })
    });

    // Spread: flows to 20 VIPs land on both servers, each counted once.
    let counts = |i: usize| per_vip(&instances[i], &lab.servers[i].ns);
    let got = spread_exactly(&lab, instances, vips());
    assert_eq!(total(&got[0]) + total(&got[1]), 160);

    // Server 1's exec check fails: withdrawn within interval x fall + timeout
    // (200 ms x 2 + 150 ms), then every new flow goes to server 2.
    let failed_at = Instant::now();
    std::fs::remove_file(&flags[0]).unwrap();
    wait::until("server 1 withdrawn", Duration::from_secs(5), || {
        phase(&instances[0], &lab.servers[0].ns) == "withdrawn"
    });
    let withdrawn_after = failed_at.elapsed();
    wait_hops(&lab, &servers, &["198.18.2.2"], Duration::from_secs(5));
    let moved_after = failed_at.elapsed();
    eprintln!("withdrawn after {withdrawn_after:?}, router moved after {moved_after:?}");
    assert!(
        withdrawn_after < Duration::from_millis(550 + 1000 + 500),
        "withdrawal took {withdrawn_after:?} (check interval x fall + timeout, plus the 1 s stats poll)"
    );
    let stats = instances[0].stats_json(&lab.servers[0].ns);
    assert_eq!(
        stats["bgp"][0]["reason"],
        format!(
            "health check exec:{} down: exit status: 1",
            flags[0].with_extension("sh").display()
        )
    );
    assert_eq!(stats["bgp"][0]["health"][1]["up"], false);
    assert_eq!(stats["bgp"][0]["health"][1]["failure"], "exit status: 1");
    assert!(
        stats["bgp"][0]["health"][0].get("failure").is_none(),
        "{stats:#}"
    );
    assert_eq!(stats["bgp"][0]["health"][0]["up"], true);
    let metrics = http::get(
        &lab.servers[0].ns,
        "198.18.1.2:9669".parse().unwrap(),
        "/metrics",
    )
    .1;
    let exec = format!("exec:{}", flags[0].with_extension("sh").display());
    for line in [
        "vip_announced{range=\"web\"} 0".to_string(),
        "vip_announce_transitions_total{range=\"web\"} 2".to_string(),
        format!("vip_health_up{{range=\"web\",check=\"{exec}\"}} 0"),
        format!("vip_health_transitions_total{{range=\"web\",check=\"{exec}\"}} 1"),
        "vip_health_up{range=\"web\",check=\"tcp:198.18.1.2:8080\"} 1".to_string(),
        "vip_bgp_session_up{neighbor=\"198.18.1.1\"} 1".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let before = [counts(0), counts(1)];
    let sent = round(&lab, 4);
    assert_eq!(sent.lost, 0);
    let got = [minus(&counts(0), &before[0]), minus(&counts(1), &before[1])];
    assert_eq!(
        total(&got[0]),
        0,
        "server 1 gets nothing once withdrawn: {got:?}"
    );
    assert_eq!(got[1], sent.per_vip, "server 2 counts every datagram");

    // Restored: announced again after rise passes; flows spread again.
    std::fs::write(&flags[0], "").unwrap();
    wait_hops(&lab, &servers, &BOTH, Duration::from_secs(5));
    assert_eq!(phase(&instances[0], &lab.servers[0].ns), "announced");
    let before = [counts(0), counts(1)];
    let sent = round(&lab, 8);
    assert_eq!(sent.lost, 0);
    let got = [minus(&counts(0), &before[0]), minus(&counts(1), &before[1])];
    assert!(total(&got[0]) > 0 && total(&got[1]) > 0, "{got:?}");
    assert_eq!(total(&got[0]) + total(&got[1]), total(&sent.per_vip));
    let stats = instances[0].stats_json(&lab.servers[0].ns);
    assert_eq!(
        stats["bgp"][0]["transitions"], 3,
        "announced, withdrawn, announced"
    );

    // Server 1's steer target goes down: withdrawn; back up: announced.
    servers.steer_target_up(&lab, false);
    wait_hops(&lab, &servers, &["198.18.2.2"], Duration::from_secs(8));
    let stats = instances[0].stats_json(&lab.servers[0].ns);
    assert_eq!(stats["bgp"][0]["reason"], "a steer target is down");
    servers.steer_target_up(&lab, true);
    wait_hops(&lab, &servers, &BOTH, Duration::from_secs(8));

    // The operator drains server 2: graceful shutdown first, then withdrawn;
    // traffic moves to server 1; undrain brings it back.
    let out = instances[1].vip_ok(&lab.servers[1].ns, &["drain", "web"]);
    assert!(out.contains("withdrawn: web"), "{out}");
    assert_eq!(lab.next_hops(), ["198.18.1.2"]);
    let out = instances[1].vip_ok(&lab.servers[1].ns, &["undrain", "web"]);
    assert!(out.contains("undrained web"), "{out}");
    wait_hops(&lab, &servers, &BOTH, Duration::from_secs(5));

    // kill -9: BIRD and the datapath outlive vip, so the announcement stays
    // and server 1 goes on taking and counting its share (fail-static).
    let ns1 = &lab.servers[0].ns;
    let killed = daemons.remove(0);
    let config = lab.server_config(0, &flags[0], 1);
    killed.kill();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.next_hops(), BOTH, "still announced while vip is down");
    let before = counts(0);
    let sent = round(&lab, 8);
    assert_eq!(sent.lost, 0);
    assert!(
        total(&minus(&counts(0), &before)) > 0,
        "server 1 still serves"
    );

    // The restarted daemon re-evaluates at once: its check now fails.
    std::fs::remove_file(&flags[0]).unwrap();
    let restarted = Daemon::start_with(ns1, &config, &instances[0], &["--keep-datapath"]);
    wait_hops(&lab, &servers, &["198.18.2.2"], Duration::from_secs(3));
    std::fs::write(&flags[0], "").unwrap();
    wait_hops(&lab, &servers, &BOTH, Duration::from_secs(5));

    // A stop with --keep-datapath (the shipped unit's restart) leaves BIRD
    // announcing, as it leaves the datapath.
    let log = restarted.stop();
    assert!(log.contains("announcing as it is"), "{log}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.next_hops(), BOTH, "still announced after the stop");

    // `vip down` then drains and withdraws what the stopped daemon announced,
    // stops BIRD, and only then reverts the host.
    let bird_pid: u32 = std::fs::read_to_string(instances[0].run_dir().join("bgp/bird.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = instances[0].vip_ok(ns1, &["down"]);
    assert!(
        out.contains("draining 1 announced range(s) for 1 s before withdrawing")
            && out.contains("withdrew every range and stopped bird"),
        "{out}"
    );
    assert_eq!(lab.next_hops(), ["198.18.2.2"]);
    assert!(
        !vip_userspace::host::state::alive(bird_pid),
        "bird {bird_pid} stopped"
    );
    assert!(!ns1
        .ip_output(&["addr", "show", "dev", "lo"])
        .contains(RANGE));
    let sent = round(&lab, 4);
    assert_eq!(sent.lost, 0, "server 2 takes everything");
    drop(daemons);
}

#[test]
fn an_ipv6_range_is_announced_over_ipv6_sessions_spread_and_drained_alone() {
    if !require_root("anycast lab, IPv6") {
        return;
    }
    let lab = AnycastLab::new("any6");
    let servers = Servers::new(&lab);
    // A /128 inside the /64, announced on its own: the /64's AnyIP route
    // makes it local, it installs none of its own.
    const HOST6: &str = "2001:db8:1::53/128";
    let _daemons = servers.start_with(&lab, |i| {
        format!(
            "{}[[range]]\nname = \"host6\"\ncidr = \"{HOST6}\"\naccept = \"route\"\nannounce = true\n",
            lab.server_config_v6(i, &servers.flags[i], 1)
        )
    });
    let start = Instant::now();
    while lab.next_hops_of(RANGE_V6).len() != 2
        || lab.next_hops() != BOTH
        || lab.next_hops_of(HOST6).len() != 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "router next hops {:?}, {:?} and {:?}\n{}\n{}",
            lab.next_hops_of(HOST6),
            lab.next_hops_of(RANGE_V6),
            lab.next_hops(),
            lab.vtysh("show bgp summary"),
            servers.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let instances = &servers.instances;
    for (i, instance) in instances.iter().enumerate() {
        let stats = instance.stats_json(&lab.servers[i].ns);
        let sessions = stats["bgp_sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2, "{stats}");
        assert_eq!(sessions[1]["neighbor"], lab.servers[i].router_addr_v6);
        assert_eq!(stats["bgp"][1]["phase"], "announced");
        assert_eq!(stats["bgp"][2]["phase"], "announced");
        let local = lab.servers[i]
            .ns
            .ip_output(&["-6", "route", "show", "table", "local"]);
        assert!(!local.contains("2001:db8:1::53"), "{local}");
    }

    let vips6: Vec<String> = (1..=20).map(|n| format!("2001:db8:1::{n:x}")).collect();
    let counts = |i: usize| per_vip(&instances[i], &lab.servers[i].ns);
    spread_exactly(&lab, instances, vips6.clone());

    // Draining the IPv6 range of server 2 leaves its IPv4 range announced.
    let out = instances[1].vip_ok(&lab.servers[1].ns, &["drain", "web6"]);
    assert!(out.contains("withdrawn: web6"), "{out}");
    wait::until("one IPv6 next hop", Duration::from_secs(5), || {
        lab.next_hops_of(RANGE_V6).len() == 1
    });
    assert_eq!(lab.next_hops(), BOTH);
    assert_eq!(
        lab.next_hops_of(HOST6).len(),
        2,
        "the /128 inside stays announced by both"
    );
    let before = counts(1);
    let sent = round_to(&lab, 4, vips6);
    assert_eq!(sent.lost, 0);
    assert_eq!(
        total(&minus(&counts(1), &before)),
        0,
        "server 2 gets no IPv6 flow once drained"
    );
}

#[test]
fn a_graceful_stop_under_a_udp_flow_refuses_no_datagram() {
    if !require_root("anycast lab") {
        return;
    }
    let lab = AnycastLab::new("anystop");
    let servers = Servers::new(&lab);
    // Without CAP_NET_BIND_SERVICE the BIRD that vip starts cannot listen on
    // BGP's port, so the session never comes up: vip says so.
    {
        let fewer: Vec<String> = unit_capabilities()
            .into_iter()
            .filter(|c| c != "net_bind_service")
            .collect();
        let (ns, instance) = (&lab.servers[1].ns, &servers.instances[1]);
        let config = lab.server_config(1, &servers.flags[1], 0);
        let daemon = Daemon::try_start(ns, &config, instance, &[], &bounded(&fewer))
            .unwrap_or_else(|log| panic!("vip run did not start:\n{log}"));
        wait::until(
            "the session error in vip stats",
            Duration::from_secs(5),
            || {
                instance.stats_json(ns)["bgp_sessions"][0]["info"]
                    .as_str()
                    .is_some_and(|i| i.contains("No listening socket"))
            },
        );
        assert_eq!(
            instance.stats_json(ns)["bgp_sessions"][0]["established"],
            false
        );
        let log = daemon.stop();
        assert!(
            log.contains("BGP session with 198.18.2.1: Error: No listening socket"),
            "{log}"
        );
    }
    let mut daemons: Vec<Option<Daemon>> = servers.start(&lab, 2).into_iter().map(Some).collect();
    wait_hops(&lab, &servers, &BOTH, Duration::from_secs(30));
    // Packets to the VIPs that reach server 1, counted by nftables there
    // (independent of vip, which goes away with the stop).
    let nft = lab.servers[0]
        .ns
        .command("nft")
        .args([
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                b"table ip lab {\n chain pre {\n  type filter hook prerouting priority raw;\n  ip daddr 192.0.2.0/24 udp dport 7777 counter\n }\n}\n",
            )?;
            child.wait()
        })
        .expect("nft");
    assert!(nft.success());
    let reached_server1 = || {
        let out = lab.servers[0]
            .ns
            .command("nft")
            .args(["list", "table", "ip", "lab"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("nft counter")
    };

    // A flow of new flows to 20 VIPs, each datagram waiting for its echo.
    let stop = Arc::new(AtomicBool::new(false));
    let flow = {
        let stop = stop.clone();
        let vips = vips();
        lab.client.spawn_in(move || {
            let mut sent = 0u64;
            let mut lost = 0u64;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(60)
                && sent < 50_000
            {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                for vip in &vips {
                    let addr: IpAddr = vip.parse().unwrap();
                    lost += u64::from(!send_echoed(&socket, addr, sent.to_be_bytes()));
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            (sent, lost)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    assert!(reached_server1() > 0, "server 1 took part in the flow");

    // SIGTERM without --keep-datapath: graceful shutdown for 2 s, withdraw,
    // then the alias goes and the datapath detaches.
    let log = daemons[0].take().unwrap().stop();
    assert!(
        !lab.servers[0]
            .ns
            .ip_output(&["addr", "show", "dev", "lo"])
            .contains("192.0.2.0/24"),
        "the alias is gone"
    );
    let at_exit = reached_server1();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (sent, lost) = flow.join().unwrap();
    assert!(sent > 200, "the flow ran: {sent} datagrams");
    assert_eq!(lost, 0, "no datagram refused or lost of {sent}:\n{log}");
    assert_eq!(
        reached_server1(),
        at_exit,
        "nothing reached server 1 after its alias went"
    );
    let order: Vec<usize> = [
        "-> Draining",
        "-> Withdrawn",
        "stopped bird",
        "shutting down",
    ]
    .iter()
    .map(|line| {
        log.find(line)
            .unwrap_or_else(|| panic!("{line:?} in the log:\n{log}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "drain, withdraw, stop, then revert:\n{log}"
    );
    assert_eq!(lab.next_hops(), ["198.18.2.2"]);
    drop(daemons);
}

#[test]
fn a_missing_bird_is_refused_before_anything_changes() {
    if !require_root("a_missing_bird_is_refused_before_anything_changes") {
        return;
    }
    let ns = vip_tests::netns::Netns::new("nobird");
    ns.ip(&["link", "add", "s0", "type", "veth", "peer", "name", "s1"]);
    let before = ns.ip_output(&["addr", "show"]);
    let config = config_file(
        "interfaces = [\"s0\"]\n[metrics]\nlisten = \"off\"\n\
         [bgp]\nlocal_as = 65001\nrouter_id = \"198.18.1.2\"\nbird = \"/nonexistent/bird\"\n\
         [[bgp.neighbor]]\naddress = \"198.18.1.1\"\nas = 65000\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\nannounce = true\n",
    );
    let instance = Instance::new("nobird");
    let path = config.path().to_str().unwrap();
    for command in ["check", "run"] {
        let line = instance.vip_refused(&ns, &[command, "--config", path]);
        assert!(
            line.contains("[bgp] needs /nonexistent/bird, which is not installed"),
            "vip {command}: {line}"
        );
    }
    assert_eq!(ns.ip_output(&["addr", "show"]), before, "no alias added");
    assert!(!instance.pin_dir().exists(), "nothing pinned");
    assert!(!instance.state_file().exists(), "no state recorded");
}

#[test]
fn bad_bgp_config_is_refused_before_anything_changes() {
    let base = |bgp: &str, range_extra: &str| {
        format!(
            "interfaces = [\"eth0\"]\n{bgp}\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n{range_extra}"
        )
    };
    let good_bgp = "[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.1.2\"\n[[bgp.neighbor]]\naddress = \"198.18.1.1\"\nas = 65000\n";
    let cases = [
        (
            base(
                &good_bgp.replace("local_as = 65001", "local_as = 0"),
                "announce = true",
            ),
            "bgp.local_as = 0",
        ),
        (
            base(
                &good_bgp.replace("198.18.1.2", "2001:db8::2"),
                "announce = true",
            ),
            "is not an IPv4 address",
        ),
        (
            base(
                &format!("{good_bgp}local_address = \"2001:db8::2\"\n"),
                "announce = true",
            ),
            "is not of the same family",
        ),
        (
            base(good_bgp, "announce = true").replace("accept = \"alias\"", "accept = \"none\""),
            "accept = \"none\"",
        ),
        (base("", "announce = true"), "needs a [bgp] section"),
        (
            base(
                good_bgp,
                "announce = true\nhealth = [{ check = \"ftp:x\" }]",
            ),
            "is not tcp:ADDRESS:PORT",
        ),
        (
            base(good_bgp, "announce = true")
                .replace("192.0.2.0/24", "2001:db8:1::/64")
                .replace("accept = \"alias\"", "accept = \"route\""),
            "no bgp neighbor is IPv6",
        ),
    ];
    let vip = vip_tests::daemon::vip_bin();
    for (text, wanted) in cases {
        let file = config_file(&text);
        let out = std::process::Command::new(&vip)
            .args(["check", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}\n{stderr}");
        assert!(stderr.contains(wanted), "{wanted:?} in {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// A restart (the shipped unit's: `--keep-datapath`, so BIRD stayed
/// announcing) with `[bgp]` taken out of the config: the new daemon drains,
/// withdraws and stops the BIRD the old one left, as a reload to that config
/// would, rather than leaving it announcing with nothing to re-evaluate it.
#[test]
fn a_restart_without_bgp_withdraws_what_the_daemon_before_announced() {
    if !require_root("a_restart_without_bgp_withdraws_what_the_daemon_before_announced") {
        return;
    }
    let lab = AnycastLab::new("anyoff");
    let servers = Servers::new(&lab);
    let ns1 = &lab.servers[0].ns;
    let instance = &servers.instances[0];
    let config = lab.server_config(0, &servers.flags[0], 1);
    let daemon = Daemon::start_with(ns1, &config, instance, &["--keep-datapath"]);
    wait_hops(&lab, &servers, &["198.18.1.2"], Duration::from_secs(10));
    daemon.stop();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        lab.next_hops(),
        ["198.18.1.2"],
        "still announced after the stop"
    );
    let bird_pid: u32 = std::fs::read_to_string(instance.run_dir().join("bgp/bird.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let without_bgp = format!(
        "interfaces = [\"{}\"]\nxdp_mode = \"generic\"\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"{RANGE}\"\naccept = \"alias\"\n",
        lab.servers[0].ifname
    );
    let restarted = Daemon::start(ns1, &without_bgp, instance);
    // After it says it is counting.
    restarted.wait_logged("withdrew every range and stopped bird");
    let log = restarted.log();
    assert!(
        log.contains("draining 1 announced range(s) for 1 s before withdrawing")
            && log.contains("withdrew every range and stopped bird"),
        "{log}"
    );
    // The router drops the route once it sees the session close.
    wait_hops(&lab, &servers, &[], Duration::from_secs(5));
    assert!(
        !vip_userspace::host::state::alive(bird_pid),
        "bird {bird_pid} still runs"
    );
    assert!(
        !instance.run_dir().join("bgp.json").exists(),
        "the speaker record stays"
    );
    restarted.stop();
    instance.vip_ok(ns1, &["down"]);
}

/// A range is withdrawn while no interface vip judges its traffic on
/// exists, and announced again once vip has attached to the interface
/// created again. Its datapath runs on an interface of its own, so that the
/// BGP session (over the lab's link) outlives it.
#[test]
fn a_range_is_withdrawn_while_its_interface_is_gone() {
    if !require_root("a_range_is_withdrawn_while_its_interface_is_gone") {
        return;
    }
    const IFNAME: &str = "vipd0";
    let lab = AnycastLab::new("anyif");
    let servers = Servers::new(&lab);
    let ns1 = &lab.servers[0].ns;
    let create = || {
        ns1.ip(&[
            "link", "add", IFNAME, "type", "veth", "peer", "name", "vipd1",
        ]);
        ns1.ip(&["link", "set", IFNAME, "up"]);
    };
    create();
    let instance = &servers.instances[0];
    let config = lab.server_config(0, &servers.flags[0], 0).replace(
        &format!("interfaces = [\"{}\"]", lab.servers[0].ifname),
        &format!("interfaces = [\"{IFNAME}\"]"),
    );
    assert!(config.contains(IFNAME), "{config}");
    let daemon = Daemon::start(ns1, &config, instance);
    wait_hops(&lab, &servers, &["198.18.1.2"], Duration::from_secs(10));

    ns1.ip(&["link", "del", IFNAME]);
    wait_hops(&lab, &servers, &[], Duration::from_secs(5));
    let stats = instance.stats_json(ns1);
    assert_eq!(stats["bgp"][0]["phase"], "withdrawn", "{stats:#}");
    assert_eq!(
        stats["bgp"][0]["reason"], "datapath not attached",
        "{stats:#}"
    );

    create();
    wait_hops(&lab, &servers, &["198.18.1.2"], Duration::from_secs(10));
    let stats = instance.stats_json(ns1);
    assert_eq!(stats["drift_repairs"]["attachment"], 1, "{stats:#}");
    let log = daemon.stop();
    assert!(log.contains(&format!("{IFNAME} is gone")), "{log}");
    instance.assert_nothing_left(ns1, IFNAME);
}
