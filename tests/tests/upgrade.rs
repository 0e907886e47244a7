//! Upgrades in place: a `vip run` of this tree, started on the datapath an
//! older vip (a fixed earlier commit, built by `cargo xtask test`) left pinned
//! with `--keep-datapath`, loads its own programs onto the live maps and
//! replaces the running ones through their links. Under a steady UDP echo flow
//! to 5 VIPs: no datagram lost, per-VIP counts exact and never going
//! backwards, new program ids, steered TCP working before and after, and the
//! host's addresses, routes and sysctls as they were. Also: the older vip
//! refuses the newer datapath, and a crash at any step of an upgrade loses
//! nothing.

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, Map, MapData},
    programs::links::{FdLink, PinnedLink},
};
use vip_common::{Counter, LAYOUT_VERSION, MAP_DENSE_COUNTS, PINNED_MAPS, SK_LOOKUP_LINK_PIN};
use vip_tests::{
    daemon::{old_vip_bin, vip_bin, Daemon, Instance, OLD_LAYOUT_VERSION},
    flow::{assert_exact, total, Flow, Sampler},
    netns::Netns,
    root::require_root,
    seed::{assert_same_dump, host_dump, DirectLab, Services, DIRECT_SERVER_IF},
};

const VIPS: [&str; 5] = [
    "192.0.2.10",
    "192.0.2.11",
    "198.51.100.20",
    "198.51.100.21",
    "198.51.100.22",
];
const STEER_TARGET: &str = "127.0.0.1:8081";
/// Steered connections go to these, so that the flow's VIPs count only the flow.
const STEERED_VIPS: [&str; 2] = ["192.0.2.50", "192.0.2.51"];
const SYSCTLS: [&str; 4] = [
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
];

fn config(mode: &str) -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\nxdp_mode = \"{mode}\"\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"aliased\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n\
         steer = [{{ match = \"tcp/80\", to = \"{STEER_TARGET}\" }}]\n\
         [[range]]\nname = \"routed\"\ncidr = \"198.51.100.0/24\"\naccept = \"route\"\n"
    )
}

/// The program ids behind the pinned links: the interface's, then sk_lookup's.
fn program_ids(pins: &Path) -> (Option<u32>, Option<u32>) {
    let id = |name: &str| {
        let link = PinnedLink::from_pin(pins.join(name)).ok()?;
        FdLink::from(link).info().ok().map(|info| info.program_id())
    };
    (
        id(&format!("link-{DIRECT_SERVER_IF}")),
        id(SK_LOOKUP_LINK_PIN),
    )
}

/// A connection to port 80 of a VIP lands on the steer target, with the VIP as
/// its local address.
fn assert_steered(client: &Netns, listener: &TcpListener, vip: &str) {
    let to = SocketAddr::new(vip.parse().unwrap(), 80);
    let stream = client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)));
    assert!(stream.is_ok(), "connect to {to}: {stream:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    let local = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream.local_addr().unwrap(),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("nothing steered to {STEER_TARGET}: {e}"),
        }
    };
    assert_eq!(local, to, "steered with the VIP as local address");
}

fn steer_target(server: &Netns) -> TcpListener {
    let listener = server.run_in(|| TcpListener::bind(STEER_TARGET).expect("bind the target"));
    listener.set_nonblocking(true).unwrap();
    listener
}

/// The older vip's datapath, left with `--keep-datapath`; the instance
/// still runs the older vip.
fn older_datapath(server: &Netns, instance: &Instance, mode: &str) {
    instance.use_binary(&old_vip_bin());
    let old = Daemon::start_with(server, &config(mode), instance, &["--keep-datapath"]);
    // The older vip takes SIGTERM over just after it says it is counting (this
    // one before): give it that moment, which a VM without KVM stretches.
    std::thread::sleep(Duration::from_millis(500));
    let log = old.stop();
    assert!(log.contains("exiting with the datapath attached"), "{log}");
}

