//! One VM run: the script that runs the test binaries inside, and the
//! console it prints.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::install::kvm_usable;

/// A hung VM fails the run after this long.
const TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// The line the VM's script prints first; the kernel's boot messages before
/// it go to console.log only.
const STARTED: &str = "vm: kernel ";

/// The line before each test binary, then its name.
pub(super) const RUNNING: &str = "vm: running ";

/// The line the VM's script prints last.
pub(super) const DONE: &str = "vm: done";

/// One test binary a VM runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TestBinary {
    pub name: String,
    pub executable: PathBuf,
    /// Only these of its tests (exact names); every test when empty.
    pub only: &'static [&'static str],
}

/// What runs inside the VM: each test binary in turn, with its exit status
/// and the guest's memory in use, then a marker line. The console shows the
/// kernel's messages of warning level and above (an oops, a panic, the OOM
/// killer) from then on.
fn script(env: &[(String, String)], tests: &[TestBinary]) -> String {
    let mut script = format!(
        "set -u\nmount -t bpf bpf /sys/fs/bpf\nmkdir -p /run/netns\ndmesg -n 5\necho \"{STARTED}$(uname -r)\"\n",
    );
    for (key, value) in env {
        script.push_str(&format!("export {key}='{value}'\n"));
    }
    for test in tests {
        let only = if test.only.is_empty() {
            String::new()
        } else {
            format!(" --exact {}", test.only.join(" "))
        };
        script.push_str(&format!(
            "echo \"{RUNNING}{}\"\n'{}' --test-threads=2{only} 2>&1\n\
             echo \"{}$?, $(free -m | awk '/^Mem:/ {{print $3}}') MB in use\"\n",
            test.name,
            test.executable.display(),
            finished_line(&test.name)
        ));
    }
    script.push_str(&format!("echo '{DONE}'\n"));
    script
}

/// One of Debian's kernels, booted by virtme-ng.
pub(super) struct Vm {
    pub release: String,
    pub image: PathBuf,
    pub vng: PathBuf,
    /// Scripts and consoles.
    pub dir: PathBuf,
}

impl Vm {
    /// Boots the kernel, runs `tests` in it, and returns the console (also
    /// written to `log` in `dir`) and how the VM ended; fails on a hang.
    pub fn run(
        &self,
        env: &[(String, String)],
        tests: &[TestBinary],
        log: &str,
    ) -> anyhow::Result<(String, ExitStatus)> {
        let script_path = self.dir.join("run.sh");
        std::fs::write(&script_path, script(env, tests))?;
        let mut command = Command::new(&self.vng);
        // vng runs its helpers (virtme-run) from PATH.
        let path = std::env::join_paths(
            std::iter::once(self.vng.parent().expect("the venv's bin").to_path_buf()).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ),
        )?;
        command
            .env("PATH", path)
            .arg("--run")
            .arg(&self.image)
            // The kernel's console too, so that a panic is seen.
            .arg("--verbose")
            .args(["--memory", "2G", "--cpus", "2"])
            .arg("--exec")
            .arg(format!("sh {}", script_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !kvm_usable() {
            command.arg("--disable-kvm");
        }
        eprintln!(
            "xtask: booting {} ({}) for {} test binaries",
            self.release,
            if kvm_usable() { "KVM" } else { "TCG, no KVM" },
            tests.len()
        );
        let started = Instant::now();
        let mut child = command.spawn().context("starting vng")?;
        let output = Arc::new(Mutex::new(String::new()));
        let script_started = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ]
        .into_iter()
        .map(|stream| {
            let output = output.clone();
            let script_started = script_started.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains(STARTED) {
                        script_started.store(true, Ordering::Relaxed);
                    }
                    if script_started.load(Ordering::Relaxed) {
                        println!("{line}");
                    }
                    let mut all = output.lock().expect("output lock");
                    all.push_str(&line);
                    all.push('\n');
                }
            })
        })
        .collect();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        for reader in readers {
            let _ = reader.join();
        }
        let output = output.lock().expect("output lock").clone();
        let log = self.dir.join(log);
        std::fs::write(&log, &output)?;
        let Some(status) = status else {
            bail!(
                "the {} VM did not finish within {} minutes (console above, and in {})",
                self.release,
                TIMEOUT.as_secs() / 60,
                log.display()
            );
        };
        Ok((output, status))
    }
}

/// The script's line after a test binary has exited.
pub(super) fn finished_line(name: &str) -> String {
    format!("vm: {name} exited with ")
}
