//! Moves of the maps that did not finish. A reload killed (`VIP_FAULT_AT`)
//! after it changed the maps but before it saved the new layout: range B
//! removed from the datapath, `layout.json` still holding it,
//! `layout-pending.json` the reload's layout. The next start must get the
//! datapath to its config, whichever that is: the reload's (B stays gone) or
//! the one before (B back, counted and judged by its list). And a reload
//! whose map writes failed (`VIP_FAULT_FAIL`) while the daemon runs on, or a
//! start killed after its own writes, both having added B: with the config
//! back to the one before, B must be gone (its frames pass as non-VIP, none
//! is dropped by its list).
//!
//! The test thread is pinned to CPU 0, and so the threads that send its frames.

use std::net::IpAddr;

use serde_json::Value;
use vip_tests::{
    daemon::{number, Daemon, Instance},
    fixture,
    netns::Lab,
    root::require_root,
};

/// Reached once the reload has retired B's allow list, after every other map
/// write of the datapath's update.
const STEP: &str = "reload-list-retired";
const A: [&str; 2] = ["192.0.2.10", "192.0.2.11"];
const B: [&str; 2] = ["198.51.100.20", "198.51.100.21"];

fn config(with_b: bool) -> String {
    let mut config = format!(
        "interfaces = [\"{}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"a\"\ncidr = \"192.0.2.0/24\"\n",
        Lab::SERVER_IF
    );
    if with_b {
        config.push_str(
            "[[range]]\nname = \"b\"\ncidr = \"198.51.100.0/24\"\nallow = [\"udp/53\"]\n",
        );
    }
    config
}

fn send(lab: &Lab, vips: &[&str]) -> u64 {
    send_to(lab, vips, 53)
}

fn send_to(lab: &Lab, vips: &[&str], port: u16) -> u64 {
    let vips: Vec<IpAddr> = vips.iter().map(|v| v.parse().unwrap()).collect();
    lab.send_udp(&vips, port, |_| 1)
}