/// Below TCX (kernel 6.6) a TC program is attached through netlink and cannot
/// outlive its daemon: `--keep-datapath` in TC mode is refused at start, with
/// one line and exit 2, before anything changes.
fn tc_keep_is_refused(tag: &str) {
    let lab = DirectLab::new(tag);
    let instance = Instance::new(tag);
    let host = host_dump(&lab.server, &SYSCTLS);
    let config_file = vip_tests::daemon::config_file(&config("tc"));
    let stderr = instance.vip_refused(
        &lab.server,
        &[
            "run",
            "--keep-datapath",
            "--config",
            config_file.path().to_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains("needs TCX (kernel 6.6 or later)"),
        "{stderr}"
    );
    assert!(!lab.server.has_xdp(DIRECT_SERVER_IF));
    assert_same_dump(
        &host,
        &host_dump(&lab.server, &SYSCTLS),
        "after the refusal",
    );
}

fn upgrade_under_flow(tag: &str, mode: &str) {
    if mode == "tc" && !vip_userspace::host::kernel::has_tcx() {
        return tc_keep_is_refused(tag);
    }
    let lab = DirectLab::new(tag);
    let _services = Services::start(&lab.server);
    let listener = steer_target(&lab.server);
    let instance = Instance::new(tag);
    instance.use_binary(&old_vip_bin());
    let old = Daemon::start_with(&lab.server, &config(mode), &instance, &["--keep-datapath"]);
    let before = program_ids(instance.pin_dir());
    assert!(before.0.is_some() && before.1.is_some(), "{before:?}");
    assert_steered(&lab.client, &listener, STEERED_VIPS[0]);
    let host = host_dump(&lab.server, &SYSCTLS);

    let flow = Flow::start(&lab.client, &VIPS);
    let mut sampler = Sampler::new(&instance, &lab.server);
    sampler.sample_for(Duration::from_millis(500), "before the upgrade");
    let log = old.stop();
    assert!(log.contains("exiting with the datapath attached"), "{log}");
    let gap = total(&sampler.sample("as the older vip went"), &VIPS);

    instance.use_binary(&vip_bin());
    let started = Instant::now();
    let new = Daemon::start_with(&lab.server, &config(mode), &instance, &["--keep-datapath"]);
    let took = started.elapsed();
    assert!(
        new.log().contains("in-place upgrades by another build: 1"),
        "the new vip upgraded in place:\n{}",
        new.log()
    );
    let after = program_ids(instance.pin_dir());
    assert!(
        after.0.is_some() && after.0 != before.0 && after.1.is_some() && after.1 != before.1,
        "new programs behind the same links: {before:?} -> {after:?}"
    );
    let datapath = &instance.stats_json(&lab.server)["datapath"];
    assert_eq!(datapath["layout_version"], LAYOUT_VERSION);
    assert_eq!(datapath["upgrades"], 1);
    assert_ne!(datapath["build"], "unknown");
    let ids: Vec<u64> = datapath["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [u64::from(after.0.unwrap()), u64::from(after.1.unwrap())]
    );
    let resumed = total(
        &sampler.sample_for(Duration::from_millis(500), "after the upgrade"),
        &VIPS,
    );
    assert!(resumed > gap, "counting goes on: {gap} -> {resumed}");
    assert_steered(&lab.client, &listener, STEERED_VIPS[1]);

    let result = flow.finish();
    let last = sampler.sample("at the end");
    assert_exact(&result, &last, &VIPS);
    assert_same_dump(
        &host,
        &host_dump(&lab.server, &SYSCTLS),
        "after the upgrade",
    );
    eprintln!(
        "{tag}: the upgrade took {} ms from start to counting",
        took.as_millis()
    );

    new.stop();
    instance.vip_ok(&lab.server, &["down"]);
}

#[test]
fn an_upgrade_in_native_mode_loses_nothing() {
    if !require_root("an_upgrade_in_native_mode_loses_nothing") {
        return;
    }
    upgrade_under_flow("upnat", "native");
}

#[test]
fn an_upgrade_in_generic_mode_loses_nothing() {
    if !require_root("an_upgrade_in_generic_mode_loses_nothing") {
        return;
    }
    upgrade_under_flow("upgen", "generic");
}

#[test]
fn an_upgrade_in_tc_mode_loses_nothing() {
    if !require_root("an_upgrade_in_tc_mode_loses_nothing") {
        return;
    }
    upgrade_under_flow("uptc", "tc");
}

/// The older vip refuses the upgraded datapath with one line and exit 2, and
/// changes nothing.
#[test]
fn the_older_vip_refuses_a_newer_datapath() {
    if !require_root("the_older_vip_refuses_a_newer_datapath") {
        return;
    }
    let lab = DirectLab::new("downgr");
    let instance = Instance::new("downgr");
    Daemon::start_with(
        &lab.server,
        &config("native"),
        &instance,
        &["--keep-datapath"],
    )
    .stop();
    let ids = program_ids(instance.pin_dir());
    let host = host_dump(&lab.server, &SYSCTLS);
    instance.use_binary(&old_vip_bin());
    let config_file = vip_tests::daemon::config_file(&config("native"));
    let stderr = instance.vip_refused(
        &lab.server,
        &["run", "--config", config_file.path().to_str().unwrap()],
    );
    assert!(
        stderr.contains(&format!(
            "was set up by a newer vip (layout version {LAYOUT_VERSION}, this vip has {OLD_LAYOUT_VERSION})",
        )),
        "{stderr}"
    );
    assert_eq!(
        program_ids(instance.pin_dir()),
        ids,
        "still the same programs"
    );
    assert_same_dump(
        &host,
        &host_dump(&lab.server, &SYSCTLS),
        "after the refusal",
    );
    instance.use_binary(&vip_bin());
    instance.vip_ok(&lab.server, &["down"]);
}

/// Only vip's own pins: no half-migrated or temporary map left pinned.
fn assert_pins_consistent(pins: &Path, step: &str) {
    let names: Vec<String> = std::fs::read_dir(pins)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        assert!(
            PINNED_MAPS.contains(&name.as_str())
                || name == SK_LOOKUP_LINK_PIN
                || name == &format!("link-{DIRECT_SERVER_IF}"),
            "unexpected pin {name} after a crash at {step}: {names:?}"
        );
    }
    assert!(vip_userspace::datapath::pin::is_complete(pins), "{step}");
}

