//! `vip plan`, `vip apply` and `vip down`: the host state without the datapath.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use vip_userspace::{
    datapath::pin,
    errors::Blame,
    host::{
        self,
        apply::revert,
        items,
        plan::{self, planned},
        Netlink, StateFile,
    },
    layout::{LayoutFile, PendingLayoutFile},
    preflight::{self, Purpose},
    run_lock::{RunLock, RunLockError},
    status::StatusFile,
};

use super::{runtime, Failure};

/// How long `vip down` waits for a daemon to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
#[error("vip run (pid {pid}) did not stop within {} s", STOP_TIMEOUT.as_secs())]
pub struct DidNotStop {
    pid: u32,
}

impl Blame for DidNotStop {
    fn is_user_error(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
#[error("vip run (pid {pid}) owns {}: change its config and run `vip reload`", path.display())]
pub struct DaemonOwnsState {
    pid: u32,
    path: std::path::PathBuf,
}

impl Blame for DaemonOwnsState {
    fn is_user_error(&self) -> bool {
        true
    }
}

pub fn plan(config_path: &Path, run_dir: &Path) -> Result<(), Failure> {
    let config = preflight::config(config_path, Purpose::Host)?;
    let state = StateFile::in_dir(run_dir).load()?.unwrap_or_default();
    let steps =
        runtime()?.block_on(async { planned(&config, &state).await.map(|(_, steps)| steps) })?;
    print!("{}", plan::render(&steps, &items::covered(&config)));
    Ok(())
}

pub fn apply(config_path: &Path, run_dir: &Path) -> Result<(), Failure> {
    let config = preflight::config(config_path, Purpose::Host)?;
    let file = StateFile::in_dir(run_dir);
    if let Some(pid) = file.load()?.and_then(|s| s.live_daemon()) {
        return Err(DaemonOwnsState {
            pid,
            path: file.path().to_path_buf(),
        }
        .into());
    }
    let _lock = RunLock::take(run_dir)?;
    runtime()?.block_on(async {
        let mut state = file.load()?.unwrap_or_default();
        let (netlink, steps) = planned(&config, &state).await?;
        let made = host::apply::apply(&netlink, &steps, &mut state, &file).await?;
        let waiting = steps
            .iter()
            .filter(|s| s.status == plan::Status::Absent)
            .count();
        let in_place = steps.len() - made - waiting;
        let waiting = match waiting {
            0 => String::new(),
            n => format!(", {n} waiting for their interface"),
        };
        println!(
            "applied {made} change(s), {in_place} already in place{waiting}; recorded in {}",
            file.path().display()
        );
        Ok::<_, Failure>(())
    })
}

/// Stops a running daemon (which reverts what it owns, unless it runs with
/// `--keep-datapath`), reverts what the state file still records, and removes
/// the pins, which detaches a datapath no process holds. A second run finds
/// nothing to do.
pub fn down(pin_dir: &Path, run_dir: &Path) -> Result<(), Failure> {
    let file = StateFile::in_dir(run_dir);
    let mut did = false;
    // A starting daemon holds the lock before it records its pid: wait for
    // the pid, then stop it like any other.
    let deadline = Instant::now() + STOP_TIMEOUT;
    let _lock = loop {
        if let Some(pid) = file.load()?.and_then(|s| s.live_daemon()) {
            stop_daemon(pid, run_dir, &file)?;
            did = true;
        }
        match RunLock::take(run_dir) {
            Ok(lock) => break lock,
            Err(RunLockError::Held { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    };
    // A killed daemon's (or a --keep-datapath one's) announcement goes
    // before its host state.
    if super::drain::stand_down_orphan(run_dir)? {
        did = true;
    }
    // Whatever a killed daemon or `vip apply` left behind.
    if let Some(mut state) = file.load()? {
        let changes = state.owned.len();
        runtime()?.block_on(async {
            let netlink = Netlink::connect()?;
            revert(&netlink, &mut state, &file).await?;
            Ok::<_, Failure>(())
        })?;
        file.remove()?;
        println!(
            "reverted {changes} change(s) recorded in {}",
            file.path().display()
        );
        did = true;
    }
    if pin::remove(pin_dir)? {
        println!("removed pins in {} (which detaches)", pin_dir.display());
        did = true;
    }
    LayoutFile::in_dir(run_dir).remove()?;
    PendingLayoutFile::in_dir(run_dir).remove()?;
    StatusFile::in_dir(run_dir).remove()?;
    // Drains end with vip on this host.
    vip_userspace::bgp::DrainFile::in_dir(run_dir).remove()?;
    if !did {
        println!(
            "nothing to do: no state in {} and no pins in {}",
            run_dir.display(),
            pin_dir.display()
        );
    }
    Ok(())
}

/// Sends the daemon `pid` SIGTERM and waits until it has exited, having
/// drained its announcements and reverted (or kept, with --keep-datapath)
/// what it owns.
fn stop_daemon(pid: u32, run_dir: &Path, file: &StateFile) -> Result<(), Failure> {
    println!("stopping vip run (pid {pid})");
    // It drains its announcements before it lets the host state go.
    let drain = vip_userspace::bgp::SpeakerFile::in_dir(run_dir)
        .load()?
        .map_or(0, |r| u64::from(r.drain_seconds));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(drain);
    while host::state::alive(pid) {
        if Instant::now() > deadline {
            return Err(DidNotStop { pid }.into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if file.load()?.is_none() {
        println!("vip run (pid {pid}) stopped: it detached and reverted what it had changed");
    } else {
        println!(
            "vip run (pid {pid}) stopped and left its datapath (--keep-datapath): removing it"
        );
    }
    Ok(())
}
