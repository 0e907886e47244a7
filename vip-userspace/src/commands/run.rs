//! `vip run` and `vip reload`: the daemon itself is [`vip_userspace::daemon`].

use std::path::{Path, PathBuf};

use vip_userspace::{
    daemon::{Daemon, Options, Stop},
    errors::Blame,
    host::StateFile,
};

use super::{runtime, Failure};

pub fn run(
    config_path: &Path,
    pin_dir: &Path,
    run_dir: &Path,
    keep_datapath: bool,
) -> Result<(), Failure> {
    let options = Options {
        config_path: config_path.to_path_buf(),
        pin_dir: pin_dir.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
        keep_datapath,
    };
    runtime()?.block_on(async {
        let mut daemon = Daemon::start(options).await?;
        let served = daemon.serve().await;
        // A clean stop with --keep-datapath leaves the datapath attached and
        // counting, pinned, and the host state in place; a failure cleans up.
        let stop = if keep_datapath && served.is_ok() {
            Stop::KeepDatapath
        } else {
            Stop::Revert
        };
        daemon.shutdown(stop).await?;
        served?;
        Ok(())
    })
}

/// `vip reload`: asks the running daemon to reload its config.
pub fn reload(run_dir: &Path) -> Result<(), Failure> {
    let pid = running_daemon(run_dir, "reload")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    println!("asked vip run (pid {pid}) to reload; its log says how it went");
    Ok(())
}

/// The pid of the `vip run` that owns `run_dir`; `to` names what the caller
/// wanted of it.
pub fn running_daemon(run_dir: &Path, to: &'static str) -> Result<u32, Failure> {
    let file = StateFile::in_dir(run_dir);
    let pid = file.load()?.and_then(|s| s.live_daemon());
    Ok(pid.ok_or_else(|| NotRunning {
        path: file.path().to_path_buf(),
        to,
    })?)
}

#[derive(Debug, thiserror::Error)]
#[error("no vip run owns {}: nothing to {to}", path.display())]
pub struct NotRunning {
    pub path: PathBuf,
    pub to: &'static str,
}

impl Blame for NotRunning {
    fn is_user_error(&self) -> bool {
        true
    }
}
