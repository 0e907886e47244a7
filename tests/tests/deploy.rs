//! The files in deploy/ are what they claim to be: the systemd unit passes
//! `systemd-analyze verify`, the Kubernetes manifest and the Prometheus configs
//! parse and carry what the README says, the alert rules pass their unit
//! tests, the Grafana dashboard is valid JSON with the panels it promises.

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use vip_tests::daemon::vip_bin;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn yaml_documents(file: &str) -> Vec<Value> {
    let text = read(file);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("deploy/{file}: {e}"));
            serde_json::to_value(value).unwrap()
        })
        .collect()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    // verify checks that ExecStart's binary exists, so the unit is verified
    // with the path of the vip just built in place of /usr/bin/vip.
    let unit = read("vip.service");
    assert!(unit.contains("ExecReload=/usr/bin/vip reload\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vip.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/vip", &vip_bin().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (.ci/run installs systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn daemonset_has_host_network_bpffs_configmap_and_scrape_annotation() {
    let docs = yaml_documents("daemonset.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "DaemonSet"]);
    let (config_map, daemonset) = (&docs[1], &docs[2]);
    let pod = &daemonset["spec"]["template"];
    assert_eq!(pod["spec"]["hostNetwork"], true);
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9669");
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    assert_eq!(volume("bpffs")["hostPath"]["path"], "/sys/fs/bpf");
    assert_eq!(
        volume("config")["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["name"] == "bpffs" && m["mountPath"] == "/sys/fs/bpf"));
    // The embedded config is one vip accepts (interfaces are the node's, so
    // only the file itself is validated here).
    let toml = config_map["data"]["vip.toml"].as_str().unwrap();
    let config = vip_userspace::Config::parse(toml, std::path::Path::new("configmap")).unwrap();
    assert_eq!(config.metrics_listen, Some("0.0.0.0:9669".parse().unwrap()));
}

/// `promtool ARGS` in deploy/; panics unless it succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy(""))
        .output()
        .expect("promtool is installed with prometheus");
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_configs_parse() {
    // Also checks the rule files it loads.
    promtool(&["check", "config", "prometheus.yml"]);
    // Debian's promtool is built without Kubernetes discovery: YAML only.
    let kubernetes = &yaml_documents("prometheus-kubernetes.yml")[0];
    assert_eq!(
        kubernetes["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"],
        "pod"
    );
}

/// The alert rules pass promtool's check and their unit tests
/// (vip-alerts.test.yml): each alert fires on the trouble it names, after its
/// `for`, with its labels and annotations, and a healthy fleet raises none.
/// That they read series vip exports is a unit test of the exporter
/// (`metrics::exposition`); that they evaluate cleanly against a real vip,
/// prometheus.rs.
#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "rules", "vip-alerts.yml"]);
    promtool(&["test", "rules", "vip-alerts.test.yml"]);
}

#[test]
fn grafana_dashboard_is_json_with_rate_drop_attach_sparse_table_anycast_and_alert_panels() {
    let dashboard: Value = serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for wanted in [
        "rate(vip_packets_total",
        "vip_range_packets_total{verdict=\"dropped\"",
        "vip_attach_info",
        "vip_sparse_table_fullest_cpu_ratio",
        "vip_sparse_table_fullest_cpu_busy_ratio",
        "rate(vip_sparse_overflow_packets_total",
        "rate(vip_sparse_reclaimed_packets_total",
        "vip_announced",
        "vip_health_up",
        "vip_announce_transitions_total",
        "vip_drift_unrepaired",
        "ALERTS{alertname=~\"Vip.*\", alertstate=\"firing\"}",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(wanted)),
            "no panel queries {wanted}: {exprs:?}"
        );
    }
}
