//! Running the tools xtask drives: cargo, apt, rustup.

use std::{path::Path, process::Command};

use anyhow::{bail, Context};

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
