//! `cargo xtask test --kernel VERSION`: the kernel-dependent tests inside a VM
//! booted with one of Debian's kernels (virtme-ng and qemu, sharing the host's
//! root filesystem read-only), reported as the host run reports them.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{build::Artifacts, command::run};

/// The tests whose outcome depends on the kernel (the rest check files,
/// formats and userspace logic).
pub const TESTS: &[&str] = &[
    "datapath_fixtures",
    "sparse_fixtures",
    "decap_fixtures",
    "counting",
    "attach_modes",
    "policy_netns",
    "steering",
    "restart",
    "reload",
    "host_contract",
    "upgrade",
    "sparse_upgrade",
    "batch_reads",
];

/// virtme-ng, from PyPI into a venv under `target/`.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// A hung VM fails the run after this long.
const TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// The Debian kernel package for `version`: a series (`6.1`, `6.12`: the
/// newest point release apt offers) or a package's full release
/// (`6.1.0-47-amd64`). Returns the kernel release, as `uname -r` prints it.
fn resolve(version: &str) -> anyhow::Result<String> {
    if version.ends_with("-amd64") {
        return Ok(version.to_string());
    }
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", "^linux-image-[0-9].*-amd64$"])
        .output()
        .context("running apt-cache")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut releases: Vec<(Vec<u64>, String)> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| name.strip_prefix("linux-image-"))
        .filter(|release| !release.contains("-dbg") && !release.contains("cloud"))
        .filter(|release| !release.contains("-rt-") && !release.contains("unsigned"))
        .filter(|release| {
            release.starts_with(&format!("{version}."))
                || release.starts_with(&format!("{version}-"))
        })
        .map(|release| (numbers(release), release.to_string()))
        .collect();
    releases.sort();
    match releases.pop() {
        Some((_, release)) => Ok(release),
        None => bail!("apt offers no linux-image package for kernel {version} (try `apt-cache search linux-image-{version}`)"),
    }
}

/// The numbers in a release string, for ordering point releases.
fn numbers(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn install_kernel(release: &str) -> anyhow::Result<PathBuf> {
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    let modules = PathBuf::from(format!("/lib/modules/{release}"));
    if image.exists() && modules.exists() {
        return Ok(image);
    }
    eprintln!("xtask: installing linux-image-{release} with apt");
    run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .arg(format!("linux-image-{release}")),
        "installing the kernel",
    )?;
    if !image.exists() {
        bail!(
            "installing linux-image-{release} left no {}",
            image.display()
        );
    }
    Ok(image)
}

fn virtme_ng(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/virtme-ng");
    let vng = venv.join("bin/vng");
    if vng.exists() {
        return Ok(vng);
    }
    eprintln!("xtask: installing {VIRTME_NG} into {}", venv.display());
    // The system's python, not a user-level shim; Debian splits venv out.
    let create = || {
        Command::new("/usr/bin/python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !create() {
        crate::system::ensure(&[crate::system::Need {
            command: "ensurepip-missing",
            package: "python3-venv",
        }])
        .ok();
        let _ = std::fs::remove_dir_all(&venv);
        if !create() {
            bail!("cannot create a venv with /usr/bin/python3: install python3-venv");
        }
    }
    run(
        Command::new(venv.join("bin/pip")).args(["install", "-q", VIRTME_NG]),
        "installing virtme-ng",
    )?;
    Ok(vng)
}

/// KVM only where it is real hardware virtualisation: a paravirtual one
/// (`kvm_pvm`) cannot boot Debian's kernels.
fn kvm_usable() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    hardware && Path::new("/dev/kvm").exists() && !Path::new("/sys/module/kvm_pvm").exists()
}

/// The test executables of `TESTS`, built (not run) for the host.
fn test_executables(root: &Path, artifacts: &Artifacts) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut cargo = crate::command::cargo(root);
    cargo
        .args([
            "test",
            "--release",
            "--no-run",
            "--message-format=json",
            "-p",
            "vip-tests",
        ])
        .envs(artifacts.env());
    for test in TESTS {
        cargo.args(["--test", test]);
    }
    let out = cargo
        .stderr(Stdio::inherit())
        .output()
        .context("building the tests")?;
    if !out.status.success() {
        bail!("building the tests failed ({})", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if TESTS.contains(&name) {
            found.push((name.to_string(), PathBuf::from(executable)));
        }
    }
    found.sort();
    if found.len() != TESTS.len() {
        bail!("built {} of the {} kernel tests", found.len(), TESTS.len());
    }
    Ok(found)
}

/// The line the VM's script prints first; the kernel's boot messages before
/// it go to console.log only.
const STARTED: &str = "vm: kernel ";

/// The line the VM's script prints last.
const DONE: &str = "vm: done";

/// What runs inside the VM: each test binary in turn, with its exit status
/// and the guest's memory in use, then a marker line. The console shows the
/// kernel's messages of warning level and above (an oops, a panic, the OOM
/// killer) from then on.
fn script(env: &[(String, String)], tests: &[(String, PathBuf)]) -> String {
    let mut script = format!(
        "set -u\nmount -t bpf bpf /sys/fs/bpf\nmkdir -p /run/netns\ndmesg -n 5\necho \"{STARTED}$(uname -r)\"\n",
    );
    for (key, value) in env {
        script.push_str(&format!("export {key}='{value}'\n"));
    }
    for (name, executable) in tests {
        script.push_str(&format!(
            "echo \"vm: running {name}\"\n'{}' --test-threads=2 2>&1\n\
             echo \"{}$?, $(free -m | awk '/^Mem:/ {{print $3}}') MB in use\"\n",
            executable.display(),
            finished_line(name)
        ));
    }
    script.push_str(&format!("echo '{DONE}'\n"));
    script
}

