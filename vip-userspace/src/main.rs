//! The `vip` command: daemon (`vip run`) and CLI.

mod commands;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use vip_userspace::{
    datapath::{pin, AdoptError},
    host::{self, HostError, SafetyError},
    stats::StatsError,
    ConfigError, PinError,
};

/// vip: accept, count and police traffic to virtual CIDRs with XDP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Directory on bpffs where the daemon pins its maps and `vip stats` reads them.
    #[arg(long, global = true, env = "VIP_PIN_DIR", default_value = pin::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,

    /// Directory of the state file that records what vip changed on the host.
    #[arg(long, global = true, env = "VIP_RUN_DIR", default_value = host::state::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the host state, attach the datapath, count and repair drift until
    /// SIGINT or SIGTERM; then detach and revert what it changed. A datapath an
    /// earlier `vip run` left pinned (killed, or stopped with --keep-datapath) is
    /// adopted: it never stopped counting.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// On SIGINT or SIGTERM, exit leaving the datapath attached and counting,
        /// its maps and links pinned and the host state in place, for the next
        /// `vip run` (e.g. an upgrade) to adopt; `vip down` removes it all.
        #[arg(long)]
        keep_datapath: bool,
    },
    /// Validate a config file without changing anything.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the changes `apply` would make, as ip and sysctl commands; change nothing.
    Plan {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Install the config's addresses, routes and sysctls (idempotent), recording
    /// what changed in the state file.
    Apply {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask the running `vip run` to re-read its config and apply the difference
    /// (ranges, allow lists, host state) without detaching (same as SIGHUP).
    Reload,
    /// Print per-range and per-VIP counters of the running datapath.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// A live table of packets, bits and drops per second by range and VIP,
        /// busiest first, refreshed every second; q, Esc or Ctrl-C quits.
        #[arg(long)]
        watch: bool,
    },
    /// Stop a running vip, revert exactly what the state file records (restoring
    /// sysctls) and remove the pins. Running it twice is a no-op.
    Down,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            keep_datapath,
        } => commands::run(&config, &cli.pin_dir, &cli.run_dir, keep_datapath),
        Command::Check { config } => commands::check(&config),
        Command::Plan { config } => commands::plan(&config),
        Command::Apply { config } => commands::apply(&config, &cli.run_dir),
        Command::Reload => commands::reload(&cli.run_dir),
        Command::Stats { watch: true, .. } => commands::watch(&cli.pin_dir),
        Command::Stats { json, .. } => commands::stats(&cli.pin_dir, &cli.run_dir, json),
        Command::Down => commands::down(&cli.pin_dir, &cli.run_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vip: error: {}", vip_userspace::error_chain(error.as_ref()));
            if is_user_error(&error) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Errors in what the operator asked for, as opposed to failures of the host:
/// they exit with status 2, and are all raised before anything is changed.
fn is_user_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let pin_error = match cause.downcast_ref::<StatsError>() {
            Some(StatsError::Pin(e)) => Some(e),
            _ => cause.downcast_ref::<PinError>(),
        };
        cause.is::<ConfigError>()
            || cause.is::<SafetyError>()
            || cause.is::<commands::AlreadyRunning>()
            || cause.is::<commands::NotRunning>()
            || cause.is::<commands::NotATerminal>()
            || matches!(
                cause.downcast_ref::<HostError>(),
                Some(HostError::Safety(_))
            )
            || pin_error.is_some_and(PinError::is_user_error)
            || cause
                .downcast_ref::<AdoptError>()
                .is_some_and(AdoptError::is_user_error)
            || cause.is::<vip_userspace::metrics::server::BindError>()
    })
}
