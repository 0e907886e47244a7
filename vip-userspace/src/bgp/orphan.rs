//! The announcement of a daemon that is gone. BIRD outlives a `vip run`
//! that was killed or stopped with `--keep-datapath` (fail-static), still
//! announcing what that daemon last told it. `vip down`, and a start whose
//! config has no `[bgp]`, stand it down: graceful shutdown for the recorded
//! `drain_seconds`, then withdraw and stop.

use std::{path::Path, time::Duration};

use super::{Announcement, Phase, Speaker, SpeakerError, SpeakerFile};
use crate::{errors::Blame, run_files::RunFileError, status::StatusFile};

#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error(transparent)]
    RunFile(#[from] RunFileError),
    #[error("standing down the BGP speaker left behind: {0}")]
    Speaker(#[from] SpeakerError),
}

impl Blame for OrphanError {
    fn is_user_error(&self) -> bool {
        match self {
            OrphanError::RunFile(e) => e.is_user_error(),
            OrphanError::Speaker(e) => e.is_user_error(),
        }
    }
}

/// Drains (for the recorded `drain_seconds`), withdraws and stops the
/// speaker recorded in `run_dir`, if it still runs, and forgets it; each
/// step is told to `say`. Whether there was a record.
pub fn stand_down(run_dir: &Path, say: &dyn Fn(String)) -> Result<bool, OrphanError> {
    let file = SpeakerFile::in_dir(run_dir);
    let Some(record) = file.load()? else {
        return Ok(false);
    };
    let mut bird = record.bird.clone();
    if bird.running() {
        let status = StatusFile::in_dir(run_dir).load()?.unwrap_or_default();
        let announced: Vec<Announcement> = status
            .bgp
            .iter()
            .filter(|s| s.phase != Phase::Withdrawn)
            .map(|s| Announcement {
                cidr: s.cidr,
                graceful_shutdown: true,
            })
            .collect();
        if !announced.is_empty() {
            bird.announce(&announced)?;
            say(format!(
                "draining {} announced range(s) for {} s before withdrawing",
                announced.len(),
                record.drain_seconds
            ));
            std::thread::sleep(Duration::from_secs(u64::from(record.drain_seconds)));
        }
        bird.announce(&[])?;
        bird.stop()?;
        say(format!(
            "withdrew every range and stopped {}",
            bird.describe()
        ));
    }
    file.remove()?;
    Ok(true)
}
