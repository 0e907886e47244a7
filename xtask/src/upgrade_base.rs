//! The older `vip` the upgrade tests start from: built once from a fixed
//! commit of this repository, in a git worktree under `target/`, and cached.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::command::{cargo, run};

/// The last commit before the sparse table was split into hot and cold
/// halves (issue 19): its datapath has layout version 11, which this tree
/// upgrades from.
pub const COMMIT: &str = "ff96922ebe1b457b23cb358981123f7b5e93df7e";

/// The older binary, built if it is not cached yet.
pub fn vip(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target/upgrade-from").join(&COMMIT[..12]);
    let bin = dir.join("target/release/vip");
    if bin.exists() {
        return Ok(bin);
    }
    if !dir.join(".git").exists() {
        let known = std::process::Command::new("git")
            .args(["cat-file", "-e", &format!("{COMMIT}^{{commit}}")])
            .current_dir(root)
            .status()
            .context("running git")?;
        if !known.success() {
            bail!("commit {COMMIT} (the upgrade tests' older vip) is not in this clone: clone with its history (no --depth)");
        }
        let _ = std::fs::remove_dir_all(&dir);
        run(
            std::process::Command::new("git")
                .args(["worktree", "add", "--detach", "--force"])
                .arg(&dir)
                .arg(COMMIT)
                .current_dir(root),
            "checking out the older vip",
        )?;
    }
    // Its xtask builds bpf-linker where ours already did; lend it ours.
    let linker = root.join("target/bpf-linker");
    let theirs = dir.join("target/bpf-linker");
    if linker.exists() && !theirs.exists() {
        std::fs::create_dir_all(dir.join("target"))?;
        run(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&linker)
                .arg(&theirs),
            "lending bpf-linker to the older vip's build",
        )?;
    }
    seed_dependencies(root, &dir)?;
    eprintln!(
        "xtask: building the older vip ({}) for the upgrade tests",
        &COMMIT[..12]
    );
    run(
        cargo(&dir).args(["xtask", "build"]),
        "building the older vip",
    )?;
    if !bin.exists() {
        bail!("building the older vip left no {}", bin.display());
    }
    Ok(bin)
}

/// The build directories whose compiled dependencies the older tree reuses.
const PROFILES: &[&str] = &["release", "debug", "bpfel-unknown-none/release"];

/// Copies this tree's compiled dependencies into the older tree's target
/// directory before its first build. The two lock files differ by one crate,
/// so cargo finds most of them fresh instead of compiling them again (on a
/// 2 GHz Zen the older vip's build took 224 s of CI's 784 s of building, and
/// 64 s so); what differs, it rebuilds. Copied, not linked: cargo rewrites
/// files in place. Once per cache: on a machine that built the tests first,
/// their binaries are copied too (about a gigabyte).
fn seed_dependencies(root: &Path, dir: &Path) -> anyhow::Result<()> {
    for profile in PROFILES {
        let ours = root.join("target").join(profile);
        let theirs = dir.join("target").join(profile);
        if !ours.exists() || theirs.exists() {
            continue;
        }
        std::fs::create_dir_all(&theirs)?;
        for part in ["deps", "build", ".fingerprint"] {
            if !ours.join(part).exists() {
                continue;
            }
            run(
                std::process::Command::new("cp")
                    .args(["-a", "--reflink=auto"])
                    .arg(ours.join(part))
                    .arg(&theirs),
                "copying compiled dependencies to the older vip's build",
            )?;
        }
    }
    Ok(())
}