/// Packets in the dense table of layout 14 (`MAP_DENSE_COUNTS`), every slot,
/// CPU and verdict, if an interrupted upgrade has pinned it: what the new
/// programs counted there, which the older vip does not read. Only the flow
/// sends to dense ranges here.
fn new_dense_packets(pins: &Path) -> u64 {
    let Ok(data) = MapData::from_pin(pins.join(MAP_DENSE_COUNTS)) else {
        return 0;
    };
    let table: Array<_, Counter> = Map::Array(data).try_into().unwrap();
    table.iter().map(|counter| counter.unwrap().packets).sum()
}

/// `kill -9` (through `VIP_FAULT_AT`) at each step of an upgrade: the datapath
/// keeps counting (in the older vip's tables, or once a link runs the new
/// programs, in the dense table they count in, pinned at once), the pins stay
/// consistent, and the next start completes the upgrade with every count kept.
#[test]
fn a_crash_at_any_step_of_an_upgrade_loses_nothing() {
    if !require_root("a_crash_at_any_step_of_an_upgrade_loses_nothing") {
        return;
    }
    let lab = DirectLab::new("upcrash");
    let _services = Services::start(&lab.server);
    for step in [
        "upgrade-loaded",
        "upgrade-replaced-first",
        "upgrade-replaced",
        "upgrade-committing",
    ] {
        let instance = Instance::new("upcrash");
        older_datapath(&lab.server, &instance, "native");
        let flow = Flow::start(&lab.client, &VIPS);
        let mut sampler = Sampler::new(&instance, &lab.server);
        sampler.sample_for(Duration::from_millis(300), "before the crash");

        let wrapper = ["env".to_string(), format!("VIP_FAULT_AT={step}")];
        instance.use_binary(&vip_bin());
        let crashed = Daemon::try_start(&lab.server, &config("native"), &instance, &[], &wrapper);
        // Until an upgrade completes the datapath is the older vip's to read.
        instance.use_binary(&old_vip_bin());
        let Err(log) = crashed else {
            panic!("vip run did not stop at {step}")
        };
        assert!(log.contains(&format!("VIP_FAULT_AT={step}")), "{log}");
        assert_pins_consistent(instance.pin_dir(), step);
        let before = total(&sampler.sample("after the crash"), &VIPS)
            + new_dense_packets(instance.pin_dir());
        let after = total(
            &sampler.sample_for(Duration::from_millis(400), "with no daemon"),
            &VIPS,
        ) + new_dense_packets(instance.pin_dir());
        assert!(
            after > before,
            "counting after a crash at {step}: {before} -> {after}"
        );

        instance.use_binary(&vip_bin());
        let daemon = Daemon::start(&lab.server, &config("native"), &instance);
        assert!(
            daemon.log().contains("adopted the datapath"),
            "{}",
            daemon.log()
        );
        let datapath = &instance.stats_json(&lab.server)["datapath"];
        assert_eq!(datapath["layout_version"], LAYOUT_VERSION, "{step}");
        sampler.sample_for(Duration::from_millis(300), "after the second start");
        let result = flow.finish();
        let last = sampler.sample("at the end");
        assert_exact(&result, &last, &VIPS);
        daemon.stop();
    }
}
