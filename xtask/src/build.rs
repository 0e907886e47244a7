//! Building the datapath object, the `vip` binary and the test-crate binaries.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::toolchain;

/// What a build produced; handed to tests, the demo and the bench through the environment.
pub struct Artifacts {
    pub ebpf_object: PathBuf,
    pub baseline_object: PathBuf,
    pub vip: PathBuf,
}

impl Artifacts {
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("VIP_EBPF_OBJ", self.ebpf_object.clone().into()),
            ("VIP_BASELINE_OBJ", self.baseline_object.clone().into()),
            ("VIP_BIN", self.vip.clone().into()),
        ]
    }
}

/// Variables an outer cargo or rustup may have set that must not leak into the
/// inner builds (they would pin the toolchain or the flags).
pub fn clean_env(command: &mut Command) {
    for var in [
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
    ] {
        command.env_remove(var);
    }
}

pub fn cargo(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(root);
    clean_env(&mut command);
    command
}

pub fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The toolchain, the eBPF objects and the release `vip` binary.
pub fn all(root: &Path) -> anyhow::Result<Artifacts> {
    toolchain::ensure_rust_src()?;
    let linker_dir = toolchain::bpf_linker_dir(root)?;
    let target_dir = root.join("target/bpfel-unknown-none/release");
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
        ])
        .env("PATH", path)
        // BTF makes the object self-describing (needed by aya for map layouts).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-C\x1fdebuginfo=2\x1f-C\x1flink-arg=--btf\x1f-C\x1ftarget-cpu=v3\x1f-C\x1flink-arg=--cpu-features=+allows-misaligned-mem-access\x1f-C\x1flink-arg=--llvm-args=-enable-tail-merge=false",
        );
    run(&mut ebpf, "building the eBPF datapath")?;
    let artifacts = Artifacts {
        ebpf_object: target_dir.join("vip-ebpf"),
        baseline_object: target_dir.join("vip-baseline"),
        vip: root.join("target/release/vip"),
    };
    let mut vip = cargo(root);
    vip.args(["build", "--release", "-p", "vip-userspace", "--bin", "vip"])
        .envs(artifacts.env());
    run(&mut vip, "building vip")?;
    Ok(artifacts)
}

/// Builds one binary of the tests crate (demo, bench) and returns its path.
pub fn tests_bin(root: &Path, name: &str, artifacts: &Artifacts) -> anyhow::Result<PathBuf> {
    package_bin(root, "vip-tests", name, artifacts)
}

/// Builds one more binary of vip-userspace (beside `vip`) and returns its path.
pub fn userspace_bin(root: &Path, name: &str, artifacts: &Artifacts) -> anyhow::Result<PathBuf> {
    package_bin(root, "vip-userspace", name, artifacts)
}

fn package_bin(
    root: &Path,
    package: &str,
    name: &str,
    artifacts: &Artifacts,
) -> anyhow::Result<PathBuf> {
    let mut build = cargo(root);
    build
        .args(["build", "--release", "-p", package, "--bin", name])
        .envs(artifacts.env());
    run(&mut build, &format!("building {name}"))?;
    Ok(root.join("target/release").join(name))
}
