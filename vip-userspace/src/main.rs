//! The `vip` command: daemon (`vip run`) and CLI.

mod commands;

use std::process::ExitCode;

use clap::Parser;
use vip_userspace::{
    cli::{Cli, Command},
    stats::Selection,
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
        Command::Plan { config } => commands::plan(&config, &cli.run_dir),
        Command::Apply { config } => commands::apply(&config, &cli.run_dir),
        Command::Reload => commands::reload(&cli.run_dir),
        Command::Stats {
            ranges,
            top,
            json,
            watch,
        } => {
            let selection = Selection {
                ranges,
                top: top.map(|n| n as usize),
            };
            if watch {
                commands::watch(&cli.pin_dir, &cli.run_dir, &selection)
            } else {
                commands::stats(&cli.pin_dir, &cli.run_dir, &selection, json)
            }
        }
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