/// Accepted and dropped packets of the range named `name`, if the report
/// has it.
fn range_counts(stats: &Value, name: &str) -> Option<(u64, u64)> {
    stats["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| (number(r, "packets"), number(r, "dropped_packets")))
}

/// The daemon started with A and B, then killed by a reload to A alone at
/// `STEP`. Returns the frames sent so far (one to each VIP of A and B).
fn crash_during_reload(lab: &Lab, instance: &Instance) -> u64 {
    let wrapper = ["env".to_string(), format!("VIP_FAULT_AT={STEP}")];
    let daemon = Daemon::try_start(&lab.server, &config(true), instance, &[], &wrapper)
        .unwrap_or_else(|log| panic!("vip run did not get ready:\n{log}"));
    let sent = send(lab, &A) + send(lab, &B);
    daemon.stats_once_counted(sent);
    daemon.rewrite_config(&config(false));
    instance.reload_killing_the_daemon(&lab.server);
    let log = daemon.wait_exit();
    assert!(log.contains(&format!("VIP_FAULT_AT={STEP}")), "{log}");
    sent
}

#[test]
fn a_start_after_a_crashed_reload_completes_it() {
    if !require_root("a_start_after_a_crashed_reload_completes_it") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("rcdone");
    let instance = Instance::new("rcdone");
    let sent = crash_during_reload(&lab, &instance);
    let daemon = Daemon::start(&lab.server, &config(false), &instance);
    // B's frames before the crash went with B.
    let counted = sent - B.len() as u64 + send(&lab, &A) + send(&lab, &B);
    let stats = daemon.stats_once_counted(counted);
    assert_eq!(range_counts(&stats, "a"), Some((4, 0)), "{stats:#}");
    assert_eq!(range_counts(&stats, "b"), None, "{stats:#}");
    assert_eq!(number(&stats["global"], "non_vip_packets"), 2, "{stats:#}");
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

#[test]
fn a_start_after_a_crashed_reload_with_the_config_before_it_undoes_it() {
    if !require_root("a_start_after_a_crashed_reload_with_the_config_before_it_undoes_it") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("rcundo");
    let instance = Instance::new("rcundo");
    let sent = crash_during_reload(&lab, &instance);
    let daemon = Daemon::start(&lab.server, &config(true), &instance);
    // B comes back as a new range, with new counters, as a reload to the
    // config without it and back again would give.
    let counted = sent - B.len() as u64 + send(&lab, &A) + send(&lab, &B);
    let stats = daemon.stats_once_counted(counted);
    assert_eq!(range_counts(&stats, "a"), Some((4, 0)), "{stats:#}");
    assert_eq!(range_counts(&stats, "b"), Some((2, 0)), "{stats:#}");
    assert_eq!(number(&stats["global"], "non_vip_packets"), 0, "{stats:#}");
    // And judged by its list: port 54 is not in it.
    let stats = daemon.stats_once_counted(counted + send_to(&lab, &B, 54));
    assert_eq!(range_counts(&stats, "b"), Some((2, 2)), "{stats:#}");
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

/// With the config back to A alone: A's frames counted, B's (to a port its
/// list denies) passed as non-VIP, nothing dropped. A range left in the
/// datapath is in the report, which reads the datapath's own range maps.
fn assert_b_is_gone(lab: &Lab, stats: impl Fn(u64) -> Value) {
    let sent = send(lab, &A) + send_to(lab, &B, 54);
    let stats = stats(sent);
    let ranges = stats["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{stats:#}");
    assert_eq!(range_counts(&stats, "a"), Some((2, 0)), "{stats:#}");
    assert_eq!(
        number(&stats["global"], "non_vip_packets"),
        B.len() as u64,
        "{stats:#}"
    );
}

#[test]
fn a_reload_after_one_whose_writes_failed_finishes_its_moves() {
    if !require_root("a_reload_after_one_whose_writes_failed_finishes_its_moves") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("rcfail");
    let instance = Instance::new("rcfail");
    let wrapper = [
        "env".to_string(),
        "VIP_FAULT_FAIL=sync-indexes-written".to_string(),
    ];
    let daemon = Daemon::try_start(&lab.server, &config(false), &instance, &[], &wrapper)
        .unwrap_or_else(|log| panic!("vip run did not get ready:\n{log}"));
    daemon.rewrite_config(&config(true));
    let line = daemon.reload();
    assert!(line.contains("failed half-way"), "{line}");
    let pending = instance.run_dir().join("layout-pending.json");
    assert!(pending.exists(), "no pending layout after a failed move");

    daemon.rewrite_config(&config(false));
    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    assert_b_is_gone(&lab, |n| daemon.stats_once_counted(n));
    assert!(
        !pending.exists(),
        "the finished move left its pending layout"
    );
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

/// A reload that fails after its maps moved all the way (the host state's
/// step, `VIP_FAULT_FAIL=reload-moved`) says "failed half-way", not
/// "refused, still running the previous config"; the next reload finishes.
#[test]
fn a_reload_that_failed_after_its_move_says_so() {
    if !require_root("a_reload_that_failed_after_its_move_says_so") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("rcmoved");
    let instance = Instance::new("rcmoved");
    let wrapper = ["env".to_string(), "VIP_FAULT_FAIL=reload-moved".to_string()];
    let daemon = Daemon::try_start(&lab.server, &config(false), &instance, &[], &wrapper)
        .unwrap_or_else(|log| panic!("vip run did not get ready:\n{log}"));
    daemon.rewrite_config(&config(true));
    let line = daemon.reload();
    assert!(
        line.contains("failed half-way") && line.contains("reload-moved"),
        "{line}"
    );

    let line = daemon.reload();
    assert!(line.contains("reloaded"), "{line}");
    let sent = send(&lab, &B) + send_to(&lab, &B, 54);
    let stats = daemon.stats_once_counted(sent);
    assert_eq!(range_counts(&stats, "b"), Some((2, 2)), "{stats:#}");
    daemon.stop();
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}

#[test]
fn a_start_after_one_killed_during_its_writes_finishes_its_moves() {
    if !require_root("a_start_after_one_killed_during_its_writes_finishes_its_moves") {
        return;
    }
    fixture::pin_to_cpu0();
    let lab = Lab::new("rcstart");
    let instance = Instance::new("rcstart");
    Daemon::start(&lab.server, &config(false), &instance).kill();
    // Adopts the pinned datapath, writes B, replaces the programs, dies.
    let wrapper = [
        "env".to_string(),
        "VIP_FAULT_AT=upgrade-replaced".to_string(),
    ];
    let Err(log) = Daemon::try_start(&lab.server, &config(true), &instance, &[], &wrapper) else {
        panic!("vip run did not die at upgrade-replaced");
    };
    assert!(log.contains("VIP_FAULT_AT=upgrade-replaced"), "{log}");

    let daemon = Daemon::start(&lab.server, &config(false), &instance);
    assert_b_is_gone(&lab, |n| daemon.stats_once_counted(n));
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
}
