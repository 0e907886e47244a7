//! A reload killed (`VIP_FAULT_AT`) after it changed the maps but before it
//! saved the new layout: range B removed from the datapath, `layout.json`
//! still holding it, `layout-pending.json` the reload's layout. The next start
//! must get the datapath to its config, whichever that is: the reload's (B
//! stays gone) or the one before (B back, counted and judged by its list).
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
    let vips: Vec<IpAddr> = vips.iter().map(|v| v.parse().unwrap()).collect();
    lab.send_udp(&vips, 53, |_| 1)
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
    instance.vip_ok(&lab.server, &["reload"]);
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
    let b: Vec<IpAddr> = B.iter().map(|v| v.parse().unwrap()).collect();
    let stats = daemon.stats_once_counted(counted + lab.send_udp(&b, 54, |_| 1));
    assert_eq!(range_counts(&stats, "b"), Some((2, 2)), "{stats:#}");
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
}
