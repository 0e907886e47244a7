//! Reloading a running `vip run`: an allow list changes, then ranges come and
//! go, through map updates only. Traffic to unchanged VIPs flows all along and
//! their counters never go backwards; a bad config is refused with nothing changed.

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::Value;
use vip_tests::{
    daemon::{Daemon, Instance},
    root::require_root,
    seed::{udp_echoes, DirectLab, Services, DIRECT_SERVER_IF, UDP_PORT},
};

const STEADY_VIP: &str = "192.0.2.10";

fn config(web_allow: &str, extra_range: (&str, &str)) -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\nallow = [{web_allow}]\n\
         [[range]]\nname = \"{}\"\ncidr = \"{}\"\naccept = \"route\"\n",
        extra_range.0, extra_range.1
    )
}

/// (packets, dropped_packets) of every listed VIP, and of every range, by name.
fn counters(stats: &Value) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for range in stats["ranges"].as_array().unwrap() {
        let name = range["name"].as_str().unwrap();
        out.push((
            name.to_string(),
            range["packets"].as_u64().unwrap(),
            range["dropped_packets"].as_u64().unwrap(),
        ));
        for vip in range["vips"].as_array().unwrap() {
            let addr = vip["addr"].as_str().unwrap();
            out.push((
                addr.to_string(),
                vip["packets"].as_u64().unwrap(),
                vip["dropped_packets"].as_u64().unwrap(),
            ));
        }
    }
    out
}

fn assert_not_backwards(
    before: &[(String, u64, u64)],
    after: &[(String, u64, u64)],
    keep: &[&str],
) {
    for (key, packets, dropped) in before
        .iter()
        .filter(|(k, _, _)| keep.iter().any(|p| k.starts_with(p)))
    {
        let (_, now_packets, now_dropped) = after
            .iter()
            .find(|(k, _, _)| k == key)
            .unwrap_or_else(|| panic!("{key} vanished after the reload"));
        assert!(
            now_packets >= packets && now_dropped >= dropped,
            "{key} went backwards: {packets}/{dropped} -> {now_packets}/{now_dropped}"
        );
    }
}

/// A TCP connect to a port with no listener: refused (a RST came back) or timed
/// out (dropped on the way).
fn tcp_answer(lab: &DirectLab, vip: &str, port: u16) -> ErrorKind {
    let addr = SocketAddr::new(vip.parse().unwrap(), port);
    lab.client.run_in(move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300))
            .expect_err("nothing listens there")
            .kind()
    })
}

#[test]
fn reload_changes_allow_lists_and_ranges_without_a_blip() {
    if !require_root("reload_changes_allow_lists_and_ranges_without_a_blip") {
        return;
    }
    let lab = DirectLab::new("reload");
    let _services = Services::start(&lab.server);
    let instance = Instance::new("reload");
    let first = config(&format!("\"udp/{UDP_PORT}\""), ("old", "203.0.113.0/24"));
    let daemon = Daemon::start(&lab.server, &first, &instance);

    // A steady flow to one VIP of the range that stays, all through the reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flow = {
        let (stop, sent, lost) = (stop.clone(), sent.clone(), lost.clone());
        lab.client.spawn_in(move || {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let vip: IpAddr = STEADY_VIP.parse().unwrap();
            let mut buf = [0u8; 16];
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                socket.send_to(b"steady", (vip, UDP_PORT)).unwrap();
                if !matches!(socket.recv_from(&mut buf), Ok((6, _))) {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    assert!(
        udp_echoes(
            &lab.client,
            "203.0.113.5".parse().unwrap(),
            Duration::from_secs(2)
        ),
        "old range served"
    );
    assert_eq!(
        tcp_answer(&lab, "192.0.2.20", 9090),
        ErrorKind::TimedOut,
        "tcp/9090 denied at first"
    );
    let before = counters(&daemon.stats_json());
    let program = lab.server.xdp_prog_id(DIRECT_SERVER_IF);
    assert!(program.is_some(), "vip_xdp attached");

    // 1. The allow list gains tcp/9090: a connect there is now answered (RST).
    daemon.rewrite_config(&config(
        &format!("\"udp/{UDP_PORT}\", \"tcp/9090\""),
        ("old", "203.0.113.0/24"),
    ));
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    assert_eq!(
        tcp_answer(&lab, "192.0.2.20", 9090),
        ErrorKind::ConnectionRefused,
        "tcp/9090 allowed now"
    );
    let after_policy = counters(&daemon.stats_json());
    assert_not_backwards(
        &before,
        &after_policy,
        &["web", "192.0.2.", "old", "203.0.113."],
    );

    // 2. Ranges: "old" goes, "api" comes.
    daemon.rewrite_config(&config(
        &format!("\"udp/{UDP_PORT}\", \"tcp/9090\""),
        ("api", "198.51.100.0/24"),
    ));
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    assert!(
        udp_echoes(
            &lab.client,
            "198.51.100.5".parse().unwrap(),
            Duration::from_secs(2)
        ),
        "new range served"
    );
    assert!(
        !udp_echoes(
            &lab.client,
            "203.0.113.5".parse().unwrap(),
            Duration::from_millis(300)
        ),
        "removed range no longer local"
    );
    let local = lab.server.ip_output(&["route", "show", "table", "local"]);
    assert!(
        local.contains("198.51.100.0/24") && !local.contains("203.0.113.0/24"),
        "{local}"
    );
    let stats = daemon.stats_json();
    let after_ranges = counters(&stats);
    assert_not_backwards(&after_policy, &after_ranges, &["web", "192.0.2."]);
    let names: Vec<&str> = stats["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "api"]);
    let api = &stats["ranges"][1];
    assert_eq!(api["vips"][0]["addr"], "198.51.100.5");
    assert_eq!(api["vips"][0]["packets"], 1);

    // 3. A config that does not validate is refused; the running state stays.
    daemon.rewrite_config(
        "interfaces = [\"ps0\"]\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.1/24\"\n",
    );
    let line = daemon.reload();
    assert!(
        line.contains("refused") && line.contains("host bits set"),
        "{line}"
    );
    // `vip reload` says so itself, as the operator's error.
    let said = instance.vip_refused(&lab.server, &["reload"]);
    assert!(
        said.contains("refused, still running the previous config")
            && said.contains("host bits set"),
        "{said}"
    );
    assert!(
        udp_echoes(
            &lab.client,
            "198.51.100.6".parse().unwrap(),
            Duration::from_secs(2)
        ),
        "still served"
    );

    assert_eq!(
        lab.server.xdp_prog_id(DIRECT_SERVER_IF),
        program,
        "the same program stayed attached through every reload"
    );

    stop.store(true, Ordering::Relaxed);
    flow.join().unwrap();
    let (sent, lost) = (sent.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    assert!(sent > 20, "the flow ran: {sent} echoes");
    assert_eq!(
        lost, 0,
        "{lost} of {sent} echoes to {STEADY_VIP} lost across the reloads"
    );
    let packets = |snapshot: &[(String, u64, u64)]| {
        snapshot
            .iter()
            .find(|(k, _, _)| k == STEADY_VIP)
            .map_or(0, |(_, p, _)| *p)
    };
    assert!(
        packets(&after_ranges) > packets(&before),
        "the steady VIP kept being counted"
    );
    daemon.stop();
}
