//! `cargo xtask`: build, run, demo, test and bench vip.

mod build;
mod command;
mod dist;
mod kernel;
mod system;
mod toolchain;
mod upgrade_base;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run, demo, test and bench vip")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain if needed, build the datapath and the `vip` binary.
    Build,
    /// Build, then run `vip ARGS` (through `sudo -E` when not root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run the demo: a throwaway two-namespace lab with an embedded config.
    Demo,
    /// Install the system packages the tests need (as root, with apt), build,
    /// package, then run every test (as root, or the root-only tests skip).
    Test {
        /// Run the kernel-dependent tests in a VM booted with this Debian kernel
        /// instead (`6.1`, `6.12`, or a release such as `6.1.0-47-amd64`).
        #[arg(long, value_name = "VERSION")]
        kernel: Option<String>,
        /// With `--kernel`: leave out the XDP-only lifecycle tests (reloads,
        /// crashes, the host contract, an interface created again, the sparse
        /// table's upgrade, the upgrades and restarts of interfaces in XDP
        /// modes), which ask nothing of the kernel that 6.1 lacks; CI runs
        /// 6.12 so, to stay within its time.
        #[arg(long, requires = "kernel")]
        without_xdp_lifecycle: bool,
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then measure vip_xdp against an empty XDP program under
    /// BPF_PROG_TEST_RUN; with `--e2e`, run the end-to-end lab instead (vip beside a
    /// bare XDP program, nftables, iptables and the loopback trick, through veth).
    Bench {
        /// Run the end-to-end lab (`vip-e2e`) instead of `vip-bench`.
        #[arg(long)]
        e2e: bool,
        /// Extra arguments for the bench binary (see `--help` there), with or
        /// without a `--` before them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the Debian package (cargo-deb): the binary, the systemd unit, an
    /// example /etc/vip/vip.toml, man pages and shell completions.
    Dist,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Build => {
            build::all(&root)?;
        }
        Cmd::Run { args } => {
            let artifacts = build::all(&root)?;
            as_root(&artifacts.vip, &args, &artifacts)?;
        }
        Cmd::Demo => {
            system::ensure(system::DEMO)?;
            let artifacts = build::all(&root)?;
            let demo = build::workspace_bin(&root, "vip-demo", &artifacts)?;
            as_root(&demo, &[], &artifacts)?;
        }
        Cmd::Test {
            kernel: Some(version),
            without_xdp_lifecycle,
            ..
        } => {
            system::ensure(system::TEST)?;
            system::ensure(system::KERNEL_VM)?;
            let artifacts = build::with_bench_object(&root)?;
            let old_vip = upgrade_base::vip(&root)?;
            let scope = if without_xdp_lifecycle {
                kernel::Scope::WithoutXdpLifecycle
            } else {
                kernel::Scope::All
            };
            kernel::test(&root, &version, &artifacts, &old_vip, scope)?;
        }
        Cmd::Test {
            kernel: None, args, ..
        } => {
            system::ensure(system::TEST)?;
            let artifacts = build::with_bench_object(&root)?;
            let deb = dist::deb(&root, &artifacts)?;
            let old_vip = upgrade_base::vip(&root)?;
            let mut cargo = command::cargo(&root);
            cargo
                .args(["test", "--release"])
                .args(&args)
                .envs(artifacts.env())
                .env("VIP_DEB", deb)
                .env("VIP_OLD_BIN", old_vip);
            command::run(&mut cargo, "cargo test")?;
        }
        Cmd::Bench { e2e, args } => {
            let (e2e, args) = bench_arguments(e2e, args);
            if e2e {
                system::ensure(system::BENCH_E2E)?;
            }
            let artifacts = build::with_bench_object(&root)?;
            let binary = if e2e { "vip-e2e" } else { "vip-bench" };
            let bench = build::workspace_bin(&root, binary, &artifacts)?;
            as_root(&bench, &args, &artifacts)?;
        }
        Cmd::Dist => {
            system::ensure(system::DIST)?;
            let artifacts = build::all(&root)?;
            let deb = dist::deb(&root, &artifacts)?;
            println!("{}", deb.display());
        }
    }
    Ok(())
}

/// Whether the end-to-end lab is asked for, and the bench binary's own
/// arguments. `--e2e` may also come after other arguments or after a `--`
/// (`cargo xtask bench -- --e2e`), where clap hands it on as the binary's; and
/// a `--` after `--e2e` reaches the binary as it is, where it would end the
/// binary's options, so it goes too.
fn bench_arguments(e2e: bool, args: Vec<String>) -> (bool, Vec<String>) {
    let e2e = e2e || args.iter().any(|a| a == "--e2e");
    let args = args
        .into_iter()
        .filter(|a| a != "--e2e" && a != "--")
        .collect();
    (e2e, args)
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Runs `program ARGS`, through `sudo -E` when not root: attaching XDP needs it.
fn as_root(
    program: &std::path::Path,
    args: &[String],
    artifacts: &build::Artifacts,
) -> anyhow::Result<()> {
    let mut command = if system::is_root() {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(program);
        sudo
    };
    command.args(args).envs(artifacts.env());
    let status = command
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    if !status.success() {
        bail!("{} exited with {status}", program.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(line: &[&str]) -> (bool, Vec<String>) {
        let cli = Cli::try_parse_from(line).expect("a valid command line");
        let Cmd::Bench { e2e, args } = cli.command else {
            panic!("not the bench command: {line:?}");
        };
        bench_arguments(e2e, args)
    }

    #[test]
    fn every_spelling_of_the_bench_arguments_reaches_the_binary_alike() {
        let e2e_update = (true, vec!["--update".to_string(), "B.md".to_string()]);
        for line in [
            &["xtask", "bench", "--e2e", "--update", "B.md"][..],
            &["xtask", "bench", "--e2e", "--", "--update", "B.md"],
            &["xtask", "bench", "--", "--e2e", "--update", "B.md"],
            &["xtask", "bench", "--update", "B.md", "--e2e"],
        ] {
            assert_eq!(bench(line), e2e_update, "{line:?}");
        }
        let bench_update = (false, vec!["--update".to_string(), "B.md".to_string()]);
        for line in [
            &["xtask", "bench", "--", "--update", "B.md"][..],
            &["xtask", "bench", "--update", "B.md"],
        ] {
            assert_eq!(bench(line), bench_update, "{line:?}");
        }
    }
}
