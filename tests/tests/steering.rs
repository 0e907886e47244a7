//! Socket steering with sk_lookup: TCP port 80 and UDP port 5353 on any VIP of
//! a range go to one listener each, bound to 127.0.0.1 (or ::1) in the real
//! server's namespace; a wildcard listener on another port gets only its own traffic. A
//! restarted listener is picked up again within 5 s; a stopped one turns
//! `vip_steer_target_up` to 0. A range inside the steered one does not inherit
//! its entries. Delivered counts follow accepted ones while the
//! targets are up and fall behind when one is down.

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use serde_json::Value;
use vip_tests::{
    daemon::{steered_per_vip, Daemon, Instance},
    http,
    netns::Netns,
    root::require_root,
    seed::{DirectLab, SeedLab, DIRECT_SERVER_IF, SERVER_IF, SERVER_V6},
    wait,
};

const METRICS: &str = "127.0.0.1:9669";
const STEERED_TCP: &str = "127.0.0.1:8080";
const STEERED_UDP: &str = "127.0.0.1:5353";
const WILDCARD_PORT: u16 = 9090;
/// A range inside "web" without steer entries of its own.
const INNER: &str = "192.0.2.200";

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         steer = [{{ match = \"tcp/80\", to = \"{STEERED_TCP}\" }}, {{ match = \"udp/5353\", to = \"{STEERED_UDP}\" }}]\n\
         [[range]]\nname = \"inner\"\ncidr = \"{INNER}/32\"\naccept = \"route\"\n"
    )
}

fn vips() -> Vec<IpAddr> {
    (1..=5)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect()
}

fn tcp_listener(ns: &Netns, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = ns.run_in(move || TcpListener::bind(addr).expect("bind the listener"));
    listener.set_nonblocking(true).unwrap();
    listener
}

fn udp_socket(ns: &Netns, addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = ns.run_in(move || UdpSocket::bind(addr).expect("bind the UDP socket"));
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket
}

/// Accepts one connection within 2 s: its local address.
fn accept_one(listener: &TcpListener) -> Option<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream.local_addr().unwrap()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn connect(client: &Netns, addr: SocketAddr) -> std::io::Result<TcpStream> {
    client.run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)))
}

