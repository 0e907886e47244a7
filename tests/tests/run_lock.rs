//! One vip at a time in a run directory. `vip run` holds the run directory's
//! lock from its start, before it has recorded its pid: a `vip apply` or a
//! second `vip run` in that window is refused, having changed nothing, and a
//! `vip down` waits for the pid and stops the daemon rather than finding
//! nothing to do and leaving it to come up behind it. The window is widened
//! with `VIP_FAULT_PAUSE=start-locked`. A vip of another run directory
//! pointed at the same pin directory is refused by that directory's lock.

use vip_tests::{
    daemon::{config_file, Daemon, Instance},
    netns::{Lab, Netns},
    root::require_root,
};
use vip_userspace::datapath::pin;

fn config() -> String {
    format!(
        "interfaces = [\"{}\"]\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"alias\"\n",
        Lab::SERVER_IF
    )
}

fn has_alias(ns: &Netns) -> bool {
    ns.ip_output(&["addr", "show", "dev", "lo"])
        .contains("inet 192.0.2.0/24")
}

fn assert_nothing_left(lab: &Lab, instance: &Instance) {
    assert!(!has_alias(&lab.server), "the alias is left");
    instance.assert_nothing_left(&lab.server, Lab::SERVER_IF);
}

#[test]
fn a_starting_daemon_holds_the_run_dir_against_apply_run_and_down() {
    if !require_root("a_starting_daemon_holds_the_run_dir_against_apply_run_and_down") {
        return;
    }
    let lab = Lab::new("rlock");
    let instance = Instance::new("rlock");
    let wrapper = [
        "env".to_string(),
        "VIP_FAULT_PAUSE=start-locked".to_string(),
    ];
    let daemon = Daemon::spawn(&lab.server, &config(), &instance, &[], &wrapper);
    daemon.wait_logged("VIP_FAULT_PAUSE=start-locked");
    let lock = instance.run_dir().join("lock");
    let held = format!("another vip holds {}", lock.display());
    let path = daemon.config_path().to_str().unwrap().to_string();

    let stderr = instance.vip_refused(&lab.server, &["apply", "--config", &path]);
    assert!(stderr.contains(&held), "{stderr}");
    assert!(!has_alias(&lab.server), "a refused apply added the alias");
    assert!(
        !instance.state_file().exists(),
        "a refused apply wrote state"
    );

    let second = config_file(&config());
    let second = second.path().to_str().unwrap();
    let stderr = instance.vip_refused(&lab.server, &["run", "--config", second]);
    assert!(stderr.contains(&held), "{stderr}");

    // The daemon is still paused, its pid not recorded: down waits for it.
    let pid = daemon.pid();
    let out = instance.vip_ok(&lab.server, &["down"]);
    assert!(
        out.contains(&format!("stopping vip run (pid {pid})")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "vip run (pid {pid}) stopped: it detached and reverted"
        )),
        "{out}"
    );
    let log = daemon.wait_exit();
    assert!(log.contains("] counting "), "it had come up:\n{log}");
    assert_nothing_left(&lab, &instance);
}

#[test]
fn apply_is_refused_while_a_daemon_runs_and_allowed_after_it() {
    if !require_root("apply_is_refused_while_a_daemon_runs_and_allowed_after_it") {
        return;
    }
    let lab = Lab::new("rlapply");
    let instance = Instance::new("rlapply");
    let daemon = Daemon::start(&lab.server, &config(), &instance);
    let file = config_file(&config());
    let path = file.path().to_str().unwrap();
    let stderr = instance.vip_refused(&lab.server, &["apply", "--config", path]);
    assert!(
        stderr.contains(&format!("vip run (pid {}) owns", daemon.pid()))
            && stderr.contains("`vip reload`"),
        "{stderr}"
    );
    daemon.stop();
    assert_nothing_left(&lab, &instance);

    // The lock went with the daemon.
    let out = instance.vip_ok(&lab.server, &["apply", "--config", path]);
    assert!(
        out.starts_with("applied 5 change(s), 0 already in place"),
        "{out}"
    );
    assert!(has_alias(&lab.server), "apply added the alias");
    let out = instance.vip_ok(&lab.server, &["down"]);
    assert!(out.contains("reverted 5 change(s)"), "{out}");
    assert_nothing_left(&lab, &instance);
}

#[test]
fn a_vip_of_another_run_dir_is_refused_the_pins_in_use() {
    if !require_root("a_vip_of_another_run_dir_is_refused_the_pins_in_use") {
        return;
    }
    let lab = Lab::new("rlpins");
    let owner = Instance::new("rlpins");
    let daemon = Daemon::start(&lab.server, &config(), &owner);
    let attached = lab.server.xdp_prog_id(Lab::SERVER_IF);
    assert!(attached.is_some(), "the owner attached nothing");
    let other = Instance::sharing_pins(&owner);
    let held = format!("another vip holds {}", owner.pin_dir().display());

    let file = config_file(&config());
    let path = file.path().to_str().unwrap();
    let stderr = other.vip_refused(&lab.server, &["run", "--config", path]);
    assert!(stderr.contains(&held), "{stderr}");
    assert!(!other.state_file().exists(), "a refused run wrote state");
    let stderr = other.vip_refused(&lab.server, &["down"]);
    assert!(stderr.contains(&held), "{stderr}");

    // The owner's datapath is untouched, and it still counts.
    assert!(pin::is_complete(owner.pin_dir()), "the owner's pins went");
    assert_eq!(lab.server.xdp_prog_id(Lab::SERVER_IF), attached);
    let vip = "192.0.2.7".parse().unwrap();
    let sent = lab.send_udp(&[vip], 53, |_| 3);
    daemon.stats_once_counted(sent);
    daemon.stop();
    assert_nothing_left(&lab, &owner);
    // The lock went with the owner: the other's down finds nothing.
    let out = other.vip_ok(&lab.server, &["down"]);
    assert!(out.starts_with("nothing to do"), "{out}");
}
