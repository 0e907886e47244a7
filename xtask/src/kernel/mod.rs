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
use vm::{TestBinary, Vm, DONE};

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
    (
        "interfaces_restart",
        Needs::TcIn(&[
            "a_reload_attaches_and_detaches_what_the_config_changes",
            "a_start_after_one_killed_while_leaving_tc_attaches_again",
        ]),
    ),
    ("interface_recreated", Needs::XdpLifecycle),
    ("start_crash", Needs::XdpLifecycle),
    ("reload", Needs::XdpLifecycle),
    ("reload_vouching", Needs::XdpLifecycle),
    ("reload_crash", Needs::XdpLifecycle),
    ("host_contract", Needs::XdpLifecycle),
    (
        "upgrade",
        Needs::TcIn(&["an_upgrade_in_tc_mode_loses_nothing"]),
    ),
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
    /// `XdpLifecycle` but for the tests named, which attach TC (TCX from 6.6,
    /// a clsact filter before) and so need every kernel.
    TcIn(&'static [&'static str]),
}

/// Which of `TESTS` a VM runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    /// All but the `Needs::XdpLifecycle` ones.
    WithoutXdpLifecycle,
}

impl Scope {
    /// The test binaries of `TESTS` this scope runs, each with the only tests
    /// of it to run (every test when empty).
    fn tests(self) -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
        TESTS
            .iter()
            .filter_map(move |&(name, needs)| match (self, needs) {
                (Scope::All, _) | (_, Needs::EveryKernel) => Some((name, &[][..])),
                (Scope::WithoutXdpLifecycle, Needs::TcIn(only)) => Some((name, only)),
                (Scope::WithoutXdpLifecycle, Needs::XdpLifecycle) => None,
            })
    }
}

/// What `Scope::WithoutXdpLifecycle` leaves out, for its closing line: whole
/// binaries, and the binaries of which it runs only the TC tests.
fn xdp_lifecycle() -> (Vec<&'static str>, Vec<&'static str>) {
    let named = |keep: fn(Needs) -> bool| {
        TESTS
            .iter()
            .filter(|(_, needs)| keep(*needs))
            .map(|(name, _)| *name)
            .collect()
    };
    (
        named(|needs| needs == Needs::XdpLifecycle),
        named(|needs| matches!(needs, Needs::TcIn(_))),
    )
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
        let (whole, partly) = xdp_lifecycle();
        println!(
            "xtask: left out on this kernel, as asked: {}, and all but the TC tests of {} (the XDP-only lifecycle tests)",
            whole.join(", "),
            partly.join(", ")
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
) -> anyhow::Result<Vec<TestBinary>> {
    // The same packages as the host run's `cargo test --release`, so that
    // their features unify as there and nothing is compiled twice (with
    // `-p vip-tests` alone, vip-userspace and the tests compiled again, 74 s
    // on a 2 GHz Zen). It builds every test binary, as the host run does.
    let mut cargo = crate::command::cargo(root);
    cargo
        .args(["test", "--release", "--no-run", "--message-format=json"])
        .envs(artifacts.env());
    let wanted: Vec<(&str, &'static [&'static str])> = scope.tests().collect();
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
        if let Some(&(_, only)) = wanted.iter().find(|(wanted, _)| *wanted == name) {
            found.push(TestBinary {
                name: name.to_string(),
                executable: PathBuf::from(executable),
                only,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    if found.len() != wanted.len() {
        bail!("built {} of the {} kernel tests", found.len(), wanted.len());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test may be left out of a kernel's VM only while it attaches
    /// nothing but XDP: a TC case in it would go untested on TCX there. A
    /// binary left out names no TC in any word of its file; of a binary run
    /// in part, each test left out names none in its own body, and each
    /// test kept exists.
    #[test]
    fn the_xdp_lifecycle_tests_never_attach_tc() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        for &(name, needs) in TESTS {
            let source = std::fs::read_to_string(dir.join(format!("{name}.rs")))
                .unwrap_or_else(|e| panic!("reading {name}.rs: {e}"));
            match needs {
                Needs::EveryKernel => {}
                Needs::XdpLifecycle => assert_names_no_tc(&format!("{name}.rs"), &source),
                Needs::TcIn(only) => {
                    let tests = test_bodies(&source);
                    for kept in only {
                        assert!(
                            tests.iter().any(|(test, _)| test == kept),
                            "{name}.rs has no test {kept}"
                        );
                    }
                    let left_out: Vec<_> = tests
                        .iter()
                        .filter(|(test, _)| !only.contains(test))
                        .collect();
                    assert!(!left_out.is_empty(), "{name}: nothing left out");
                    for (test, body) in left_out {
                        assert_names_no_tc(&format!("{name}.rs's {test}"), body);
                    }
                }
            }
        }
        assert_eq!(xdp_lifecycle().0.len(), 7);
        assert_eq!(xdp_lifecycle().1.len(), 2);
        assert_eq!(Scope::WithoutXdpLifecycle.tests().count(), 12);
        let partly: Vec<_> = Scope::WithoutXdpLifecycle
            .tests()
            .filter(|(_, only)| !only.is_empty())
            .collect();
        assert_eq!(
            partly,
            [
                (
                    "interfaces_restart",
                    &[
                        "a_reload_attaches_and_detaches_what_the_config_changes",
                        "a_start_after_one_killed_while_leaving_tc_attaches_again"
                    ][..]
                ),
                ("upgrade", &["an_upgrade_in_tc_mode_loses_nothing"][..])
            ]
        );
        assert!(Scope::All.tests().all(|(_, only)| only.is_empty()));
        assert_eq!(Scope::All.tests().count(), TESTS.len());
    }

    #[test]
    fn a_test_body_ends_at_its_closing_brace() {
        let source = "fn helper() {\n    tc();\n}\n\n#[test]\nfn a() {\n    native();\n}\n\n/// TC\n#[test]\nfn b() {\n    x(\"tc\");\n}\n";
        assert_eq!(
            test_bodies(source),
            [
                ("a", "fn a() {\n    native();\n}"),
                ("b", "fn b() {\n    x(\"tc\");\n}")
            ]
        );
    }

    /// Each `#[test]` function of a file (rustfmt's layout), by name, with
    /// its text up to its closing brace.
    fn test_bodies(source: &str) -> Vec<(&str, &str)> {
        source
            .match_indices("#[test]\nfn ")
            .map(|(at, marker)| {
                let text = &source[at + marker.len() - "fn ".len()..];
                let end = text.find("\n}\n").map_or(text.len(), |end| end + 2);
                let name = text["fn ".len()..].split('(').next().expect("a name");
                (name, &text[..end])
            })
            .collect()
    }

    fn assert_names_no_tc(what: &str, text: &str) {
        let words = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::to_ascii_lowercase);
        for word in words {
            assert!(
                !matches!(word.as_str(), "tc" | "tcx" | "clsact"),
                "{what} names {word}: it needs every kernel"
            );
        }
    }
}
