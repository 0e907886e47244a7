//! Anycast: each range with `announce = true` is announced over BGP by a real
//! BGP daemon ([`Speaker`]; BIRD 2 in [`bird`]) while vip's own state and the
//! range's health checks say it can take traffic, and withdrawn otherwise.
//!
//! A range is announced while its datapath is attached to each configured
//! interface that exists (and one at least does), its alias or AnyIP
//! route is in place, every steer target is up and every health check passes,
//! and an operator has not drained it. A failure withdraws it at once. A drain
//! (`vip drain`, or a stop that lets the host state go) first re-announces it
//! with the graceful-shutdown community for `drain_seconds`, then withdraws;
//! only after that may the host state go.

pub mod bird;
pub mod drain;
pub mod health;
pub mod orphan;

use std::{path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use crate::{
    config::Config,
    run_files::{RunFile, RunFileKind},
};

pub use crate::status::{AnnounceStatus, HealthStatus, Phase, Session};
pub use drain::{Drain, DrainFile};

/// One route as the speaker is to announce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub cidr: IpNet,
    /// Tagged with RFC 8326's GRACEFUL_SHUTDOWN community: being drained.
    pub graceful_shutdown: bool,
}

/// The seam to a BGP implementation: it announces exactly the routes it is
/// given. A second backend (GoBGP over gRPC, say) implements this.
pub trait Speaker: Send {
    /// Starts the daemon if it is not running, and makes it announce `routes`
    /// and nothing else.
    fn announce(&mut self, routes: &[Announcement]) -> Result<(), SpeakerError>;
    /// Stops the daemon; its sessions close, so whatever it announced is gone.
    fn stop(&mut self) -> Result<(), SpeakerError>;
    /// The state of each neighbor's session, in config order.
    fn sessions(&mut self) -> Result<Vec<Session>, SpeakerError>;
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("[bgp] needs {}, which is not installed: install BIRD 2 (Debian package bird2), or name its path in bgp.bird and bgp.birdc", program.display())]
    Missing { program: PathBuf },
    #[error("running {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {output}")]
    Refused { what: &'static str, output: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::errors::Blame for SpeakerError {
    fn is_user_error(&self) -> bool {
        // A missing bird is the operator's to install.
        matches!(self, SpeakerError::Missing { .. })
    }
}

/// What vip itself knows of a range, gathered by the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    pub attached: bool,
    pub host_in_place: bool,
    pub steer_up: bool,
}

impl Gate {
    fn failure(&self) -> Option<&'static str> {
        if !self.attached {
            Some("datapath not attached")
        } else if !self.host_in_place {
            Some("alias or route not in place")
        } else if !self.steer_up {
            Some("a steer target is down")
        } else {
            None
        }
    }
}

/// What `vip down` needs to drain and stop the speaker of a daemon that is
/// gone: kept in the run directory while vip drives a speaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerRecord {
    pub bird: bird::Bird,
    pub drain_seconds: u32,
}

impl RunFileKind for SpeakerRecord {
    const FILE: &'static str = "bgp.json";
    const WHAT: &'static str = "BGP speaker record";
    const VERSION: u32 = 1;
}

pub type SpeakerFile = RunFile<SpeakerRecord>;

struct Check {
    label: String,
    up: Option<bool>,
    /// Why its last probe failed, while it is down.
    failure: Option<String>,
    transitions: u64,
}

struct Range {
    name: String,
    cidr: IpNet,
    checks: Vec<Check>,
    gate: Gate,
    phase: Phase,
    drain_until: Option<Instant>,
    transitions: u64,
    reason: String,
}

impl Range {
    fn set_phase(&mut self, phase: Phase, reason: String) {
        if phase != self.phase {
            log::info!(
                "range {} ({}): {:?} -> {:?}{}",
                self.name,
                self.cidr,
                self.phase,
                phase,
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                }
            );
            self.phase = phase;
            self.transitions += 1;
        }
        self.reason = reason;
    }
}

