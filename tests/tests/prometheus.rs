//! A real Prometheus (Debian's package) scrapes `vip run` in a namespace lab while
//! traffic flows; at the end, what Prometheus stored for every VIP equals what
//! `vip stats --json` says. The shipped alert rules evaluate without an error
//! and raise nothing. `promtool check metrics` accepts /metrics, and /healthz
//! says the datapath is attached.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vip_tests::{
    daemon::{Daemon, Instance},
    http,
    netns::Netns,
    root::require_root,
    seed::{udp_echoes, DirectLab, Services, DIRECT_SERVER_IF},
};

const METRICS: &str = "127.0.0.1:9669";
const PROMETHEUS: &str = "127.0.0.1:9090";
const VIPS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "198.51.100.4",
    "198.51.100.5",
];

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         [[range]]\nname = \"api\"\ncidr = \"198.51.100.0/24\"\naccept = \"route\"\nallow = [\"udp/7777\"]\n"
    )
}

/// Prometheus in `ns`, scraping vip every second; killed on drop.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(ns: &Netns) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files: ['{}']\n\
                 scrape_configs:\n  - job_name: vip\n    static_configs:\n      - targets: ['{METRICS}']\n",
                alert_rules().display()
            ),
        )
        .unwrap();
        let child = ns
            .command("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (.ci/run installs Debian's package)");
        Prometheus { child, _dir: dir }
    }

    /// Instant query; the result vector.
    fn query(&self, ns: &Netns, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", http::encode_query(promql));
        let (status, body) = http::get(ns, PROMETHEUS.parse().unwrap(), &path);
        assert_eq!(status, 200, "{promql}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["data"]["result"].as_array().unwrap().clone()
    }
}

/// The alert rules the project ships.
fn alert_rules() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vip-alerts.yml")
}

/// Each alert rule Prometheus loaded: (name, health, state, last evaluation).
fn rules(ns: &Netns) -> Vec<(String, String, String, String)> {
    let (status, body) = http::get(ns, PROMETHEUS.parse().unwrap(), "/api/v1/rules");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                field("name"),
                field("health"),
                field("state"),
                field("lastEvaluation"),
            )
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VIP -> accepted packets, as Prometheus has them.
fn prometheus_counts(prometheus: &Prometheus, ns: &Netns) -> BTreeMap<String, u64> {
    prometheus
        .query(ns, "vip_packets_total{verdict=\"accepted\"}")
        .iter()
        .map(|sample| {
            (
                sample["metric"]["vip"].as_str().unwrap().to_string(),
                sample["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// VIP -> accepted packets, as `vip stats --json` has them.
fn stats_counts(stats: &Value) -> BTreeMap<String, u64> {
    stats["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|range| range["vips"].as_array().unwrap())
        .map(|vip| {
            (
                vip["addr"].as_str().unwrap().to_string(),
                vip["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn prometheus_scrapes_per_vip_counters_that_match_vip_stats() {
    if !require_root("prometheus_scrapes_per_vip_counters_that_match_vip_stats") {
        return;
    }
    let lab = DirectLab::new("prom");
    let _services = Services::start(&lab.server);
    let instance = Instance::new("prom");
    let daemon = Daemon::start(&lab.server, &config(), &instance);
    let metrics: SocketAddr = METRICS.parse().unwrap();

    let (status, health) = http::get(&lab.server, metrics, "/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health,
        format!("ok: attached to {DIRECT_SERVER_IF} (native)\n")
    );

    let prometheus = Prometheus::start(&lab.server);
    // Traffic while Prometheus scrapes: VIP i gets 10 * (i + 1) echoed datagrams.
    let mut sent = BTreeMap::new();
    for round in 0..5 {
        for (i, vip) in VIPS.iter().enumerate() {
            let addr: IpAddr = vip.parse().unwrap();
            for _ in 0..2 * (i + 1) {
                assert!(
                    udp_echoes(&lab.client, addr, Duration::from_secs(2)),
                    "{vip} echoes"
                );
                *sent.entry(vip.to_string()).or_insert(0u64) += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(300 * (round + 1)));
    }
    let stats = daemon.stats_json();
    let expected = stats_counts(&stats);
    assert_eq!(expected, sent, "vip stats counts every datagram once");

    // Prometheus catches up within a few scrapes of the last datagram.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scraped = prometheus_counts(&prometheus, &lab.server);
        if scraped == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {scraped:?}, vip stats {expected:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let ranges = prometheus.query(
        &lab.server,
        "sum by (range) (vip_range_packets_total{verdict=\"accepted\"})",
    );
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    let build = prometheus.query(&lab.server, "vip_build_info");
    assert_eq!(build.len(), 1, "{build:?}");
    let attach = prometheus.query(&lab.server, "vip_attach_info");
    assert_eq!(attach[0]["metric"]["mode"], "native", "{attach:?}");
    assert_eq!(attach[0]["metric"]["fallback"], "false", "{attach:?}");
    // No sparse range here: the table's gauges are there, at 0.
    for gauge in [
        "vip_sparse_table_fullest_cpu_ratio",
        "vip_sparse_table_fullest_cpu_busy_ratio",
    ] {
        let fullest = prometheus.query(&lab.server, gauge);
        assert_eq!(fullest.len(), 1, "{gauge}: {fullest:?}");
        assert_eq!(fullest[0]["value"][1], "0", "{gauge}: {fullest:?}");
    }

    // The shipped alert rules evaluate on vip's real series without an error,
    // and a healthy vip raises none of them (not even pending). Judged on an
    // evaluation that began after Prometheus had the series (the second one
    // from now): one from before would see nothing to raise.
    let shipped = std::fs::read_to_string(alert_rules())
        .unwrap()
        .matches("- alert:")
        .count();
    let evaluations = |ns: &Netns| {
        let loaded = rules(ns);
        assert_eq!(
            loaded.len(),
            shipped,
            "every shipped rule loaded: {loaded:?}"
        );
        loaded
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = evaluations(&lab.server)[0].3.clone();
    let mut moved = 0;
    let loaded = loop {
        let loaded = evaluations(&lab.server);
        if loaded[0].3 != last {
            last = loaded[0].3.clone();
            moved += 1;
        }
        if moved == 2 {
            break loaded;
        }
        assert!(Instant::now() < deadline, "rules not evaluated: {loaded:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for (name, health, state, _) in &loaded {
        assert_eq!(
            (health.as_str(), state.as_str()),
            ("ok", "inactive"),
            "{name}: {loaded:?}"
        );
    }

    // promtool's linter on the exposition itself.
    let (status, text) = http::get(&lab.server, metrics, "/metrics");
    assert_eq!(status, 200);
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed with prometheus");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- /metrics:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.stop();
}
