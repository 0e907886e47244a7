//! Restart-safe state: the datapath's maps and links are pinned, so a `vip run`
//! killed with `kill -9`, or stopped with `--keep-datapath`, leaves it attached
//! and counting; the next `vip run` adopts it. A UDP flow to three VIPs runs all
//! through: every datagram is echoed, no counter ever goes backwards, and the
//! final counts equal what was sent. The alias and the AnyIP route stay.

use std::{
    collections::BTreeMap,
    net::{IpAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData};
use serde_json::Value;
use vip_common::{MAP_SETTINGS, SETTING_LAYOUT_VERSION};
use vip_tests::{
    daemon::{Daemon, Instance},
    netns::Netns,
    root::require_root,
    seed::{udp_echoes, DirectLab, Services, DIRECT_SERVER_IF, UDP_PORT},
};

/// One VIP of the alias range, two of the route range.
const VIPS: [&str; 3] = ["192.0.2.10", "198.51.100.20", "198.51.100.30"];
/// Bounds of the flow, whatever the test does meanwhile.
const MAX_DATAGRAMS: u64 = 20_000;
const MAX_FLOW_TIME: Duration = Duration::from_secs(60);

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [[range]]\nname = \"aliased\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n\
         [[range]]\nname = \"routed\"\ncidr = \"198.51.100.0/24\"\naccept = \"route\"\n"
    )
}

/// What the flow did: datagrams sent per VIP, and how many came back unechoed.
struct FlowResult {
    sent: BTreeMap<String, u64>,
    lost: u64,
}

/// UDP datagrams to the VIPs in turn, each waiting for its echo, until told to
/// stop (or a bound is hit).
struct Flow {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<FlowResult>,
}

impl Flow {
    fn start(client: &Netns) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            client.spawn_in(move || {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let started = Instant::now();
                let mut result = FlowResult {
                    sent: BTreeMap::new(),
                    lost: 0,
                };
                let mut buf = [0u8; 64];
                for n in 0..MAX_DATAGRAMS {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_FLOW_TIME {
                        break;
                    }
                    let vip = VIPS[n as usize % VIPS.len()];
                    let addr: IpAddr = vip.parse().unwrap();
                    let payload = n.to_be_bytes();
                    socket.send_to(&payload, (addr, UDP_PORT)).unwrap();
                    *result.sent.entry(vip.to_string()).or_default() += 1;
                    // An echo of an earlier datagram would be a late one: skip it.
                    let echoed = loop {
                        match socket.recv_from(&mut buf) {
                            Ok((8, _)) if buf[..8] == payload => break true,
                            Ok(_) => continue,
                            Err(_) => break false,
                        }
                    };
                    if !echoed {
                        result.lost += 1;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                result
            })
        };
        Flow { stop, thread }
    }

    fn finish(self) -> FlowResult {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the flow thread")
    }
}

/// Packets per listed VIP in `vip stats --json`.
fn vip_packets(stats: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for range in stats["ranges"].as_array().expect("ranges") {
        for vip in range["vips"].as_array().expect("vips") {
            out.insert(
                vip["addr"].as_str().unwrap().to_string(),
                vip["packets"].as_u64().unwrap(),
            );
        }
    }
    out
}

/// Samples `vip stats --json` while the flow runs; every sample must read, and
/// no VIP's count may be lower than in the sample before.
struct Sampler<'a> {
    instance: &'a Instance,
    ns: &'a Netns,
    last: BTreeMap<String, u64>,
    samples: usize,
}

impl Sampler<'_> {
    fn sample(&mut self, when: &str) -> BTreeMap<String, u64> {
        let now = vip_packets(&self.instance.stats_json(self.ns));
        for (vip, before) in &self.last {
            let after = now.get(vip).copied().unwrap_or(0);
            assert!(
                after >= *before,
                "{vip} went backwards {when}: {before} -> {after}"
            );
        }
        self.last = now.clone();
        self.samples += 1;
        now
    }

    /// Samples for `duration`; returns the last sample.
    fn sample_for(&mut self, duration: Duration, when: &str) -> BTreeMap<String, u64> {
        let end = Instant::now() + duration;
        let mut last = self.sample(when);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            last = self.sample(when);
        }
        last
    }
}

fn total(packets: &BTreeMap<String, u64>) -> u64 {
    VIPS.iter()
        .map(|v| packets.get(*v).copied().unwrap_or(0))
        .sum()
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
    let before = total(&sampler.sample("as the daemon went"));
    let after = total(&sampler.sample_for(Duration::from_millis(600), "with no daemon"));
    assert!(
        after > before,
        "nothing counted in the gap: {before} -> {after}"
    );
}

/// A daemon started with `run_args` goes away through `stop` while the flow
/// runs; the datapath counts in the gap; a second daemon adopts it (same
/// program), and the final counts are exact. A plain SIGTERM then cleans up.
fn restart_under_flow(tag: &str, run_args: &[&str], stop: impl FnOnce(Daemon, &Instance)) {
    let lab = DirectLab::new(tag);
    let _services = Services::start(&lab.server);
    let instance = Instance::new(tag);
    let daemon = Daemon::start_with(&lab.server, &config(), &instance, run_args);
    let program = lab.server.xdp_prog_id(DIRECT_SERVER_IF);
    assert!(program.is_some());
    let flow = Flow::start(&lab.client);
    let mut sampler = Sampler {
        instance: &instance,
        ns: &lab.server,
        last: BTreeMap::new(),
        samples: 0,
    };
    sampler.sample_for(Duration::from_millis(500), "before the stop");

    stop(daemon, &instance);
    assert_gap_counts(&lab, &mut sampler, program);

    let restarted = Daemon::start(&lab.server, &config(), &instance);
    assert!(
        restarted.log().contains("adopted the datapath pinned in"),
        "the second daemon adopted:\n{}",
        restarted.log()
    );
    assert_eq!(lab.server.xdp_prog_id(DIRECT_SERVER_IF), program);
    assert_host_state_in_place(&lab.server, "after the restart");
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
    assert_eq!(result.lost, 0, "datagrams without an echo");
    let counted: BTreeMap<String, u64> = VIPS
        .iter()
        .map(|v| (v.to_string(), last.get(*v).copied().unwrap_or(0)))
        .collect();
    assert_eq!(counted, result.sent, "counted == sent, per VIP");
    assert!(sampler.samples > 20, "only {} samples", sampler.samples);

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

/// Pins of another layout version are refused with a pointer to `vip down`,
/// changing nothing; `vip down` then removes them, which detaches.
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
    settings
        .set(SETTING_LAYOUT_VERSION, version + 1, 0)
        .unwrap();
    let config_file = vip_tests::daemon::config_file(&config());
    let config_path = config_file.path().to_str().unwrap();
    let out = instance.vip(&lab.server, &["run", "--config", config_path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a user error:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "has layout version {}, this vip has {version}: run `vip down`",
            version + 1
        )),
        "{stderr}"
    );
    assert_eq!(
        lab.server.xdp_prog_id(DIRECT_SERVER_IF),
        program,
        "still attached"
    );
    assert_host_state_in_place(&lab.server, "after the refusal");

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