/// Boots `release` and runs the kernel tests in it; fails on a failed test,
/// a missing result or a hang (showing the VM's console).
///
/// A VM that ends before its script does (its kernel panicked, or qemu
/// died; the console says which) gets one second VM for the binaries that
/// had not finished, and the run says so. A second early end fails the run.
pub fn test(
    root: &Path,
    version: &str,
    artifacts: &Artifacts,
    old_vip: &Path,
) -> anyhow::Result<()> {
    let release = resolve(version)?;
    let vm = Vm {
        image: install_kernel(&release)?,
        vng: virtme_ng(root)?,
        dir: root.join("target/kernel").join(&release),
        release,
    };
    let tests = test_executables(root, artifacts)?;
    let mut env: Vec<(String, String)> = artifacts
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string_lossy().into_owned()))
        .collect();
    env.push(("VIP_OLD_BIN".into(), old_vip.display().to_string()));
    env.push(("CI".into(), std::env::var("CI").unwrap_or_default()));
    env.push(("RUST_BACKTRACE".into(), "1".into()));
    std::fs::create_dir_all(&vm.dir)?;

    let started = Instant::now();
    let (mut output, mut status) = vm.run(&env, &tests, "console.log")?;
    if !output.contains(DONE) {
        let unfinished = unfinished(&tests, &output);
        println!(
            "xtask: the {} VM ended ({status}) before its tests finished: {} {}; \
             the {} unfinished test binaries run again in a second VM (console in {})",
            vm.release,
            ended_why(&output),
            last_running(&output),
            unfinished.len(),
            vm.dir.join("console.log").display()
        );
        let (again, again_status) = vm.run(&env, &unfinished, "console-second.log")?;
        output.push_str(&again);
        status = again_status;
    }
    report(&vm.release, &output, tests.len(), started.elapsed(), status).with_context(|| {
        format!(
            "the whole console is in {}",
            vm.dir.join("console*.log").display()
        )
    })
}

/// One of Debian's kernels, booted by virtme-ng.
struct Vm {
    release: String,
    image: PathBuf,
    vng: PathBuf,
    /// Scripts and consoles.
    dir: PathBuf,
}

impl Vm {
    /// Boots the kernel, runs `tests` in it, and returns the console (also
    /// written to `log` in `dir`) and how the VM ended; fails on a hang.
    fn run(
        &self,
        env: &[(String, String)],
        tests: &[(String, PathBuf)],
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
fn finished_line(name: &str) -> String {
    format!("vm: {name} exited with ")
}

/// The test binaries that had not exited when the VM ended.
fn unfinished(tests: &[(String, PathBuf)], output: &str) -> Vec<(String, PathBuf)> {
    tests
        .iter()
        .filter(|(name, _)| !output.contains(&finished_line(name)))
        .cloned()
        .collect()
}

/// Where the script had got to: "while running NAME" or "after NAME".
fn last_running(output: &str) -> String {
    match output
        .lines()
        .filter_map(|l| l.strip_prefix("vm: running "))
        .next_back()
    {
        None => "before the first test binary".into(),
        Some(name) if output.contains(&finished_line(name)) => format!("after {name}"),
        Some(name) => format!("while running {name}"),
    }
}

fn ended_why(output: &str) -> &'static str {
    if output.contains("Kernel panic") {
        "its kernel panicked"
    } else {
        "it stopped"
    }
}

/// Sums the `test result:` lines; fails unless every binary reported and none failed.
fn report(
    release: &str,
    output: &str,
    binaries: usize,
    took: Duration,
    vm: ExitStatus,
) -> anyhow::Result<()> {
    let (mut passed, mut failed, mut results) = (0u64, 0u64, 0usize);
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        results += 1;
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.windows(2) {
            let count = pair[0].parse::<u64>().unwrap_or(0);
            match pair[1].trim_end_matches([';', ',']) {
                "passed" => passed += count,
                "failed" => failed += count,
                _ => {}
            }
        }
    }
    let skipped = output.lines().filter(|l| l.starts_with("SKIPPED ")).count();
    println!(
        "kernel {release}: {passed} passed, {failed} failed, {skipped} skipped, in {results} of {binaries} test binaries ({} s)",
        took.as_secs()
    );
    if !output.contains(DONE) || !vm.success() {
        bail!(
            "the {release} VM ended ({vm}) before its tests finished: {} {} (console above)",
            ended_why(output),
            last_running(output)
        );
    }
    if failed > 0 || results != binaries || skipped > 0 {
        bail!("kernel {release}: tests failed, skipped or did not report");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binaries(names: &[&str]) -> Vec<(String, PathBuf)> {
        names
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("/t/{n}"))))
            .collect()
    }

    #[test]
    fn a_vm_that_ended_midway_leaves_the_running_binary_and_the_rest_to_rerun() {
        let tests = binaries(&["a", "b", "c"]);
        let output = "vm: kernel 6.12\nvm: running a\nvm: a exited with 0, 150 MB in use\n\
                      vm: running b\n[ 28.9] Kernel panic - not syncing\n";
        assert_eq!(unfinished(&tests, output), binaries(&["b", "c"]));
        assert_eq!(last_running(output), "while running b");
        assert_eq!(ended_why(output), "its kernel panicked");
    }

    #[test]
    fn a_vm_that_ended_between_binaries_says_after_which() {
        let tests = binaries(&["a", "b"]);
        let output = "vm: running a\nvm: a exited with 101, 150 MB in use\n";
        assert_eq!(unfinished(&tests, output), binaries(&["b"]));
        assert_eq!(last_running(output), "after a");
        assert_eq!(ended_why(output), "it stopped");
        assert_eq!(last_running(""), "before the first test binary");
    }
}
