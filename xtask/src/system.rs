//! The Debian packages a task needs on the host, installed with apt when missing.
//!
//! This is the only list: `.ci/run` relies on it, so a green CI proves that the
//! README's commands set a fresh machine up by themselves.

use std::{path::Path, process::Command};

use anyhow::{bail, Context};

use crate::command::run;

/// A command a task runs, and the Debian package that provides it.
#[derive(Clone, Copy)]
pub struct Need {
    pub command: &'static str,
    pub package: &'static str,
}

const fn need(command: &'static str, package: &'static str) -> Need {
    Need { command, package }
}

/// Network namespaces and veth pairs (every lab).
const LAB: &[Need] = &[need("ip", "iproute2")];

/// What the test suite runs besides `vip`.
pub const TEST: &[Need] = &[
    need("ip", "iproute2"),
    need("nft", "nftables"),
    need("iptables", "iptables"),
    // The exporter test scrapes with a real Prometheus and lints with promtool.
    need("prometheus", "prometheus"),
    need("promtool", "prometheus"),
    need("systemd-analyze", "systemd"),
    // `vip stats --watch` is driven in a terminal.
    need("tmux", "tmux"),
    // The capability test bounds the daemon as the shipped unit does.
    need("setpriv", "util-linux"),
    // The package test unpacks the .deb.
    need("dpkg-deb", "dpkg"),
    // The anycast lab: vip drives BIRD on the servers; the router runs FRR.
    need("bird", "bird2"),
    need("birdc", "bird2"),
    need("vtysh", "frr"),
];

pub const DEMO: &[Need] = LAB;

/// The end-to-end bench compares vip with nftables, iptables and the loopback
/// trick, and its per-VIP counting with an ipset and an nftables set.
pub const BENCH_E2E: &[Need] = &[
    need("ip", "iproute2"),
    need("nft", "nftables"),
    need("iptables", "iptables"),
    need("ip6tables", "iptables"),
    need("ipset", "ipset"),
];

/// `cargo xtask test --kernel`: qemu boots the kernel, virtme-ng's init needs
/// a static busybox (virtme-ng itself comes from PyPI, see kernel/install.rs).
pub const KERNEL_VM: &[Need] = &[
    need("qemu-system-x86_64", "qemu-system-x86"),
    need("busybox", "busybox-static"),
];

/// `cargo xtask dist` checks the package it built.
pub const DIST: &[Need] = &[need("dpkg-deb", "dpkg")];

/// Installs the packages behind any missing command: with apt as root, else stops
/// with the one command to run. Called before anything is built.
pub fn ensure(needs: &[Need]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|n| !on_path(n.command))
        .map(|n| n.package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() || !on_path("apt-get") {
        bail!(
            "missing system packages; run: sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    eprintln!("xtask: installing {list} with apt");
    run(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    let installed = {
        // The tests start their own BIRD and FRR inside namespaces; the host's
        // own must not start (or be enabled) because a test needed the package.
        let _no_start = NoServiceStarts::new()?;
        run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing),
            &format!("apt-get install {list}"),
        )
    };
    installed?;
    for unit in HOST_SERVICES
        .iter()
        .filter(|(package, _)| missing.contains(package))
        .map(|(_, unit)| *unit)
    {
        if on_path("systemctl") {
            // Not booted with systemd (a container): nothing to disable.
            let _ = Command::new("systemctl")
                .args(["disable", "--quiet", unit])
                .status();
        }
    }
    if let Some(still) = needs.iter().find(|n| !on_path(n.command)) {
        bail!(
            "{} installed, but `{}` is still not found",
            still.package,
            still.command
        );
    }
    Ok(())
}

/// Packages whose postinst would start and enable a service on the host.
const HOST_SERVICES: &[(&str, &str)] = &[("bird2", "bird.service"), ("frr", "frr.service")];

/// Debian's policy-rc.d, denying every service start, while it lives (only
/// where none exists already).
struct NoServiceStarts {
    created: bool,
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl NoServiceStarts {
    fn new() -> anyhow::Result<NoServiceStarts> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(NoServiceStarts { created: false });
        }
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# xtask: no service starts while it installs packages\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {POLICY_RC_D}"))?;
        Ok(NoServiceStarts { created: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// Whether `command` is on PATH or in an sbin directory (a non-root PATH often
/// lacks those, where iproute2 and nftables put theirs).
fn on_path(command: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .any(|dir| is_executable(&dir.join(command)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}
