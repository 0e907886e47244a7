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

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// The unsigned number at `key` of a JSON object.
pub fn number(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// (address, accepted packets, dropped packets) of each VIP row of one range
/// of `vip stats --json`, in the report's order.
pub fn vip_verdicts(range: &serde_json::Value) -> Vec<(std::net::IpAddr, u64, u64)> {
    range["vips"]
        .as_array()
        .unwrap_or_else(|| panic!("no vips in {range}"))
        .iter()
        .map(|v| {
            (
                v["addr"].as_str().unwrap().parse().unwrap(),
                number(v, "packets"),
                number(v, "dropped_packets"),
            )
        })
        .collect()
}

/// The `vip` binary under test: `$VIP_BIN`, else the workspace's release build.
pub fn vip_bin() -> PathBuf {
    let path = std::env::var_os("VIP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vip"));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// The layout version of [`old_vip_bin`]'s datapath (xtask's
/// `upgrade_base::COMMIT`).
pub const OLD_LAYOUT_VERSION: u32 = 11;

/// The older vip the upgrade tests start from: `$VIP_OLD_BIN`, which `cargo
/// xtask test` builds from a fixed commit and caches.
pub fn old_vip_bin() -> PathBuf {
    let path = std::env::var_os("VIP_OLD_BIN").map(PathBuf::from).expect(
        "VIP_OLD_BIN is unset: run the tests with `cargo xtask test`, which builds the older vip",
    );
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Where one vip instance keeps its state: a fresh pin directory on bpffs and a
/// fresh run directory, so tests can run in parallel. Pins are removed on drop.
pub struct Instance {
    pin_dir: PathBuf,
    run_dir: tempfile::TempDir,
    /// The `vip` its commands run: [`vip_bin`] unless [`Instance::use_binary`] said otherwise.
    binary: std::sync::Mutex<PathBuf>,
}

impl Instance {
    /// As root, first makes sure a bpffs is mounted on /sys/fs/bpf, as systemd
    /// does at boot: a test's `vip run` may have the shipped unit's
    /// capabilities, without CAP_SYS_ADMIN, and cannot mount one itself (on a
    /// fresh machine whose first vip run was such a test, none was).
    pub fn new(tag: &str) -> Instance {
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/vip-test-{tag}-{}-{}",
            std::process::id(),
            NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        if nix::unistd::geteuid().is_root() {
            pin::ensure_bpffs(&pin_dir)
                .unwrap_or_else(|e| panic!("a bpffs for {}: {e}", pin_dir.display()));
        }
        Instance {
            pin_dir,
            run_dir: tempfile::tempdir().expect("temp run dir"),
            binary: std::sync::Mutex::new(vip_bin()),
        }
    }

    /// An instance with a run directory of its own and `other`'s pin
    /// directory: a second vip pointed at the same pins by mistake.
    pub fn sharing_pins(other: &Instance) -> Instance {
        Instance {
            pin_dir: other.pin_dir.clone(),
            run_dir: tempfile::tempdir().expect("temp run dir"),
            binary: std::sync::Mutex::new(vip_bin()),
        }
    }

    /// Runs `binary` (another build of vip) from now on.
    pub fn use_binary(&self, binary: &Path) {
        *self.binary.lock().unwrap() = binary.to_path_buf();
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    pub fn state_file(&self) -> PathBuf {
        self.run_dir.path().join("state.json")
    }

    /// The running daemon's status file (steer targets, drift repairs).
    pub fn status_file(&self) -> PathBuf {
        self.run_dir.path().join("status.json")
    }

    /// `vip --pin-dir .. --run-dir ..`, in `ns` (its network namespace only).
    pub fn command(&self, ns: &Netns) -> Command {
        self.command_via(ns, &[])
    }

    /// [`Instance::command`] run through `wrapper` (a program and its arguments,
    /// such as `setpriv --bounding-set ...`), when it is not empty.
    pub fn command_via(&self, ns: &Netns, wrapper: &[String]) -> Command {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = ns.command(program);
                command.args(args).arg(&*self.binary.lock().unwrap());
                command
            }
            None => ns.command(&*self.binary.lock().unwrap()),
        };
        command
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--run-dir")
            .arg(self.run_dir.path());
        command
    }

    /// Runs `vip ARGS` in `ns` to completion.
    pub fn vip(&self, ns: &Netns, args: &[&str]) -> Output {
        self.command(ns).args(args).output().expect("running vip")
    }

    /// Runs `vip ARGS` in `ns` and panics unless it succeeds; returns stdout.
    pub fn vip_ok(&self, ns: &Netns, args: &[&str]) -> String {
        let out = self.vip(ns, args);
        assert!(
            out.status.success(),
            "vip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs `vip ARGS` in `ns` and panics unless it is refused as the
    /// operator's error: exit status 2 and one line on stderr, which it returns.
    pub fn vip_refused(&self, ns: &Netns, args: &[&str]) -> String {
        let out = self.vip(ns, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(2),
            "vip {}: {stderr}",
            args.join(" ")
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        stderr
    }

    /// `vip reload` of a daemon that dies on it (`VIP_FAULT_AT`): panics
    /// unless it says so, with exit status 1.
    pub fn reload_killing_the_daemon(&self, ns: &Netns) {
        let out = self.vip(ns, &["reload"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("exited before it reported the reload"),
            "{stderr}"
        );
    }

    /// Panics unless this instance left nothing in `ns`: no XDP program on
    /// `ifname`, no pins, no state file.
    pub fn assert_nothing_left(&self, ns: &Netns, ifname: &str) {
        assert_eq!(ns.xdp_prog_id(ifname), None, "XDP left on {ifname}");
        assert!(!self.pin_dir().exists(), "pins left");
        assert!(!self.state_file().exists(), "the state file left");
    }

    /// `vip stats --json`, parsed.
    pub fn stats_json(&self, ns: &Netns) -> serde_json::Value {
        serde_json::from_str(&self.vip_ok(ns, &["stats", "--json"])).expect("vip stats prints JSON")
    }

    /// `vip stats --json` once the datapath has counted exactly `packets`
    /// frames in all (veth delivers through NAPI, after sendto has returned);
    /// panics if it counts more, or fewer within 10 s (times
    /// `wait::patience`). Needs no daemon.
    pub fn stats_once_counted(&self, ns: &Netns, packets: u64) -> serde_json::Value {
        let within = crate::wait::scaled(Duration::from_secs(10));
        let deadline = Instant::now() + within;
        loop {
            let stats = self.stats_json(ns);
            let seen = number(&stats["global"], "packets");
            assert!(
                seen <= packets,
                "more frames counted than sent: {seen} > {packets}"
            );
            if seen == packets {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "{seen} of {packets} frames counted in {within:?}:\n{stats:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        remove_pin_dir(&self.pin_dir);
        // A BIRD that vip started (it outlives vip on purpose) and that a
        // failed test left running.
        let bird_pid = self.run_dir.path().join("bgp/bird.pid");
        if let Some(pid) = std::fs::read_to_string(bird_pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Unlinks every pin in `dir`, then `dir`. Not `pin::remove`: that refuses a
/// datapath recorded in another network namespace (the lab's, for a test that
/// panicked before its `vip down`), and would leave its pins and programs
/// behind on the host's bpffs.
fn remove_pin_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A `vip stats --json` steer entry's per-VIP counts, as (address, packets) in
/// the order the report gives them.
pub fn steered_per_vip(entry: &serde_json::Value) -> Vec<(String, u64)> {
    entry["vips"]
        .as_array()
        .unwrap_or_else(|| panic!("no vips in {entry}"))
        .iter()
        .map(|v| {
            (
                v["addr"].as_str().unwrap().to_string(),
                v["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A config written to a temporary file.
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp config");
    std::fs::write(file.path(), text).expect("writing config");
    file
}

/// `vip run` in a namespace; stopped with SIGTERM on drop.
pub struct Daemon<'a> {
    child: Option<Child>,
    ns: &'a Netns,
    instance: &'a Instance,
    log: tempfile::NamedTempFile,
    _config: tempfile::NamedTempFile,
}

impl<'a> Daemon<'a> {
    /// Starts `vip run` with `config` in `ns` and waits until it is counting,
    /// its datapath pinned (or adopted).
    pub fn start(ns: &'a Netns, config: &str, instance: &'a Instance) -> Daemon<'a> {
        Daemon::start_with(ns, config, instance, &[])
    }

    /// [`Daemon::start`] with more `vip run` arguments.
    pub fn start_with(
        ns: &'a Netns,
        config: &str,
        instance: &'a Instance,
        run_args: &[&str],
    ) -> Daemon<'a> {
        Daemon::try_start(ns, config, instance, run_args, &[])
            .unwrap_or_else(|log| panic!("vip run did not get ready:\n{log}"))
    }

    /// Starts `vip run` through `wrapper` (see [`Instance::command_via`]); the
    /// daemon's log if it exits before it is ready.
    pub fn try_start(
        ns: &'a Netns,
        config: &str,
        instance: &'a Instance,
        run_args: &[&str],
        wrapper: &[String],
    ) -> Result<Daemon<'a>, String> {
        let mut daemon = Daemon::spawn(ns, config, instance, run_args, wrapper);
        daemon.ready()?;
        Ok(daemon)
    }

    /// Starts `vip run` like [`Daemon::try_start`], without waiting for it.
    pub fn spawn(
        ns: &'a Netns,
        config: &str,
        instance: &'a Instance,
        run_args: &[&str],
        wrapper: &[String],
    ) -> Daemon<'a> {
        let config_file = config_file(config);
        let log = tempfile::NamedTempFile::new().expect("temp log");
        let child = instance
            .command_via(ns, wrapper)
            .arg("run")
            .arg("--config")
            .arg(config_file.path())
            .args(run_args)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log handle"))
            .spawn()
            .expect("spawning vip run");
        Daemon {
            child: Some(child),
            ns,
            instance,
            log,
            _config: config_file,
        }
    }

    /// Waits until the daemon is counting, its datapath pinned (or adopted);
    /// its log if it exits first.
    pub fn ready(&mut self) -> Result<(), String> {
        let within = crate::wait::scaled(Duration::from_secs(20));
        let deadline = Instant::now() + within;
        // Pins of an earlier daemon may be complete already: wait for the log too.
        while !pin::is_complete(self.instance.pin_dir()) || !self.log().contains("] counting ") {
            let child = self.child.as_mut().expect("daemon running");
            if let Some(status) = child.try_wait().expect("polling vip run") {
                self.child = None;
                return Err(format!(
                    "vip run exited with {status} before it was ready:\n{}",
                    self.log()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "vip run not ready in {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits until the daemon has logged `text`.
    pub fn wait_logged(&self, text: &str) {
        let within = crate::wait::scaled(Duration::from_secs(20));
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "vip run did not log {text:?} in {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The path of the daemon's config file.
    pub fn config_path(&self) -> &Path {
        self._config.path()
    }

    /// Replaces the daemon's config file (for a reload).
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(self._config.path(), config).expect("rewriting config");
    }

    /// `vip reload`, which waits for the daemon's outcome; then the line the
    /// daemon logged ("reloaded ..." or "reload of ... refused ..."), which
    /// it returns. Panics unless `vip reload` said the same: the line on
    /// stdout and exit 0 when reloaded, else on stderr and exit 2 (refused
    /// as the operator's error) or 1.
    pub fn reload(&self) -> String {
        let seen = self.log().matches("reload").count();
        let out = self.instance.vip(self.ns, &["reload"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let within = crate::wait::scaled(Duration::from_secs(10));
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.matches("reload").count() > seen {
                let line = log
                    .lines()
                    .rfind(|l| l.contains("] reload"))
                    .expect("a reload line");
                let told = if out.status.success() {
                    stdout.trim_end().to_string()
                } else {
                    assert!(
                        out.status.code() == Some(2) || out.status.code() == Some(1),
                        "vip reload: {:?}, {stderr}",
                        out.status
                    );
                    stderr.trim_end().replacen("vip: error: ", "", 1)
                };
                assert!(
                    line.ends_with(&format!("] {told}")),
                    "vip reload said {told:?} ({:?}), the daemon {line:?}",
                    out.status
                );
                assert_eq!(
                    out.status.success(),
                    line.contains("] reloaded "),
                    "vip reload: {:?}, {line}",
                    out.status
                );
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no reload logged in {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        self.instance.stats_json(self.ns)
    }

    /// [`Instance::stats_once_counted`] for this daemon's instance.
    pub fn stats_once_counted(&self, packets: u64) -> serde_json::Value {
        self.instance.stats_once_counted(self.ns, packets)
    }

    /// Sends SIGTERM and waits for a clean exit; returns the daemon's log.
    pub fn stop(mut self) -> String {
        let child = self.child.take().expect("daemon running");
        let status = terminate(child);
        let log = self.log();
        assert!(status.success(), "vip run exited with {status}:\n{log}");
        log
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// `kill -9`: the daemon gets no chance to clean up. Returns its log.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().expect("daemon running");
        child.kill().expect("SIGKILL to vip run");
        child.wait().expect("reaping vip run");
        self.log()
    }

    /// Waits for the daemon to exit by itself (e.g. after `vip down`).
    pub fn wait_exit(mut self) -> String {
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + crate::wait::scaled(Duration::from_secs(20));
        while child.try_wait().expect("polling vip run").is_none() {
            assert!(
                Instant::now() < deadline,
                "vip run still running:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log()
    }
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + crate::wait::scaled(Duration::from_secs(10));
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

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}
