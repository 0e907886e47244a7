//! Restart-safe state: the datapath's maps and links are pinned, so a `vip run`
//! killed with `kill -9`, or stopped with `--keep-datapath`, leaves it attached
//! and counting; the next `vip run` adopts it and replaces its programs in
//! place with its own. A UDP flow to three VIPs runs all
//! through: every datagram is echoed, no counter ever goes backwards, and the
//! final counts equal what was sent. The alias and the AnyIP route stay.

use std::{net::IpAddr, time::Duration};

use aya::maps::{Array, Map, MapData};
use serde_json::Value;
use vip_common::{MAP_SETTINGS, SETTING_LAYOUT_VERSION};
use vip_tests::{
    daemon::{Daemon, Instance},
    flow::{assert_exact, total, Flow, Sampler},
    netns::Netns,
    root::require_root,
    seed::{udp_echoes, DirectLab, Services, DIRECT_SERVER_IF},
};

/// One VIP of the alias range, two of the route range.
const VIPS: [&str; 3] = ["192.0.2.10", "198.51.100.20", "198.51.100.30"];

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"aliased\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n\
         [[range]]\nname = \"routed\"\ncidr = \"198.51.100.0/24\"\naccept = \"route\"\n"
    )
}

fn assert_host_state_in_place(server: &Netns, when: &str) {
    let addrs = server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(
        addrs.contains("inet 192.0.2.0/24"),
        "the alias is gone {when}:\n{addrs}"
    );
    let local = server.ip_output(&["route", "show", "table", "local", "198.51.100.0/24"]);
    assert!(
        local.contains("local 198.51.100.0/24 dev lo"),
        "the AnyIP route is gone {when}:\n{local}"
    );
}

/// The gap between two daemons: the program stays attached and counts.
fn assert_gap_counts(lab: &DirectLab, sampler: &mut Sampler, program: Option<u32>) {
    assert_eq!(
        lab.server.xdp_prog_id(DIRECT_SERVER_IF),
        program,
        "the program stays attached with no daemon"
    );
    assert_host_state_in_place(&lab.server, "with no daemon");
    let before = total(&sampler.sample("as the daemon went"), &VIPS);
    let after = total(
        &sampler.sample_for(Duration::from_millis(600), "with no daemon"),
        &VIPS,
    );
    assert!(
        after > before,
        "nothing counted in the gap: {before} -> {after}"
    );
}

/// A daemon started with `run_args` goes away through `stop` while the flow
/// runs; the datapath counts in the gap; a second daemon adopts it (and
/// replaces the program in place), and the final counts are exact. A plain SIGTERM then cleans up.
fn restart_under_flow(tag: &str, run_args: &[&str], stop: impl FnOnce(Daemon, &Instance)) {
    let lab = DirectLab::new(tag);
    let _services = Services::start(&lab.server);
    let instance = Instance::new(tag);
    let daemon = Daemon::start_with(&lab.server, &config(), &instance, run_args);
    let program = lab.server.xdp_prog_id(DIRECT_SERVER_IF);
    assert!(program.is_some());
    let flow = Flow::start(&lab.client, &VIPS);
    let mut sampler = Sampler::new(&instance, &lab.server);
    sampler.sample_for(Duration::from_millis(500), "before the stop");

    stop(daemon, &instance);
    assert_gap_counts(&lab, &mut sampler, program);

    let restarted = Daemon::start(&lab.server, &config(), &instance);
    assert!(
        restarted.log().contains("adopted the datapath pinned in"),
        "the second daemon adopted:\n{}",
        restarted.log()
    );
    let replaced = lab.server.xdp_prog_id(DIRECT_SERVER_IF);
    assert!(
        replaced.is_some() && replaced != program,
        "the adopting daemon replaced the program in place: {program:?} -> {replaced:?}"
    );
    assert_host_state_in_place(&lab.server, "after the restart");
    let datapath = &instance.stats_json(&lab.server)["datapath"];
    assert_eq!(
        datapath["upgrades"], 0,
        "the same build is no upgrade: {datapath:#}"
    );
    sampler.sample_for(Duration::from_millis(500), "after the restart");

    // The adopted datapath takes reloads like a loaded one.
    restarted.rewrite_config(&format!(
        "{}[[range]]\nname = \"late\"\ncidr = \"203.0.113.0/24\"\naccept = \"route\"\n",
        config()
    ));
    let line = restarted.reload();
    assert!(line.contains("reloaded"), "{line}");
    let late: IpAddr = "203.0.113.5".parse().unwrap();
    assert!(udp_echoes(&lab.client, late, Duration::from_secs(2)));
    let late_packets = sampler
        .sample("after the reload")
        .get("203.0.113.5")
        .copied();
    assert_eq!(late_packets, Some(1), "the new range counts");

    let result = flow.finish();
    // Each datagram was echoed, so its count had landed before the flow ended.
    let last = sampler.sample("at the end");
    assert_exact(&result, &last, &VIPS);

    restarted.stop();
    assert_eq!(
        lab.server.xdp_prog_id(DIRECT_SERVER_IF),
        None,
        "a plain SIGTERM detaches"
    );
    assert!(!instance.pin_dir().exists(), "and removes the pins");
    let addrs = lab.server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(!addrs.contains("192.0.2.0/24"), "and the alias:\n{addrs}");
}

