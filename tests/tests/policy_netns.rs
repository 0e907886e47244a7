//! Allow lists on real traffic: allowed ports work, denied ports get no answer at
//! all (no RST, no ICMP unreachable), and the drop counters say exactly what was
//! sent to them. In native, generic and TC mode.

use std::{
    collections::BTreeMap,
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use vip_tests::{
    daemon::{vip_verdicts, Daemon, Instance},
    netns::Netns,
    root::require_root,
    seed::{tcp_connect, udp_echoes, DirectLab, Services, DIRECT_SERVER_IF, TCP_PORT, UDP_PORT},
};

const DENIED_TCP: u16 = 9090;
const DENIED_UDP: u16 = 9999;
/// Well below TCP's initial retransmission timeout (1 s): a denied connect sends
/// exactly one SYN.
const DENIED_WAIT: Duration = Duration::from_millis(300);
const VIPS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.9",
    "192.0.2.77",
    "192.0.2.200",
    "192.0.2.254",
];

fn config(mode: &str) -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\nxdp_mode = \"{mode}\"\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n\
         accept = \"route\"\nallow = [\"tcp/{TCP_PORT}\", \"udp/{UDP_PORT}\"]\n"
    )
}

/// A denied TCP connect: true if nothing at all came back (a RST would give
/// "connection refused" at once).
fn tcp_unanswered(client: &Netns, vip: IpAddr, port: u16) -> bool {
    client.run_in(move || {
        let error = TcpStream::connect_timeout(&SocketAddr::new(vip, port), DENIED_WAIT)
            .expect_err("a denied port must not connect");
        error.kind() == ErrorKind::TimedOut
    })
}

