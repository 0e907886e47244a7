//! Running the real `vip` binary: as a daemon inside a namespace, and as a CLI.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use vip_userspace::datapath::pin;

use crate::netns::Netns;

static NEXT_PIN_DIR: AtomicU32 = AtomicU32::new(0);

/// The `vip` binary under test: `$VIP_BIN`, else the workspace's debug build.
pub fn vip_bin() -> PathBuf {
    let path = std::env::var_os("VIP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vip"));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// A fresh pin directory for one test, so tests can run in parallel.
pub fn unique_pin_dir(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/vip-test-{tag}-{}-{}",
        std::process::id(),
        NEXT_PIN_DIR.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs `vip --pin-dir DIR ARGS` to completion.
pub fn vip(pin_dir: &Path, args: &[&str]) -> Output {
    Command::new(vip_bin())
        .arg("--pin-dir")
        .arg(pin_dir)
        .args(args)
        .output()
        .expect("running vip")
}

/// Runs `vip --pin-dir DIR run --config FILE` in `ns` to completion: for runs
/// that are expected to fail before they start counting.
pub fn vip_run_to_exit(ns: &Netns, pin_dir: &Path, config: &Path) -> Output {
    ns.command(vip_bin())
        .arg("--pin-dir")
        .arg(pin_dir)
        .arg("run")
        .arg("--config")
        .arg(config)
        .output()
        .expect("running vip run")
}

/// `vip run` in a namespace; stopped with SIGTERM, and its pins removed, on drop.
pub struct Daemon {
    child: Option<Child>,
    pin_dir: PathBuf,
    log: tempfile::NamedTempFile,
    _config: tempfile::NamedTempFile,
}

impl Daemon {
    /// Starts `vip run` with `config` in `ns` and waits until its datapath is pinned.
    pub fn start(ns: &Netns, config: &str, pin_dir: &Path) -> Daemon {
        let config_file = tempfile::NamedTempFile::new().expect("temp config");
        std::fs::write(config_file.path(), config).expect("writing config");
        let log = tempfile::NamedTempFile::new().expect("temp log");
        let child = ns
            .command(vip_bin())
            .arg("--pin-dir")
            .arg(pin_dir)
            .arg("run")
            .arg("--config")
            .arg(config_file.path())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log handle"))
            .spawn()
            .expect("spawning vip run");
        let mut daemon = Daemon {
            child: Some(child),
            pin_dir: pin_dir.to_path_buf(),
            log,
            _config: config_file,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pin::is_complete(&self.pin_dir) {
            let child = self.child.as_mut().expect("daemon running");
            if let Some(status) = child.try_wait().expect("polling vip run") {
                panic!(
                    "vip run exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "vip run not ready in 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        let _ = self
            .log
            .reopen()
            .and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// `vip stats --json`, parsed.
    pub fn stats_json(&self) -> serde_json::Value {
        let out = vip(&self.pin_dir, &["stats", "--json"]);
        assert!(
            out.status.success(),
            "vip stats --json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("vip stats prints JSON")
    }

    /// Sends SIGTERM and waits for a clean exit; returns the daemon's log.
    pub fn stop(mut self) -> String {
        let child = self.child.take().expect("daemon running");
        let status = terminate(child);
        let log = self.log();
        assert!(status.success(), "vip run exited with {status}:\n{log}");
        log
    }
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("polling vip run") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("reaping vip run");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
        let _ = pin::remove(&self.pin_dir);
    }
}
