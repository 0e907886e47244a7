//! What a VM run needs on the host: Debian's kernel package and virtme-ng.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::command::run;

/// virtme-ng, from PyPI into a venv under `target/`.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// The Debian kernel package for `version`: a series (`6.1`, `6.12`: the
/// newest point release apt offers) or a package's full release
/// (`6.1.0-47-amd64`). Returns the kernel release, as `uname -r` prints it.
pub(super) fn resolve(version: &str) -> anyhow::Result<String> {
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

pub(super) fn install_kernel(release: &str) -> anyhow::Result<PathBuf> {
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

pub(super) fn virtme_ng(root: &Path) -> anyhow::Result<PathBuf> {
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
pub(super) fn kvm_usable() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    hardware && Path::new("/dev/kvm").exists() && !Path::new("/sys/module/kvm_pvm").exists()
}