/// The announcement of every range with `announce = true`.
pub struct Announcer {
    speaker: Box<dyn Speaker>,
    drain: Duration,
    ranges: Vec<Range>,
    tasks: Vec<JoinHandle<()>>,
    changes: mpsc::UnboundedReceiver<health::Change>,
    sender: mpsc::UnboundedSender<health::Change>,
    drained: Drain,
    stopping: bool,
    /// What the speaker was last told; `None` before the first time.
    given: Option<Vec<Announcement>>,
    sessions: Vec<Session>,
}

impl Announcer {
    /// Starts the health checks of `config`'s announced ranges. Nothing is
    /// announced until [`Announcer::evaluate`].
    pub fn new(config: &Config, speaker: Box<dyn Speaker>, drained: Drain) -> Announcer {
        let (sender, changes) = mpsc::unbounded_channel();
        let mut announcer = Announcer {
            speaker,
            drain: Duration::ZERO,
            ranges: Vec::new(),
            tasks: Vec::new(),
            changes,
            sender,
            drained,
            stopping: false,
            given: None,
            sessions: Vec::new(),
        };
        announcer.set_config(config);
        announcer
    }

    /// Follows a new config: ranges keep their phase by name; health checks
    /// start afresh.
    pub fn set_config(&mut self, config: &Config) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        // Changes of the old checks may still be queued.
        while self.changes.try_recv().is_ok() {}
        self.drain = Duration::from_secs(u64::from(
            config.bgp.as_ref().map_or(0, |b| b.drain_seconds),
        ));
        let mut old = std::mem::take(&mut self.ranges);
        for range in config.ranges.iter().filter(|r| r.announce) {
            let index = self.ranges.len();
            for (check, spec) in range.health.iter().enumerate() {
                self.tasks.push(health::spawn(
                    (index, range.name.clone()),
                    check,
                    spec.clone(),
                    self.sender.clone(),
                ));
            }
            let kept = old
                .iter()
                .position(|r| r.name == range.name && r.cidr == range.cidr)
                .map(|i| old.swap_remove(i));
            self.ranges.push(Range {
                name: range.name.clone(),
                cidr: range.cidr,
                checks: range
                    .health
                    .iter()
                    .map(|c| Check {
                        label: c.label.clone(),
                        up: None,
                        failure: None,
                        transitions: 0,
                    })
                    .collect(),
                gate: kept.as_ref().map_or(
                    Gate {
                        attached: false,
                        host_in_place: false,
                        steer_up: false,
                    },
                    |k| k.gate,
                ),
                phase: kept.as_ref().map_or(Phase::Withdrawn, |k| k.phase),
                drain_until: kept.as_ref().and_then(|k| k.drain_until),
                transitions: kept.as_ref().map_or(0, |k| k.transitions),
                reason: String::new(),
            });
        }
    }

    /// Names of the announced ranges, in order, for [`Announcer::set_gates`].
    pub fn range_names(&self) -> impl Iterator<Item = &str> {
        self.ranges.iter().map(|r| r.name.as_str())
    }

    /// vip's own state of each range, by name.
    pub fn set_gates(&mut self, gate: impl Fn(&str) -> Gate) {
        for range in &mut self.ranges {
            range.gate = gate(&range.name);
        }
    }

    pub fn set_drained(&mut self, drained: Drain) {
        self.drained = drained;
    }

    /// Waits for every check's first result, at most `limit`.
    pub async fn settle(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self
            .ranges
            .iter()
            .any(|r| r.checks.iter().any(|c| c.up.is_none()))
        {
            match tokio::time::timeout_at(deadline, self.changes.recv()).await {
                Ok(Some(change)) => self.take_change(change),
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// The next change of a health check (pending forever without checks).
    pub async fn next_change(&mut self) -> health::Change {
        match self.changes.recv().await {
            Some(change) => change,
            // `self.sender` lives as long as `self`.
            None => std::future::pending().await,
        }
    }

    pub fn take_change(&mut self, change: health::Change) {
        let Some(check) = self
            .ranges
            .get_mut(change.range)
            .and_then(|r| r.checks.get_mut(change.check))
        else {
            return;
        };
        if check.up.is_some() && check.up != Some(change.up) {
            check.transitions += 1;
        }
        check.up = Some(change.up);
        check.failure = change.failure;
    }

    /// When the next drain ends, if one is under way.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ranges.iter().filter_map(|r| r.drain_until).min()
    }

    /// Moves every range to the phase its state asks for, and tells the
    /// speaker when what it should announce changed.
    pub fn evaluate(&mut self, now: Instant) -> Result<(), SpeakerError> {
        for range in &mut self.ranges {
            let failure = range.gate.failure().map(str::to_string).or_else(|| {
                range
                    .checks
                    .iter()
                    .find(|c| c.up != Some(true))
                    .map(|c| match &c.failure {
                        Some(why) => format!("health check {} down: {why}", c.label),
                        None => format!("health check {} down", c.label),
                    })
            });
            let drain = if self.stopping {
                Some("stopping")
            } else if self.drained.covers(&range.name) {
                Some("drained by the operator")
            } else {
                None
            };
            match (failure, drain) {
                (Some(failure), _) => {
                    range.drain_until = None;
                    range.set_phase(Phase::Withdrawn, failure);
                }
                (None, None) => {
                    range.drain_until = None;
                    range.set_phase(Phase::Announced, String::new());
                }
                (None, Some(why)) => match range.phase {
                    Phase::Announced => {
                        range.drain_until = Some(now + self.drain);
                        range.set_phase(Phase::Draining, why.to_string());
                    }
                    Phase::Draining if range.drain_until.is_none_or(|t| t <= now) => {
                        range.drain_until = None;
                        range.set_phase(Phase::Withdrawn, why.to_string());
                    }
                    Phase::Draining | Phase::Withdrawn => range.reason = why.to_string(),
                },
            }
        }
        // A drain of 0 s withdraws in the same evaluation.
        if self
            .ranges
            .iter()
            .any(|r| r.drain_until.is_some_and(|t| t <= now))
        {
            return self.evaluate(now);
        }
        let routes: Vec<Announcement> = self
            .ranges
            .iter()
            .filter(|r| r.phase != Phase::Withdrawn)
            .map(|r| Announcement {
                cidr: r.cidr,
                graceful_shutdown: r.phase == Phase::Draining,
            })
            .collect();
        if self.given.as_ref() != Some(&routes) {
            self.speaker.announce(&routes)?;
            self.given = Some(routes);
        }
        Ok(())
    }

    /// Drains every announced range (graceful shutdown, `drain_seconds`),
    /// withdraws, and stops the speaker: called before the host state goes.
    pub async fn stand_down(&mut self) -> Result<(), SpeakerError> {
        self.stopping = true;
        self.evaluate(Instant::now())?;
        while let Some(until) = self.next_deadline() {
            tokio::time::sleep_until(until).await;
            self.evaluate(Instant::now())?;
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
        log::info!(
            "every range withdrawn; stopping {}",
            self.speaker.describe()
        );
        self.speaker.stop()
    }

    /// Stops the health checks and leaves the speaker announcing what it
    /// announces (fail-static while vip is down).
    pub fn leave(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        log::info!(
            "leaving {} announcing as it is; the next vip run re-evaluates",
            self.speaker.describe()
        );
    }

    /// Asks the speaker how its sessions are; logs each change.
    pub fn refresh_sessions(&mut self) -> Result<&[Session], SpeakerError> {
        let sessions = self.speaker.sessions()?;
        for session in &sessions {
            let before = self
                .sessions
                .iter()
                .find(|s| s.neighbor == session.neighbor);
            if before.map(|b| &b.info) != Some(&session.info) {
                let text = format!("BGP session with {}: {}", session.neighbor, session.info);
                if session.established {
                    log::info!("{text}");
                } else {
                    log::warn!("{text}");
                }
            }
        }
        self.sessions = sessions;
        Ok(&self.sessions)
    }

    pub fn status(&self) -> Vec<AnnounceStatus> {
        self.ranges
            .iter()
            .map(|r| AnnounceStatus {
                range: r.name.clone(),
                cidr: r.cidr,
                phase: r.phase,
                reason: r.reason.clone(),
                transitions: r.transitions,
                health: r
                    .checks
                    .iter()
                    .map(|c| HealthStatus {
                        check: c.label.clone(),
                        up: c.up == Some(true),
                        failure: c.failure.clone(),
                        transitions: c.transitions,
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
