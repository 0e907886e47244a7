//! `vip drain` and `vip undrain`: the operator takes ranges out of the
//! anycast announcement and puts them back; the running daemon acts on it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use vip_userspace::{
    bgp::{DrainFile, Phase, SpeakerFile},
    errors::Blame,
    status::StatusFile,
};

use super::{run::running_daemon, Failure};

/// Slack beyond `drain_seconds` for the daemon to act and withdraw.
const SLACK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("the running vip announces no range called {range:?} (announced: {known})")]
    UnknownRange { range: String, known: String },
    #[error("the running vip has no [bgp] section: nothing is announced")]
    NoBgp,
    #[error("give a range name or --all")]
    NothingNamed,
    #[error("range {range:?} was not withdrawn within {} s", waited.as_secs())]
    NotWithdrawn { range: String, waited: Duration },
}

impl Blame for DrainError {
    fn is_user_error(&self) -> bool {
        !matches!(self, DrainError::NotWithdrawn { .. })
    }
}

/// Drains (`drain = true`) or undrains `ranges` (or all), signals the daemon,
/// and for a drain waits until each range is withdrawn.
pub fn drain(run_dir: &Path, ranges: &[String], all: bool, drain: bool) -> Result<(), Failure> {
    if ranges.is_empty() && !all {
        return Err(DrainError::NothingNamed.into());
    }
    let pid = running_daemon(run_dir, if drain { "drain" } else { "undrain" })?;
    let record = SpeakerFile::in_dir(run_dir)
        .load()?
        .ok_or(DrainError::NoBgp)?;
    let status = StatusFile::in_dir(run_dir).load()?.unwrap_or_default();
    let known: Vec<&str> = status.bgp.iter().map(|s| s.range.as_str()).collect();
    if let Some(range) = ranges.iter().find(|r| !known.contains(&r.as_str())) {
        return Err(DrainError::UnknownRange {
            range: range.clone(),
            known: known.join(", "),
        }
        .into());
    }
    let file = DrainFile::in_dir(run_dir);
    let mut requests = file.load()?.unwrap_or_default();
    if drain {
        requests.all |= all;
        requests.ranges.extend(ranges.iter().cloned());
    } else if all {
        requests = Default::default();
    } else {
        for range in ranges {
            requests.ranges.remove(range);
        }
    }
    file.save(&requests)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )?;
    let named: Vec<String> = if all {
        known.iter().map(ToString::to_string).collect()
    } else {
        ranges.to_vec()
    };
    if !drain {
        if requests.all {
            println!(
                "note: every range stays drained (an earlier `vip drain --all`); `vip undrain --all` undoes it"
            );
        } else {
            println!(
                "undrained {}: announced again while healthy",
                named.join(", ")
            );
        }
        return Ok(());
    }
    if requests.all && !all {
        println!("note: every range is drained (an earlier `vip drain --all`)");
    }
    println!(
        "draining {}: graceful-shutdown community now, withdrawn after {} s",
        named.join(", "),
        record.drain_seconds
    );
    wait_withdrawn(
        &StatusFile::in_dir(run_dir),
        &named,
        Duration::from_secs(u64::from(record.drain_seconds)) + SLACK,
    )?;
    println!("withdrawn: {}", named.join(", "));
    Ok(())
}

fn wait_withdrawn(file: &StatusFile, ranges: &[String], limit: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + limit;
    loop {
        let status = file.load()?.unwrap_or_default();
        let pending = ranges.iter().find(|name| {
            status
                .bgp
                .iter()
                .any(|s| &s.range == *name && s.phase != Phase::Withdrawn)
        });
        let Some(range) = pending else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(DrainError::NotWithdrawn {
                range: range.clone(),
                waited: limit,
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What `vip down` does about the announcement of a daemon that is gone
/// ([`vip_userspace::bgp::orphan`]). True when there was a speaker to stop.
pub fn stand_down_orphan(run_dir: &Path) -> Result<bool, Failure> {
    Ok(vip_userspace::bgp::orphan::stand_down(run_dir, &|line| {
        println!("{line}")
    })?)
}
