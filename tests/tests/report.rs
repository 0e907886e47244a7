//! `vip stats --json` and `/metrics` are one report (`stats::collect`): read from
//! the same pins and run directory once traffic has stopped, every figure the
//! JSON shows (per VIP, per range, global, steer targets and steered lookups,
//! drift repairs, the running build and program ids) appears in /metrics with
//! the same value.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use serde_json::Value;
use vip_tests::{
    daemon::{Daemon, Instance},
    http,
    netns::Netns,
    root::require_root,
    seed::{drift_local_route, DirectLab, DIRECT_SERVER_IF},
    wait,
};

const METRICS: &str = "127.0.0.1:9669";
const STEERED_UDP: &str = "127.0.0.1:5353";

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         allow = [\"udp/5353\", \"udp/7000\"]\n\
         steer = [{{ match = \"udp/5353\", to = \"{STEERED_UDP}\" }}]\n\
         [[range]]\nname = \"other\"\ncidr = \"198.51.100.0/24\"\n"
    )
}

/// `name{labels} value` lines of the classic text format.
fn series(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

fn n(value: &Value) -> f64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}")) as f64
}

fn send(client: &Netns, to: SocketAddr, count: usize) {
    client.run_in(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..count {
            socket.send_to(b"figures", to).unwrap();
        }
    });
}

#[test]
fn metrics_and_stats_json_show_the_same_figures() {
    if !require_root("metrics_and_stats_json_show_the_same_figures") {
        return;
    }
    let lab = DirectLab::new("rep");
    let steered = lab.server.run_in(|| UdpSocket::bind(STEERED_UDP).unwrap());
    let instance = Instance::new("report");
    let daemon = Daemon::start(&lab.server, &config(), &instance);
    wait::until("the steer target up", Duration::from_secs(5), || {
        daemon.stats_json()["steer"][0]["up"] == true
    });
    // Steered, allowed but unanswered, denied, to a count-only range, to no range.
    send(&lab.client, "192.0.2.1:5353".parse().unwrap(), 3);
    send(&lab.client, "192.0.2.2:5353".parse().unwrap(), 2);
    send(&lab.client, "192.0.2.2:7000".parse().unwrap(), 4);
    send(&lab.client, "192.0.2.3:9999".parse().unwrap(), 5);
    send(&lab.client, "198.51.100.9:80".parse().unwrap(), 6);
    send(&lab.client, "203.0.113.1:80".parse().unwrap(), 1);
    let mut buf = [0u8; 16];
    steered
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for _ in 0..5 {
        steered.recv_from(&mut buf).expect("a steered datagram");
    }
    // Drift: the AnyIP route removed from outside, put back by the daemon.
    drift_local_route(&lab.server, "192.0.2.0/24");
    wait::until("the local route repaired", Duration::from_secs(5), || {
        daemon.stats_json()["drift_repairs"]["local_route"] == 1
    });
    let settle = Instant::now() + Duration::from_secs(5);
    let web = loop {
        let stats = daemon.stats_json();
        if stats["ranges"][0]["packets"] == 9 && stats["ranges"][0]["dropped_packets"] == 5 {
            break stats;
        }
        assert!(Instant::now() < settle, "counts not in: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    };

    let stats = daemon.stats_json();
    let (status, body) = http::get(&lab.server, METRICS.parse().unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        stats["ranges"], web["ranges"],
        "counts moved with no traffic"
    );
    let scraped = series(&body);
    let value = |name: &str, pairs: &[(&str, &str)]| {
        let key = format!(
            "{name}{}",
            if pairs.is_empty() {
                String::new()
            } else {
                labels(pairs)
            }
        );
        scraped
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {key} in /metrics:\n{body}"))
    };

    let mut checked = 0;
    for range in stats["ranges"].as_array().unwrap() {
        let name = range["name"].as_str().unwrap();
        for (verdict, packets, bytes) in [
            ("accepted", "packets", "bytes"),
            ("dropped", "dropped_packets", "dropped_bytes"),
        ] {
            let l = [("range", name), ("verdict", verdict)];
            assert_eq!(value("vip_range_packets_total", &l), n(&range[packets]));
            assert_eq!(value("vip_range_bytes_total", &l), n(&range[bytes]));
            for vip in range["vips"].as_array().unwrap() {
                let l = [
                    ("range", name),
                    ("vip", vip["addr"].as_str().unwrap()),
                    ("verdict", verdict),
                ];
                assert_eq!(value("vip_packets_total", &l), n(&vip[packets]));
                assert_eq!(value("vip_bytes_total", &l), n(&vip[bytes]));
                checked += 2;
            }
        }
        assert_eq!(
            value("vip_delivered_packets_total", &[("range", name)]),
            n(&range["delivered_packets"])
        );
        assert_eq!(
            value("vip_sparse_overflow_packets_total", &[("range", name)]),
            n(&range["sparse_overflow_packets"])
        );
    }
    assert_eq!(
        checked, 16,
        "3 VIPs in web and 1 in other, 2 verdicts, packets and bytes: {stats}"
    );
    let global = &stats["global"];
    for (metric, field) in [
        ("vip_non_vip_packets_total", "non_vip_packets"),
        ("vip_malformed_packets_total", "malformed_packets"),
        ("vip_internal_errors_total", "internal_errors"),
        ("vip_fragments_total", "fragments"),
    ] {
        assert_eq!(value(metric, &[]), n(&global[field]), "{metric}");
    }
    let steer = &stats["steer"][0];
    let target = [("range", "web"), ("match", "udp/5353"), ("to", STEERED_UDP)];
    assert_eq!(value("vip_steer_target_up", &target), 1.0);
    let mut steered_sum = 0.0;
    for vip in steer["vips"].as_array().unwrap() {
        let mut l = target.to_vec();
        l.push(("vip", vip["addr"].as_str().unwrap()));
        assert_eq!(value("vip_steered_packets_total", &l), n(&vip["packets"]));
        steered_sum += n(&vip["packets"]);
    }
    assert_eq!(steered_sum, 5.0);
    assert_eq!(n(&steer["packets"]), 5.0);
    assert_eq!(
        value("vip_drift_repairs_total", &[("kind", "local_route")]),
        n(&stats["drift_repairs"]["local_route"])
    );
    assert_eq!(stats["drift_unrepaired"], serde_json::json!([]));
    assert_eq!(value("vip_drift_unrepaired", &[]), 0.0);
    let datapath = &stats["datapath"];
    let build = datapath["build"].as_str().unwrap();
    assert_ne!(build, "unknown", "cargo xtask build records the build");
    assert_eq!(
        value(
            "vip_datapath_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("build", build)]
        ),
        1.0
    );
    let programs = datapath["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 2, "vip_xdp and vip_sk_lookup: {datapath}");
    for program in programs {
        let l = [
            ("program", program["program"].as_str().unwrap()),
            ("attached_to", program["attached_to"].as_str().unwrap()),
        ];
        assert_eq!(value("vip_datapath_program_id", &l), n(&program["id"]));
    }
    daemon.stop();
}