/// A denied datagram: true if nothing came back (an ICMP port unreachable would
/// make the connected socket's recv fail with "connection refused").
fn udp_unanswered(client: &Netns, vip: IpAddr) -> bool {
    client.run_in(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect((vip, DENIED_UDP)).unwrap();
        socket.set_read_timeout(Some(DENIED_WAIT)).unwrap();
        socket.send(b"denied").unwrap();
        let mut buf = [0u8; 16];
        matches!(socket.recv(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
    })
}

/// (accepted, dropped) packets per VIP, polled until they add up to `total`.
fn per_vip(daemon: &Daemon, total: u64) -> BTreeMap<IpAddr, (u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = daemon.stats_json();
        let mut seen = BTreeMap::new();
        for vip in stats["ranges"][0]["vips"].as_array().unwrap() {
            let addr: IpAddr = vip["addr"].as_str().unwrap().parse().unwrap();
            let counts = (
                vip["packets"].as_u64().unwrap(),
                vip["dropped_packets"].as_u64().unwrap(),
            );
            seen.insert(addr, counts);
        }
        if seen.values().map(|(a, d)| a + d).sum::<u64>() >= total || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn allowed_and_denied(mode: &str) {
    let lab = DirectLab::new(&format!("pol{}", &mode[..2]));
    let _services = Services::start(&lab.server);
    let instance = Instance::new(mode);
    let daemon = Daemon::start(&lab.server, &config(mode), &instance);
    let mut expected = BTreeMap::new();
    for (i, vip) in VIPS.iter().enumerate() {
        let vip: IpAddr = vip.parse().unwrap();
        if let Err(e) = tcp_connect(&lab.client, vip, Duration::from_secs(2)) {
            panic!("{mode}: TCP to allowed port of {vip}: {e}");
        }
        assert!(
            udp_echoes(&lab.client, vip, Duration::from_secs(2)),
            "{mode}: UDP echo from {vip}"
        );
        let denied = i as u64 + 1;
        for _ in 0..denied {
            assert!(
                tcp_unanswered(&lab.client, vip, DENIED_TCP),
                "{mode}: denied TCP to {vip} was answered"
            );
            assert!(
                udp_unanswered(&lab.client, vip),
                "{mode}: denied UDP to {vip} was answered"
            );
        }
        // Accepted: SYN, ACK, RST and the datagram. Dropped: one SYN and one
        // datagram per denied attempt.
        expected.insert(vip, (4, 2 * denied));
    }
    let total = expected.values().map(|(a, d)| a + d).sum();
    assert_eq!(
        per_vip(&daemon, total),
        expected,
        "{mode}: (accepted, dropped) per VIP"
    );
    let stats = daemon.stats_json();
    assert_eq!(stats["attachments"][0]["mode"], mode);
    assert_eq!(
        stats["ranges"][0]["dropped_packets"].as_u64(),
        Some(expected.values().map(|(_, d)| d).sum())
    );
    daemon.stop();
}

#[test]
fn allow_list_native() {
    if require_root("allow_list_native") {
        allowed_and_denied("native");
    }
}

#[test]
fn allow_list_generic() {
    if require_root("allow_list_generic") {
        allowed_and_denied("generic");
    }
}

#[test]
fn allow_list_tc() {
    if require_root("allow_list_tc") {
        allowed_and_denied("tc");
    }
}

/// A range's VIP rows: (address, accepted packets, dropped packets).
type VipVerdicts = Vec<(IpAddr, u64, u64)>;

/// (range, its VIPs' (address, accepted, dropped)) from `vip stats`, polled
/// until it equals `want` or 5 s have passed.
fn verdicts_by_range(daemon: &Daemon, want: &[(&str, VipVerdicts)]) -> Vec<(String, VipVerdicts)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = daemon.stats_json();
        let seen: Vec<(String, VipVerdicts)> = want
            .iter()
            .map(|(name, _)| {
                let range = stats["ranges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["name"] == *name)
                    .unwrap_or_else(|| panic!("no range {name} in {stats}"));
                let mut vips = vip_verdicts(range);
                vips.sort();
                (name.to_string(), vips)
            })
            .collect();
        let matches = seen
            .iter()
            .zip(want)
            .all(|((_, got), (_, want))| got == want);
        if matches || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ranges inside ranges on real traffic: a /32 inside the /24 is judged by its
/// own list (the /24's port is denied to it) and counted in its own range; it
/// installs no alias of its own, the /24's makes it local. Reloads that add it
/// and remove it move its VIP between the /24 and the /32 at once, and a /24
/// added around vip's own alias of the same network address replaces it.
#[test]
fn a_range_inside_another_has_its_own_list_and_counters() {
    if !require_root("a_range_inside_another_has_its_own_list_and_counters") {
        return;
    }
    let lab = DirectLab::new("polnest");
    let _services = Services::start(&lab.server);
    let instance = Instance::new("nested");
    let head = format!("interfaces = [\"{DIRECT_SERVER_IF}\"]\nxdp_mode = \"native\"\n");
    let outer = format!(
        "{head}[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n\
         allow = [\"tcp/{TCP_PORT}\"]\n"
    );
    let nested = format!(
        "{outer}[[range]]\nname = \"admin\"\ncidr = \"192.0.2.53/32\"\naccept = \"alias\"\n\
         allow = [\"udp/{UDP_PORT}\"]\n"
    );
    // First a /26 at the /24's network address: the /24's alias then goes in
    // beside vip's own /26 (no conflict), which is reverted as redundant.
    let low = "[[range]]\nname = \"low\"\ncidr = \"192.0.2.0/26\"\naccept = \"alias\"\n";
    let daemon = Daemon::start(&lab.server, &format!("{head}{low}"), &instance);
    let on_lo = || {
        lab.server
            .ip_output(&["-4", "-o", "addr", "show", "dev", "lo"])
    };
    let lo = on_lo();
    assert!(lo.contains("inet 192.0.2.0/26 "), "{lo}");
    daemon.rewrite_config(&format!("{outer}{low}"));
    let line = daemon.reload();
    assert!(line.contains("] reloaded "), "{line}");
    let lo = on_lo();
    assert!(lo.contains("inet 192.0.2.0/24 "), "{lo}");
    assert!(!lo.contains("192.0.2.0/26"), "{lo}");
    daemon.rewrite_config(&outer);
    let line = daemon.reload();
    assert!(line.contains("] reloaded "), "{line}");
    let web: IpAddr = "192.0.2.10".parse().unwrap();
    let admin: IpAddr = "192.0.2.53".parse().unwrap();
    let connects = |vip| {
        tcp_connect(&lab.client, vip, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("TCP to {vip}: {e}"))
    };
    let owned = |want: Vec<(&str, VipVerdicts)>| {
        let seen = verdicts_by_range(&daemon, &want);
        let want: Vec<(String, VipVerdicts)> =
            want.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        assert_eq!(seen, want, "(range, [(VIP, accepted, dropped)])");
    };
    // TCP: SYN, ACK, RST; a denied attempt: one SYN or one datagram.
    connects(admin);
    owned(vec![("web", vec![(admin, 3, 0)])]);

    daemon.rewrite_config(&nested);
    let line = daemon.reload();
    assert!(line.contains("] reloaded "), "{line}");
    let lo = on_lo();
    assert!(lo.contains("inet 192.0.2.0/24 "), "{lo}");
    assert!(!lo.contains("192.0.2.53"), "{lo}");
    connects(web);
    assert!(
        udp_unanswered(&lab.client, web),
        "UDP to the /24 was answered"
    );
    assert!(
        udp_echoes(&lab.client, admin, Duration::from_secs(2)),
        "UDP to the /32"
    );
    assert!(
        tcp_unanswered(&lab.client, admin, TCP_PORT),
        "the /24's TCP port was answered on the /32"
    );
    owned(vec![
        ("web", vec![(web, 3, 1), (admin, 3, 0)]),
        ("admin", vec![(admin, 1, 1)]),
    ]);
    let stats = daemon.stats_json();
    assert_eq!(stats["drift_unrepaired"], serde_json::json!([]), "{stats}");

    daemon.rewrite_config(&outer);
    let line = daemon.reload();
    assert!(line.contains("] reloaded "), "{line}");
    connects(admin);
    owned(vec![("web", vec![(web, 3, 1), (admin, 6, 0)])]);
    assert_eq!(daemon.stats_json()["ranges"].as_array().unwrap().len(), 1);
    daemon.stop();
    let lo = on_lo();
    assert!(!lo.contains("192.0.2."), "{lo}");
}
