//! Restarts as shipped never take VIPs down: the daemon runs with the
//! arguments of `deploy/vip.service`'s ExecStart and of the DaemonSet, is
//! stopped with the unit's KillSignal (what `systemctl restart` and a rolling
//! update do), and the host keeps every address, route and sysctl and the
//! datapath keeps counting until the next start adopts it. Only `vip down`
//! takes vip off the host. The unit's reload (`systemctl reload`) fails on
//! a config the daemon refuses.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;
use vip_tests::{
    daemon::{Daemon, Instance},
    flow::{assert_exact, total, Flow, Sampler},
    root::require_root,
    seed::{assert_same_dump, host_dump, DirectLab, Services, DIRECT_SERVER_IF},
};

const VIPS: [&str; 2] = ["192.0.2.10", "198.51.100.20"];
const SYSCTLS: [&str; 2] = [
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
];

fn deploy(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unit_value(key: &str) -> String {
    deploy("vip.service")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= in deploy/vip.service"))
        .to_string()
}

/// The `vip run` arguments other than `--config FILE`.
fn run_flags(args: &[String]) -> Vec<String> {
    assert_eq!(args[0], "run", "{args:?}");
    let mut flags = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--config" {
            rest.next();
        } else {
            flags.push(arg.clone());
        }
    }
    flags
}

fn unit_flags() -> Vec<String> {
    let exec = unit_value("ExecStart");
    let mut words = exec.split_whitespace().map(str::to_string);
    assert_eq!(words.next().as_deref(), Some("/usr/bin/vip"));
    run_flags(&words.collect::<Vec<_>>())
}

fn daemonset_flags() -> Vec<String> {
    let text = deploy("daemonset.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .collect();
    let daemonset = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let args: Vec<String> = daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    run_flags(&args)
}

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\narp_sysctls = true\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"aliased\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n\
         [[range]]\nname = \"routed\"\ncidr = \"198.51.100.0/24\"\naccept = \"route\"\n"
    )
}

fn restart_as_shipped(tag: &str, flags: &[String]) {
    assert_eq!(
        unit_value("KillSignal"),
        "SIGTERM",
        "what the daemon is stopped with"
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let lab = DirectLab::new(tag);
    let _services = Services::start(&lab.server);
    let instance = Instance::new(tag);
    let pristine = host_dump(&lab.server, &SYSCTLS);
    let first = Daemon::start_with(&lab.server, &config(), &instance, &flags);
    let running = host_dump(&lab.server, &SYSCTLS);
    let program = lab.server.xdp_prog_id(DIRECT_SERVER_IF);
    let flow = Flow::start(&lab.client, &VIPS);
    let mut sampler = Sampler::new(&instance, &lab.server);
    sampler.sample_for(Duration::from_millis(300), "before the restart");

    first.stop();
    assert_same_dump(
        &running,
        &host_dump(&lab.server, &SYSCTLS),
        "after the stop",
    );
    assert_eq!(
        lab.server.xdp_prog_id(DIRECT_SERVER_IF),
        program,
        "still attached"
    );
    let gap = total(&sampler.sample("as the daemon went"), &VIPS);
    let later = total(
        &sampler.sample_for(Duration::from_millis(400), "between the stop and the start"),
        &VIPS,
    );
    assert!(later > gap, "counting with no daemon: {gap} -> {later}");

    let second = Daemon::start_with(&lab.server, &config(), &instance, &flags);
    assert_same_dump(
        &running,
        &host_dump(&lab.server, &SYSCTLS),
        "after the restart",
    );
    sampler.sample_for(Duration::from_millis(300), "after the restart");
    let result = flow.finish();
    assert_exact(&result, &sampler.sample("at the end"), &VIPS);

    second.stop();
    let down = instance.vip_ok(&lab.server, &["down"]);
    assert!(down.contains("removed pins"), "{down}");
    assert_same_dump(
        &pristine,
        &host_dump(&lab.server, &SYSCTLS),
        "after vip down",
    );
}

#[test]
fn systemctl_restart_with_the_shipped_unit_keeps_the_vips_up() {
    if !require_root("systemctl_restart_with_the_shipped_unit_keeps_the_vips_up") {
        return;
    }
    restart_as_shipped("shipunit", &unit_flags());
}

#[test]
fn a_daemonset_rolling_update_keeps_the_vips_up() {
    if !require_root("a_daemonset_rolling_update_keeps_the_vips_up") {
        return;
    }
    restart_as_shipped("shipds", &daemonset_flags());
}

/// `systemctl reload vip` runs the unit's ExecReload, `vip reload`, which
/// fails (exit 2, the daemon's line) on a config the daemon refuses, so that
/// systemctl reports it, and succeeds once the config is good.
#[test]
fn the_units_reload_fails_on_a_refused_config() {
    if !require_root("the_units_reload_fails_on_a_refused_config") {
        return;
    }
    let reload: Vec<String> = unit_value("ExecReload")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(reload, ["/usr/bin/vip", "reload"]);
    let args: Vec<&str> = reload[1..].iter().map(String::as_str).collect();
    let flags = unit_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let lab = DirectLab::new("shiprl");
    let instance = Instance::new("shiprl");
    let daemon = Daemon::start_with(&lab.server, &config(), &instance, &flags);
    daemon.rewrite_config(&config().replace("198.51.100.0/24", "198.51.100.1/24"));
    let said = instance.vip_refused(&lab.server, &args);
    assert!(
        said.contains("refused, still running the previous config")
            && said.contains("host bits set"),
        "{said}"
    );
    daemon.rewrite_config(&config().replace("198.51.100.0/24", "198.51.100.128/25"));
    let said = instance.vip_ok(&lab.server, &args);
    assert!(
        said.starts_with("reloaded ") && said.ends_with(": 2 range(s)\n"),
        "{said}"
    );
    daemon.stop();
    instance.vip_ok(&lab.server, &["down"]);
}