#[test]
fn kill_9_then_restart_adopts_the_datapath_and_loses_no_count() {
    if !require_root("kill_9_then_restart_adopts_the_datapath_and_loses_no_count") {
        return;
    }
    restart_under_flow("kill9", &[], |daemon, _| {
        daemon.kill();
    });
}

#[test]
fn keep_datapath_stop_then_restart_adopts_the_datapath_and_loses_no_count() {
    if !require_root("keep_datapath_stop_then_restart_adopts_the_datapath_and_loses_no_count") {
        return;
    }
    restart_under_flow("keepdp", &["--keep-datapath"], |daemon, instance| {
        let log = daemon.stop();
        assert!(
            log.contains("exiting with the datapath attached"),
            "a --keep-datapath stop says what it left:\n{log}"
        );
        let state = std::fs::read_to_string(instance.state_file()).unwrap();
        let state: Value = serde_json::from_str(&state).unwrap();
        assert_eq!(state["daemon_pid"], Value::Null, "no daemon owns it now");
    });
}

/// Pins of a newer layout version, or of one too old to upgrade, are refused
/// with one line pointing to `vip down`, changing nothing; `vip down` then
/// removes them, which detaches.
#[test]
fn incompatible_pins_are_refused_until_vip_down() {
    if !require_root("incompatible_pins_are_refused_until_vip_down") {
        return;
    }
    let lab = DirectLab::new("incompat");
    let instance = Instance::new("incompat");
    Daemon::start_with(&lab.server, &config(), &instance, &["--keep-datapath"]).stop();
    let program = lab.server.xdp_prog_id(DIRECT_SERVER_IF);
    assert!(program.is_some(), "left attached");

    let settings = MapData::from_pin(instance.pin_dir().join(MAP_SETTINGS))
        .and_then(Map::from_map_data)
        .expect("the pinned settings");
    let mut settings: Array<_, u32> = settings.try_into().unwrap();
    let version = settings.get(&SETTING_LAYOUT_VERSION, 0).unwrap();
    let config_file = vip_tests::daemon::config_file(&config());
    let config_path = config_file.path().to_str().unwrap();
    // A newer layout (a downgrade), then one older than any this vip upgrades.
    for (pinned, refusal) in [
        (
            version + 1,
            format!(
                "was set up by a newer vip (layout version {}, this vip has {version})",
                version + 1
            ),
        ),
        (
            3,
            format!("has layout version 3, this vip has {version}: run `vip down`"),
        ),
    ] {
        settings.set(SETTING_LAYOUT_VERSION, pinned, 0).unwrap();
        let stderr = instance.vip_refused(&lab.server, &["run", "--config", config_path]);
        assert!(stderr.contains(&refusal), "{stderr}");
        assert_eq!(
            lab.server.xdp_prog_id(DIRECT_SERVER_IF),
            program,
            "still attached, the same program"
        );
        assert_host_state_in_place(&lab.server, "after the refusal");
    }

    let down = instance.vip_ok(&lab.server, &["down"]);
    assert!(down.contains("removed pins"), "{down}");
    assert_eq!(lab.server.xdp_prog_id(DIRECT_SERVER_IF), None, "detached");
    assert!(!instance.pin_dir().exists());
    let addrs = lab.server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(!addrs.contains("192.0.2.0/24"), "reverted:\n{addrs}");
}