/// The status file's steer entries, as (match, up).
fn targets_up(instance: &Instance) -> Vec<(String, bool)> {
    let Ok(text) = std::fs::read_to_string(instance.status_file()) else {
        return Vec::new();
    };
    let state: Value = serde_json::from_str(&text).unwrap();
    state["steer"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["match"].as_str().unwrap().to_string(),
                        t["up"].as_bool().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn metric(ns: &Netns, line_start: &str) -> Option<f64> {
    let (status, body) = http::get(ns, METRICS.parse().unwrap(), "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn range_counts(stats: &Value) -> (u64, u64) {
    let range = &stats["ranges"][0];
    (
        range["packets"].as_u64().unwrap(),
        range["delivered_packets"].as_u64().unwrap(),
    )
}

#[test]
fn steering_sends_each_vip_port_to_one_socket_and_follows_restarts() {
    if !require_root("steering_sends_each_vip_port_to_one_socket_and_follows_restarts") {
        return;
    }
    let lab = DirectLab::new("steer");
    let tcp = tcp_listener(&lab.server, STEERED_TCP);
    let udp = udp_socket(&lab.server, STEERED_UDP);
    let wildcard = tcp_listener(&lab.server, &format!("0.0.0.0:{WILDCARD_PORT}"));
    let instance = Instance::new("steer");
    let daemon = Daemon::start(&lab.server, &config(), &instance);
    wait::until("both targets up", Duration::from_secs(5), || {
        targets_up(&instance) == [("tcp/80".to_string(), true), ("udp/5353".to_string(), true)]
    });

    // UDP first, alone: every datagram is one socket lookup, so delivered must
    // equal accepted exactly.
    let client_udp = lab
        .client
        .run_in(|| UdpSocket::bind("0.0.0.0:0").expect("client UDP"));
    for vip in vips() {
        client_udp.send_to(b"hello", (vip, 5353)).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = udp.recv_from(&mut buf).expect("a steered datagram");
        assert_eq!(&buf[..n], b"hello");
    }
    let stats = instance.stats_json(&lab.server);
    assert_eq!(
        range_counts(&stats),
        (5, 5),
        "accepted and delivered: {stats}"
    );

    // TCP to port 80 of five VIPs: all on the one listener, each seeing its VIP.
    let mut held = Vec::new();
    for vip in vips() {
        held.push(connect(&lab.client, SocketAddr::new(vip, 80)).expect("steered connect"));
        assert_eq!(
            accept_one(&tcp),
            Some(SocketAddr::new(vip, 80)),
            "the listener on {STEERED_TCP} got the connection to {vip}"
        );
    }
    // The wildcard listener gets its own port and nothing steered.
    held.push(connect(&lab.client, SocketAddr::new(vips()[2], WILDCARD_PORT)).unwrap());
    assert_eq!(
        accept_one(&wildcard),
        Some(SocketAddr::new(vips()[2], WILDCARD_PORT))
    );
    // The range inside "web" does not inherit its steer entries: port 80 of
    // its VIP goes to the kernel's own lookup, where nothing listens on it,
    // and its other ports reach their sockets as before.
    let inner: IpAddr = INNER.parse().unwrap();
    let refused = connect(&lab.client, SocketAddr::new(inner, 80))
        .expect_err("port 80 of the inner range is not steered");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    held.push(connect(&lab.client, SocketAddr::new(inner, WILDCARD_PORT)).unwrap());
    assert_eq!(
        accept_one(&wildcard),
        Some(SocketAddr::new(inner, WILDCARD_PORT))
    );
    assert_eq!(
        accept_one(&tcp),
        None,
        "nothing more on the steered listener"
    );
    assert_eq!(
        accept_one(&wildcard),
        None,
        "nothing more on the wildcard one"
    );

    let stats = instance.stats_json(&lab.server);
    let steer = stats["steer"].as_array().unwrap();
    assert_eq!(steer.len(), 2, "{stats}");
    for (entry, expected) in steer.iter().zip([5u64, 5]) {
        assert_eq!(entry["up"], true);
        assert_eq!(entry["packets"].as_u64(), Some(expected), "{entry}");
        let per_vip = steered_per_vip(entry);
        let want: Vec<(String, u64)> = vips().iter().map(|v| (v.to_string(), 1)).collect();
        assert_eq!(per_vip, want, "{entry}");
    }
    assert_eq!(
        metric(
            &lab.server,
            "vip_steer_target_up{range=\"web\",match=\"tcp/80\",to=\"127.0.0.1:8080\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &lab.server,
            "vip_steered_packets_total{range=\"web\",match=\"tcp/80\",to=\"127.0.0.1:8080\",vip=\"192.0.2.3\"}"
        ),
        Some(1.0)
    );

    // The service restarts: a new listener on the same address is picked up.
    drop(held);
    drop(tcp);
    let tcp = tcp_listener(&lab.server, STEERED_TCP);
    let restarted = Instant::now();
    wait::until(
        "the restarted listener steered to",
        Duration::from_secs(5),
        || {
            let Ok(_stream) = connect(&lab.client, SocketAddr::new(vips()[0], 80)) else {
                return false;
            };
            accept_one(&tcp) == Some(SocketAddr::new(vips()[0], 80))
        },
    );
    assert!(restarted.elapsed() < Duration::from_secs(5));

    // The UDP service stops: its target goes down, and the datagrams still
    // accepted by XDP no longer reach a socket, which the delivered count shows.
    drop(udp);
    wait::until("vip_steer_target_up 0", Duration::from_secs(5), || {
        metric(
            &lab.server,
            "vip_steer_target_up{range=\"web\",match=\"udp/5353\",to=\"127.0.0.1:5353\"}",
        ) == Some(0.0)
    });
    let (accepted, delivered) = range_counts(&instance.stats_json(&lab.server));
    for vip in vips() {
        client_udp.send_to(b"lost", (vip, 5353)).unwrap();
    }
    wait::until("5 more accepted", Duration::from_secs(2), || {
        range_counts(&instance.stats_json(&lab.server)).0 >= accepted + 5
    });
    let (accepted_after, delivered_after) = range_counts(&instance.stats_json(&lab.server));
    assert_eq!(accepted_after, accepted + 5);
    assert_eq!(
        delivered_after, delivered,
        "nothing delivered while the target is down"
    );
    let log = daemon.stop();
    assert!(
        log.contains("steer web udp/5353 -> 127.0.0.1:5353: down"),
        "{log}"
    );
}

/// IPv6: a range of 2001:db8:1::/64 steered to sockets on ::1, through a router.
#[test]
fn ipv6_vips_are_steered_to_sockets_on_the_loopback() {
    if !require_root("ipv6_vips_are_steered_to_sockets_on_the_loopback") {
        return;
    }
    let lab = SeedLab::new("steer6");
    lab.router.sysctl("net.ipv6.conf.all.forwarding", "1");
    lab.router
        .ip(&["-6", "route", "add", "2001:db8:1::/64", "via", SERVER_V6]);
    let tcp = tcp_listener(&lab.server, "[::1]:8080");
    let udp = udp_socket(&lab.server, "[::1]:5353");
    let config = format!(
        "interfaces = [\"{SERVER_IF}\"]\n\
         [[range]]\nname = \"web6\"\ncidr = \"2001:db8:1::/64\"\naccept = \"route\"\n\
         steer = [{{ match = \"tcp/80\", to = \"[::1]:8080\" }}, {{ match = \"udp/5353\", to = \"[::1]:5353\" }}]\n"
    );
    let instance = Instance::new("steer6");
    let daemon = Daemon::start(&lab.server, &config, &instance);
    wait::until("both targets up", Duration::from_secs(5), || {
        targets_up(&instance) == [("tcp/80".to_string(), true), ("udp/5353".to_string(), true)]
    });
    let client_udp = lab
        .client
        .run_in(|| UdpSocket::bind("[::]:0").expect("client UDP"));
    let mut held = Vec::new();
    for i in 1..=3 {
        let vip: IpAddr = format!("2001:db8:1::{i}").parse().unwrap();
        held.push(connect(&lab.client, SocketAddr::new(vip, 80)).expect("steered connect"));
        assert_eq!(accept_one(&tcp), Some(SocketAddr::new(vip, 80)));
        client_udp.send_to(b"six", (vip, 5353)).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = udp.recv_from(&mut buf).expect("a steered datagram");
        assert_eq!(&buf[..n], b"six");
    }
    let stats = instance.stats_json(&lab.server);
    let steered: Vec<u64> = stats["steer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(steered, [3, 3], "{stats}");

    // A reload points udp/5353 elsewhere, where nothing is bound: the old socket
    // leaves the steer map and gets nothing more.
    daemon.rewrite_config(&config.replace("[::1]:5353", "[::1]:5354"));
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    wait::until("udp/5353 down", Duration::from_secs(5), || {
        targets_up(&instance)
            == [
                ("tcp/80".to_string(), true),
                ("udp/5353".to_string(), false),
            ]
    });
    let vip: IpAddr = "2001:db8:1::1".parse().unwrap();
    client_udp.send_to(b"stale", (vip, 5353)).unwrap();
    let mut buf = [0u8; 8];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "the socket of the old target got a datagram"
    );
}
