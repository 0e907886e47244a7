//! The `vip` command: daemon (`vip run`) and CLI.

mod commands;

use std::process::ExitCode;

use clap::Parser;
use vip_userspace::cli::{Cli, Command};

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
        Command::Plan { config } => commands::plan(&config, &cli.run_dir),
        Command::Apply { config } => commands::apply(&config, &cli.run_dir),
        Command::Reload => commands::reload(&cli.run_dir),
        Command::Stats { watch: true, .. } => commands::watch(&cli.pin_dir, &cli.run_dir),
        Command::Stats { json, .. } => commands::stats(&cli.pin_dir, &cli.run_dir, json),
        Command::Down => commands::down(&cli.pin_dir, &cli.run_dir),
        Command::Drain { ranges, all } => commands::drain(&cli.run_dir, &ranges, all, true),
        Command::Undrain { ranges, all } => commands::drain(&cli.run_dir, &ranges, all, false),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!(
                "vip: error: {}",
                vip_userspace::errors::chain(failure.error.as_ref())
            );
            // The operator's errors are all raised before anything changes.
            ExitCode::from(if failure.user { 2 } else { 1 })
        }
    }
}
