//! Building the datapath object, the `vip` binary and the workspace's other binaries.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    command::{cargo, run},
    toolchain,
};

/// What a build produced; handed to tests, the demo and the bench through the environment.
pub struct Artifacts {
    pub ebpf_object: PathBuf,
    pub baseline_object: PathBuf,
    /// The datapath with the bench-only programs ([`with_bench_object`]).
    pub bench_object: Option<PathBuf>,
    pub vip: PathBuf,
}

impl Artifacts {
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        let mut env = vec![
            ("VIP_EBPF_OBJ", self.ebpf_object.clone().into()),
            ("VIP_BASELINE_OBJ", self.baseline_object.clone().into()),
            ("VIP_BIN", self.vip.clone().into()),
        ];
        if let Some(bench) = &self.bench_object {
            env.push(("VIP_EBPF_BENCH_OBJ", bench.clone().into()));
        }
        env
    }
}

/// The toolchain, the eBPF objects and the release `vip` binary.
pub fn all(root: &Path) -> anyhow::Result<Artifacts> {
    toolchain::ensure_rust_src()?;
    let target_dir = ebpf(root, "target", &[])?;
    let artifacts = Artifacts {
        ebpf_object: target_dir.join("vip-ebpf"),
        baseline_object: target_dir.join("vip-baseline"),
        bench_object: None,
        vip: root.join("target/release/vip"),
    };
    workspace_bin(root, "vip", &artifacts)?;
    Ok(artifacts)
}

/// [`all`], and the datapath object with the bench-only programs (vip-ebpf's
/// `bench` feature), in a target directory of its own so that it never
/// replaces the object vip embeds.
pub fn with_bench_object(root: &Path) -> anyhow::Result<Artifacts> {
    let mut artifacts = all(root)?;
    let target_dir = ebpf(root, "target/ebpf-bench", &["--features", "bench"])?;
    artifacts.bench_object = Some(target_dir.join("vip-ebpf"));
    Ok(artifacts)
}

/// Builds vip-ebpf into `target_dir` (relative to `root`); returns the
/// directory that holds its objects.
fn ebpf(root: &Path, target_dir: &str, extra: &[&str]) -> anyhow::Result<PathBuf> {
    let linker_dir = toolchain::bpf_linker_dir(root)?;
    let path = std::env::join_paths(std::iter::once(linker_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let mut ebpf = cargo(root);
    ebpf.arg(format!("+{}", toolchain::EBPF_TOOLCHAIN))
        .args([
            "build",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--release",
            "-p",
            "vip-ebpf",
            "--target-dir",
            target_dir,
        ])
        .args(extra)
        .env("PATH", path)
        // BTF makes the object self-describing (needed by aya for map layouts).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-C\x1fdebuginfo=2\x1f-C\x1flink-arg=--btf\x1f-C\x1ftarget-cpu=v3\x1f-C\x1flink-arg=--cpu-features=+allows-misaligned-mem-access\x1f-C\x1flink-arg=--llvm-args=-enable-tail-merge=false",
        );
    ebpf.env("VIP_BUILD_ID", build_id(root));
    run(&mut ebpf, "building the eBPF datapath")?;
    Ok(root.join(target_dir).join("bpfel-unknown-none/release"))
}

/// What the datapath object records as its build: `git describe --always
/// --dirty` of the tree, or `unknown` outside a git checkout.
fn build_id(root: &Path) -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Builds one binary of the workspace (`vip`, vip-userspace's `vip-assets`,
/// the tests crate's demo and benches) and returns its path. Both packages
/// with binaries are selected, whichever holds it: their dependencies then
/// get the features the test build unifies them to, so that every binary
/// and the tests find them built (with one package alone, rustix, nix,
/// once_cell and the crates above them, vip-userspace among them, compiled
/// once per package set).
pub fn workspace_bin(root: &Path, name: &str, artifacts: &Artifacts) -> anyhow::Result<PathBuf> {
    let mut build = cargo(root);
    build
        .args([
            "build",
            "--release",
            "-p",
            "vip-userspace",
            "-p",
            "vip-tests",
            "--bin",
            name,
        ])
        .envs(artifacts.env());
    run(&mut build, &format!("building {name}"))?;
    Ok(root.join("target/release").join(name))
}