/// `vip down` on a daemon running with `--keep-datapath`: the daemon leaves the
/// datapath, and `vip down` removes it all the same.
#[test]
fn vip_down_removes_what_a_keep_datapath_daemon_leaves() {
    if !require_root("vip_down_removes_what_a_keep_datapath_daemon_leaves") {
        return;
    }
    let lab = DirectLab::new("keepdown");
    let instance = Instance::new("keepdown");
    let daemon = Daemon::start_with(&lab.server, &config(), &instance, &["--keep-datapath"]);
    assert!(lab.server.has_xdp(DIRECT_SERVER_IF));
    let down = instance.vip_ok(&lab.server, &["down"]);
    assert!(
        down.contains("stopped and left its datapath (--keep-datapath): removing it")
            && down.contains("removed pins"),
        "{down}"
    );
    daemon.wait_exit();
    assert!(!lab.server.has_xdp(DIRECT_SERVER_IF), "detached");
    assert!(!instance.pin_dir().exists(), "pins removed");
    assert!(!instance.state_file().exists(), "state reverted");
    let addrs = lab.server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(!addrs.contains("192.0.2.0/24"), "alias removed:\n{addrs}");
    assert_eq!(
        instance.vip_ok(&lab.server, &["down"]).lines().count(),
        1,
        "then nothing to do"
    );
}

/// A restart that adopts with a config without the routed range: the range's
/// AnyIP route goes with it (a reload removes it the same way), and its
/// VIPs are no VIPs; the aliased range keeps its alias and counts.
#[test]
fn a_restart_without_a_range_removes_its_host_state() {
    if !require_root("a_restart_without_a_range_removes_its_host_state") {
        return;
    }
    let lab = DirectLab::new("rsdrop");
    let _services = Services::start(&lab.server);
    let instance = Instance::new("rsdrop");
    let daemon = Daemon::start_with(&lab.server, &config(), &instance, &["--keep-datapath"]);
    daemon.stop();
    let aliased_only = format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"aliased\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n"
    );
    let restarted = Daemon::start(&lab.server, &aliased_only, &instance);
    let local = lab
        .server
        .ip_output(&["route", "show", "table", "local", "198.51.100.0/24"]);
    assert!(
        !local.contains("198.51.100.0/24"),
        "the dropped range's AnyIP route stays:\n{local}\n{}",
        restarted.log()
    );
    let addrs = lab.server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(
        addrs.contains("inet 192.0.2.0/24"),
        "the alias went:\n{addrs}"
    );
    let state = std::fs::read_to_string(instance.state_file()).unwrap();
    assert!(
        !state.contains("198.51.100.0/24"),
        "the state file still owns the route:\n{state}"
    );
    let aliased: IpAddr = VIPS[0].parse().unwrap();
    let routed: IpAddr = VIPS[1].parse().unwrap();
    assert!(udp_echoes(&lab.client, aliased, Duration::from_secs(2)));
    assert!(!udp_echoes(&lab.client, routed, Duration::from_millis(500)));
    let stats = restarted.stats_json();
    let ranges = stats["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{stats:#}");
    restarted.stop();
    assert!(!instance.state_file().exists(), "state reverted");
    let addrs = lab.server.ip_output(&["addr", "show", "dev", "lo"]);
    assert!(!addrs.contains("192.0.2.0/24"), "alias removed:\n{addrs}");
}
