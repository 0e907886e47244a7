//! `vip run` and `vip reload`: the daemon itself is [`vip_userspace::daemon`].

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use vip_userspace::{
    daemon::{Daemon, Options, Stop},
    errors::Blame,
    host::{state::alive, StateFile},
    status::{ReloadOutcome, ReloadResult, Reloads, StatusFile},
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

/// How long `vip reload` waits for the daemon to say how the reload went:
/// loading the programs again (a reload that changes the attachments) takes
/// seconds on a slow machine.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// `vip reload`: asks the running daemon to reload its config, waits for
/// the outcome it records in the status file, and prints it; a refused or
/// half-done reload is a failure (exit 2 for a config the daemon refused).
pub fn reload(run_dir: &Path) -> Result<(), Failure> {
    let pid = running_daemon(run_dir, "reload")?;
    let status = StatusFile::in_dir(run_dir);
    let reloads =
        || -> Result<Option<Reloads>, Failure> { Ok(status.load()?.and_then(|s| s.reloads)) };
    let before = reloads()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let Some(before) = before else {
        println!("asked vip run (pid {pid}) to reload; it does not report reloads (an older vip): its log says how it went");
        return Ok(());
    };
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        if let Some(now) = reloads()?.filter(|r| r.count > before.count) {
            return report(now.last);
        }
        if !alive(pid) {
            return Err(ReloadUnreported::Exited { pid }.into());
        }
        if Instant::now() > deadline {
            return Err(ReloadUnreported::Timeout {
                pid,
                waited: RELOAD_WAIT,
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints a reload's outcome; a failure unless it was done.
fn report(outcome: Option<ReloadOutcome>) -> Result<(), Failure> {
    let outcome = outcome.ok_or(ReloadUnreported::NoOutcome)?;
    if outcome.result == ReloadResult::Reloaded {
        println!("{}", outcome.message);
        return Ok(());
    }
    Err(Failure {
        user: outcome.user_error,
        error: outcome.message.into(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadUnreported {
    #[error("vip run (pid {pid}) exited before it reported the reload")]
    Exited { pid: u32 },
    #[error("vip run (pid {pid}) did not report the reload within {} s; its log may say more", waited.as_secs())]
    Timeout { pid: u32, waited: Duration },
    #[error("vip run recorded a reload without its outcome")]
    NoOutcome,
}

impl Blame for ReloadUnreported {
    fn is_user_error(&self) -> bool {
        false
    }
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
