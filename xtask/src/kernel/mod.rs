//! `cargo xtask test --kernel VERSION`: the kernel-dependent tests inside a VM
//! booted with one of Debian's kernels (virtme-ng and qemu, sharing the host's
//! root filesystem read-only), reported as the host run reports them.

mod console;
mod install;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Instant,
};

use anyhow::{bail, Context};

use crate::build::Artifacts;
use console::{ended_why, last_running, report, unfinished};
use install::{install_kernel, resolve, virtme_ng};
use vm::{Vm, DONE};

/// The tests whose outcome depends on the kernel (the rest check files,
/// formats and userspace logic), and which kernels each needs.
pub const TESTS: &[(&str, Needs)] = &[
    ("datapath_fixtures", Needs::EveryKernel),
    ("sparse_fixtures", Needs::EveryKernel),
    ("decap_fixtures", Needs::EveryKernel),
    ("counting", Needs::EveryKernel),
    ("attach_modes", Needs::EveryKernel),
    ("policy_netns", Needs::EveryKernel),
    ("steering", Needs::EveryKernel),
    ("restart", Needs::EveryKernel),
    ("interfaces_restart", Needs::EveryKernel),
    ("interface_recreated", Needs::XdpLifecycle),
    ("start_crash", Needs::XdpLifecycle),
    ("reload", Needs::XdpLifecycle),
    ("reload_vouching", Needs::XdpLifecycle),
    ("reload_crash", Needs::XdpLifecycle),
    ("host_contract", Needs::XdpLifecycle),
    ("upgrade", Needs::EveryKernel),
    ("sparse_upgrade", Needs::XdpLifecycle),
    ("batch_reads", Needs::EveryKernel),
    ("footprint", Needs::EveryKernel),
];

/// Which kernels a test of `TESTS` must run on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// It loads programs (the verifier), attaches in every mode (TCX or
    /// clsact) or replaces programs through links, where kernels differ.
    EveryKernel,
    /// The daemon's life with XDP attachments only: reloads, crashes, the
    /// host contract, an interface created again, the sparse table's
    /// upgrade. What it asks of the kernel (XDP links, pins, map updates,
    /// rtnetlink) is there from 6.1 on, and the oldest kernel's VM and the
    /// host run it.
    XdpLifecycle,
}

/// Which of `TESTS` a VM runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    /// All but the `Needs::XdpLifecycle` ones.
    WithoutXdpLifecycle,
}

impl Scope {
    fn tests(self) -> impl Iterator<Item = &'static str> {
        named(move |needs| self == Scope::All || needs == Needs::EveryKernel)
    }
}

/// The tests `Scope::WithoutXdpLifecycle` leaves out.
fn xdp_lifecycle() -> impl Iterator<Item = &'static str> {
    named(|needs| needs == Needs::XdpLifecycle)
}

/// The names of the tests of `TESTS` whose needs `keep` takes.
fn named(keep: impl Fn(Needs) -> bool) -> impl Iterator<Item = &'static str> {
    TESTS
        .iter()
        .filter(move |(_, needs)| keep(*needs))
        .map(|(name, _)| *name)
}

/// How many times longer the tests wait for anything in a VM than on the host.
const PATIENCE: u32 = 4;

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
    scope: Scope,
) -> anyhow::Result<()> {
    let release = resolve(version)?;
    let vm = Vm {
        image: install_kernel(&release)?,
        vng: virtme_ng(root)?,
        dir: root.join("target/kernel").join(&release),
        release,
    };
    let tests = test_executables(root, artifacts, scope)?;
    let mut env: Vec<(String, String)> = artifacts
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string_lossy().into_owned()))
        .collect();
    env.push(("VIP_OLD_BIN".into(), old_vip.display().to_string()));
    env.push(("CI".into(), std::env::var("CI").unwrap_or_default()));
    env.push(("RUST_BACKTRACE".into(), "1".into()));
    // Emulation runs the tests 10 to 15 times slower than the host, and a
    // slow CPU (2 GHz Zen) slower still: every wait of the tests' lasts
    // this many times longer (tests/src/wait.rs).
    env.push(("VIP_TEST_PATIENCE".into(), PATIENCE.to_string()));
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
    if scope == Scope::WithoutXdpLifecycle {
        println!(
            "xtask: left out on this kernel, as asked: {} (the XDP-only lifecycle tests)",
            xdp_lifecycle().collect::<Vec<_>>().join(", ")
        );
    }
    report(&vm.release, &output, tests.len(), started.elapsed(), status).with_context(|| {
        format!(
            "the whole console is in {}",
            vm.dir.join("console*.log").display()
        )
    })
}

/// The test executables of `scope`, built (not run) for the host.
fn test_executables(
    root: &Path,
    artifacts: &Artifacts,
    scope: Scope,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    // The same packages as the host run's `cargo test --release`, so that
    // their features unify as there and nothing is compiled twice (with
    // `-p vip-tests` alone, vip-userspace and the tests compiled again, 74 s
    // on a 2 GHz Zen). It builds every test binary, as the host run does.
    let mut cargo = crate::command::cargo(root);
    cargo
        .args(["test", "--release", "--no-run", "--message-format=json"])
        .envs(artifacts.env());
    let wanted: Vec<&str> = scope.tests().collect();
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
        if wanted.contains(&name) {
            found.push((name.to_string(), PathBuf::from(executable)));
        }
    }
    found.sort();
    if found.len() != wanted.len() {
        bail!("built {} of the {} kernel tests", found.len(), wanted.len());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test may be left out of a kernel's VM only while it attaches
    /// nothing but XDP: a TC case in one of its files would go untested on
    /// TCX there.
    #[test]
    fn the_xdp_lifecycle_tests_never_attach_tc() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        for name in xdp_lifecycle() {
            let source = std::fs::read_to_string(dir.join(format!("{name}.rs")))
                .unwrap_or_else(|e| panic!("reading {name}.rs: {e}"));
            let words = source
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(str::to_ascii_lowercase);
            for word in words {
                assert!(
                    !matches!(word.as_str(), "tc" | "tcx" | "clsact"),
                    "{name}.rs names {word}: it needs every kernel"
                );
            }
        }
        assert_eq!(xdp_lifecycle().count(), 7);
        assert_eq!(Scope::WithoutXdpLifecycle.tests().count(), 12);
        assert_eq!(Scope::All.tests().count(), TESTS.len());
    }
}
