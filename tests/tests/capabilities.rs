//! The daemon runs with exactly the capabilities the shipped systemd unit and the
//! DaemonSet grant, parsed from deploy/ so the files and the test cannot drift
//! apart: it attaches, counts, and steers TCP to a listener owned by another
//! user (nginx as www-data is the normal case), with exact per-VIP steered
//! counts. Without any one of those capabilities it fails: it does not start,
//! or it says which capability steering lacks.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use vip_tests::{
    daemon::{steered_per_vip, Daemon, Instance},
    deploy::{bounded, deploy, unit_capabilities},
    netns::Netns,
    root::require_root,
    seed::{DirectLab, DIRECT_SERVER_IF},
};

const TARGET: &str = "127.0.0.1:8080";
/// The capability the BIRD that vip starts with `[bgp]` needs for port 179.
const BIRD_LISTENS: &str = "net_bind_service";
/// The user the service runs as: nobody.
const SERVICE_UID: &str = "65534";

/// The DaemonSet container's capabilities: it drops all and adds these, so they
/// are its bounding set.
fn daemonset_capabilities() -> Vec<String> {
    let text = deploy("daemonset.yaml");
    let daemonset = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .find(|doc| doc["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "steering finds the service's process in the host's /proc"
    );
    let context = &pod["containers"][0]["securityContext"];
    assert_eq!(context["privileged"], false);
    assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
    context["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|c| c.as_str().unwrap().to_lowercase())
        .collect()
}

/// `vip-test-listener` on [`TARGET`] as another user; reports accepted connections.
struct Listener {
    child: Child,
    accepted: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Listener {
    fn start(ns: &Netns) -> Listener {
        // A copy the other user can execute, wherever the checkout lives.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = dir.path().join("listener");
        std::fs::copy(env!("CARGO_BIN_EXE_vip-test-listener"), &binary).unwrap();
        let mut child = ns
            .command("setpriv")
            .args([
                "--reuid",
                SERVICE_UID,
                "--regid",
                SERVICE_UID,
                "--clear-groups",
            ])
            .arg(&binary)
            .arg(TARGET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the listener through setpriv");
        let (send, accepted) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let listener = Listener {
            child,
            accepted,
            _dir: dir,
        };
        assert_eq!(listener.next(), Some("listening".to_string()));
        listener
    }

    fn next(&self) -> Option<String> {
        self.accepted.recv_timeout(Duration::from_secs(2)).ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config() -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\n\
         [metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n\
         steer = [{{ match = \"tcp/80\", to = \"{TARGET}\" }}]\n"
    )
}

fn vips() -> Vec<IpAddr> {
    (1..=3)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect()
}

fn steer_entry(daemon: &Daemon) -> Value {
    daemon.stats_json()["steer"][0].clone()
}

/// With `caps`, the target is taken and three connections to three VIPs reach
/// the other user's listener, each counted once for its VIP.
fn assert_steers(lab: &DirectLab, listener: &Listener, caps: &[String]) {
    let instance = Instance::new("caps");
    let daemon = Daemon::try_start(&lab.server, &config(), &instance, &[], &bounded(caps))
        .unwrap_or_else(|log| panic!("with {caps:?}: {log}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while steer_entry(&daemon)["up"] != true {
        assert!(
            Instant::now() < deadline,
            "with {caps:?} the target was not taken in 5 s:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for vip in vips() {
        let to = SocketAddr::new(vip, 80);
        let _stream = lab
            .client
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)))
            .unwrap_or_else(|e| panic!("with {caps:?}, connecting to {to}: {e}"));
        assert_eq!(listener.next(), Some(to.to_string()), "with {caps:?}");
    }
    let entry = steer_entry(&daemon);
    assert_eq!(entry["packets"].as_u64(), Some(3), "{entry}");
    let mut per_vip = steered_per_vip(&entry);
    per_vip.sort();
    let expected: Vec<(String, u64)> = vips().iter().map(|v| (v.to_string(), 1)).collect();
    assert_eq!(per_vip, expected);
    daemon.stop();
}

/// Without `missing`, the daemon refuses to start, or runs and names the
/// capability steering lacks; either way nothing is steered.
fn assert_fails_without(lab: &DirectLab, listener: &Listener, caps: &[String], missing: &str) {
    let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
    let instance = Instance::new("caps");
    let named = format!("CAP_{}", missing.to_uppercase());
    match Daemon::try_start(&lab.server, &config(), &instance, &[], &bounded(&fewer)) {
        Err(log) => assert!(
            log.contains("vip: error:"),
            "without {named} vip exited without an error line:\n{log}"
        ),
        Ok(daemon) => {
            let deadline = Instant::now() + Duration::from_secs(6);
            while !daemon.log().contains(&named) {
                assert!(
                    Instant::now() < deadline,
                    "without {named} vip ran and did not name it:\n{}",
                    daemon.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(steer_entry(&daemon)["up"], false);
            let to = SocketAddr::new(vips()[0], 80);
            let connected = lab
                .client
                .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)));
            assert!(connected.is_err(), "without {named}, {to} was answered");
            daemon.stop();
        }
    }
    assert_eq!(
        listener.next(),
        None,
        "without {named} the listener got a connection"
    );
}

#[test]
fn the_shipped_capability_sets_are_enough_for_steering_and_each_is_needed() {
    if !require_root("the_shipped_capability_sets_are_enough_for_steering_and_each_is_needed") {
        return;
    }
    let unit = unit_capabilities();
    let daemonset = daemonset_capabilities();
    // The daemon must not need to mount a bpffs (that takes CAP_SYS_ADMIN);
    // systemd mounts one at boot, as the DaemonSet's host does.
    vip_userspace::datapath::pin::ensure_bpffs(std::path::Path::new("/sys/fs/bpf"))
        .expect("a bpffs on /sys/fs/bpf");

    let lab = DirectLab::new("caps");
    let listener = Listener::start(&lab.server);
    let mut sets = vec![unit];
    if !sets.contains(&daemonset) {
        sets.push(daemonset);
    }
    for caps in &sets {
        assert_steers(&lab, &listener, caps);
        // BIRD's, not vip's: tests/tests/anycast.rs shows it is needed.
        for missing in caps.iter().filter(|c| *c != BIRD_LISTENS) {
            assert_fails_without(&lab, &listener, caps, missing);
        }
    }
}
