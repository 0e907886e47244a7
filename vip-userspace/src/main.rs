//! The `vip` command: daemon (`vip run`) and CLI.

mod commands;

use std::process::ExitCode;

use clap::Parser;
use vip_userspace::{
    cli::{Cli, Command},
    datapath::AdoptError,
    host::{HostError, SafetyError},
    run_files::RunFileError,
    stats::StatsError,
    ConfigError, PinError,
};

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
        Command::Stats { watch: true, .. } => commands::watch(&cli.pin_dir, &cli.run_dir),
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
        // Transparent wrappers hide the wrapped error from the chain.
        let run_file_error = match cause.downcast_ref::<StatsError>() {
            Some(StatsError::Status(e)) => Some(e),
            _ => match cause.downcast_ref::<HostError>() {
                Some(HostError::State(e)) => Some(e),
                _ => cause.downcast_ref::<RunFileError>(),
            },
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
            || run_file_error.is_some_and(RunFileError::is_user_error)
    })
}
