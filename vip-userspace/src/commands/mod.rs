//! One module per group of subcommands.

mod host;
mod run;
mod stats;
mod watch;

pub use host::{apply, down, plan};
pub use run::{reload, run, AlreadyRunning, NotRunning};
pub use stats::stats;
pub use watch::{watch, NotATerminal};

use anyhow::Context;

/// vip's async work (netlink, signals, timers) runs on one thread.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Whether a process with this pid exists and has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

pub fn check(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = vip_userspace::Config::load(config_path)?;
    config.check_host()?;
    println!(
        "{}: ok ({} ranges, {} routes, {} interfaces)",
        config_path.display(),
        config.ranges.len(),
        config.routes.len(),
        config.interfaces.len()
    );
    Ok(())
}
