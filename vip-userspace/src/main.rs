//! The `vip` command: daemon (`vip run`) and CLI.

mod commands;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use vip_userspace::{datapath::pin, stats::StatsError, ConfigError, PinError};

/// vip: accept, count and police traffic to virtual CIDRs with XDP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Directory on bpffs where the daemon pins its maps and `vip stats` reads them.
    #[arg(long, global = true, env = "VIP_PIN_DIR", default_value = pin::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, attach the datapath and count until SIGINT or SIGTERM.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file without changing anything.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print per-range and per-VIP counters of the running datapath.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove pins left behind by a vip that was killed.
    Down,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => commands::run(&config, &cli.pin_dir),
        Command::Check { config } => commands::check(&config),
        Command::Stats { json } => commands::stats(&cli.pin_dir, json),
        Command::Down => commands::down(&cli.pin_dir),
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
        cause.is::<ConfigError>() || pin_error.is_some_and(PinError::is_user_error)
    })
}
