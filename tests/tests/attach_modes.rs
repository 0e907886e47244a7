//! `xdp_mode`: auto falls back to generic with a warning where native XDP is not
//! supported (the loopback device), native alone fails cleanly there.

use vip_tests::{
    daemon::{config_file, Daemon, Instance},
    netns::Netns,
    root::require_root,
};

fn config(mode: &str) -> String {
    format!("interfaces = [\"lo\"]\nxdp_mode = \"{mode}\"\n[[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\n")
}

#[test]
fn auto_falls_back_to_generic_and_says_so() {
    if !require_root("auto_falls_back_to_generic_and_says_so") {
        return;
    }
    let ns = Netns::new("auto");
    let instance = Instance::new("auto");
    let daemon = Daemon::start(&ns, &config("auto"), &instance);
    let stats = daemon.stats_json();
    assert_eq!(
        stats["attachments"],
        serde_json::json!([{"interface": "lo", "mode": "generic", "fallback": true}])
    );
    assert!(ns.has_xdp("lo"));
    let log = daemon.stop();
    assert!(
        log.contains("WARN") && log.contains("attaching to lo in native mode: "),
        "{log}"
    );
    assert!(
        log.contains("lo: attached in generic mode (fallback"),
        "{log}"
    );
    assert!(!ns.has_xdp("lo"), "detached");
}

#[test]
fn native_only_fails_without_changing_anything() {
    if !require_root("native_only_fails_without_changing_anything") {
        return;
    }
    let ns = Netns::new("native");
    let config = config_file(&config("native"));
    let instance = Instance::new("native");
    let out = instance.vip(&ns, &["run", "--config", config.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a host failure, not a config error: {stderr}"
    );
    assert!(
        stderr.contains("vip: error: attaching to lo in native mode"),
        "{stderr}"
    );
    assert!(!ns.has_xdp("lo"));
    assert!(!instance.pin_dir().exists(), "pins cleaned up");
    assert!(!instance.state_file().exists(), "state cleaned up");
}
