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
    daemon::{Daemon, Instance},
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
fn tcp_unanswered(client: &Netns, vip: IpAddr) -> bool {
    client.run_in(move || {
        let error = TcpStream::connect_timeout(&SocketAddr::new(vip, DENIED_TCP), DENIED_WAIT)
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
                tcp_unanswered(&lab.client, vip),
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
