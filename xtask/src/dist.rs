//! `cargo xtask dist`: the Debian package, made by cargo-deb (installed under
//! target/ on first use) from `[package.metadata.deb]` in vip-userspace's manifest.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::{
    build::{self, Artifacts},
    command::{cargo, run},
};

const CARGO_DEB_VERSION: &str = "3.8.0";

/// Builds the package into target/dist/ and returns its path.
pub fn deb(root: &Path, artifacts: &Artifacts) -> anyhow::Result<PathBuf> {
    let cargo_deb = cargo_deb(root)?;
    let out = root.join("target/dist");
    // The man pages and completions the manifest's assets name.
    let assets = root.join("target/release/vip-assets.out");
    if assets.exists() {
        std::fs::remove_dir_all(&assets)
            .with_context(|| format!("removing {}", assets.display()))?;
    }
    let generator = build::workspace_bin(root, "vip-assets", artifacts)?;
    run(
        Command::new(&generator).arg("--out").arg(&assets),
        "vip-assets",
    )?;
    // Debian ships man pages gzipped; cargo-deb leaves files under target/ as they are.
    let man = assets.join("man");
    let pages: Vec<PathBuf> = std::fs::read_dir(&man)
        .with_context(|| format!("reading {}", man.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    run(Command::new("gzip").arg("-9n").args(&pages), "gzip")?;
    let version = env!("CARGO_PKG_VERSION");
    let deb = out.join(format!("vip_{version}-1_amd64.deb"));
    let _ = std::fs::remove_file(&deb);
    let mut package = cargo(root);
    package
        .env("PATH", path_with(cargo_deb.parent().expect("bin dir"))?)
        .args(["deb", "--no-build", "-p", "vip-userspace", "--output"])
        .arg(&deb);
    run(&mut package, "cargo deb")?;
    if !deb.exists() {
        bail!("cargo deb succeeded but {} is not there", deb.display());
    }
    Ok(deb)
}

/// `cargo-deb`, installed into target/tools/ the first time.
fn cargo_deb(root: &Path) -> anyhow::Result<PathBuf> {
    let install_root = root.join(format!("target/tools/cargo-deb-{CARGO_DEB_VERSION}"));
    let bin = install_root.join("bin/cargo-deb");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} under target/tools");
    let mut cargo = cargo(root);
    cargo
        .args([
            "install",
            &format!("cargo-deb@{CARGO_DEB_VERSION}"),
            "--locked",
            "--root",
        ])
        .arg(&install_root)
        .env("CARGO_TARGET_DIR", root.join("target/tools/build"));
    run(&mut cargo, "cargo install cargo-deb")?;
    Ok(bin)
}

fn path_with(dir: &Path) -> anyhow::Result<std::ffi::OsString> {
    Ok(std::env::join_paths(
        std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )?)
}
