//! The daemon's side of anycast: it feeds the [`Announcer`] what only it
//! knows (attachments, host state, steer targets, drain requests) and records
//! the outcome in the status file.

use std::time::Duration;

use tokio::time::Instant;

use super::{Daemon, DaemonError};
use crate::{
    bgp::{
        bird::Bird, health, orphan, Announcer, Drain, DrainFile, Gate, SpeakerFile, SpeakerRecord,
    },
    config::Config,
    errors,
    host::{self, items::local_item, HostView},
};

/// How often drains under way are looked at.
pub(super) const DRAIN_TICK: Duration = Duration::from_millis(100);

impl Daemon {
    /// Starts announcing, when the config has `[bgp]`: the speaker, the health
    /// checks (waiting for each one's first result), then the first evaluation.
    /// Without `[bgp]`, stands down a speaker an earlier daemon left.
    pub(super) async fn start_announcing(&mut self) -> Result<(), DaemonError> {
        let Some(announcer) = self.new_announcer().await? else {
            // No [bgp], but the daemon before this one may have left its
            // speaker announcing (a restart after a config change): it goes,
            // as on a reload to this config.
            orphan::stand_down(&self.options.run_dir, &|line| log::info!("{line}"))?;
            return Ok(());
        };
        self.bgp = Some(announcer);
        self.refresh_announcements().await
    }

    /// The config's speaker, recorded for `vip down`, and its health checks,
    /// each with its first result (or `limit`); `None` without `[bgp]`.
    async fn new_announcer(&self) -> Result<Option<Announcer>, DaemonError> {
        let Some(bgp) = &self.config.bgp else {
            return Ok(None);
        };
        let bird = Bird::locate(bgp, &self.options.run_dir)?;
        SpeakerFile::in_dir(&self.options.run_dir).save(&SpeakerRecord {
            bird: bird.clone(),
            drain_seconds: bgp.drain_seconds,
        })?;
        let drained = self.drain_requests()?;
        let mut announcer = Announcer::new(&self.config, Box::new(bird), drained);
        announcer.settle(first_results_within(&self.config)).await;
        Ok(Some(announcer))
    }

    /// The operator's drain requests, as `vip drain` left them.
    fn drain_requests(&self) -> Result<Drain, DaemonError> {
        Ok(DrainFile::in_dir(&self.options.run_dir)
            .load()?
            .unwrap_or_default())
    }

    /// Re-reads the drain requests (`vip drain` sends SIGUSR1).
    pub(super) async fn reread_drains(&mut self) -> Result<(), DaemonError> {
        let drained = self.drain_requests()?;
        if let Some(announcer) = &mut self.bgp {
            announcer.set_drained(drained);
        }
        self.refresh_announcements().await
    }

    /// A health check changed.
    pub(super) async fn health_changed(
        &mut self,
        change: health::Change,
    ) -> Result<(), DaemonError> {
        if let Some(announcer) = &mut self.bgp {
            announcer.take_change(change);
        }
        self.refresh_announcements().await
    }

    /// Gathers every announced range's gate, evaluates, and records the
    /// outcome when it changed.
    pub(super) async fn refresh_announcements(&mut self) -> Result<(), DaemonError> {
        let Some(announcer) = &self.bgp else {
            return Ok(());
        };
        let view = HostView::read(&self.netlink, &self.state)
            .await
            .map_err(host::HostError::from)?;
        let attached = self.datapath.judges_all(&self.config.interfaces);
        let parents = crate::config::nesting::parents(&self.config.ranges);
        let gates: Vec<(String, Gate)> = announcer
            .range_names()
            .map(|name| {
                let host_in_place = self
                    .config
                    .ranges
                    .iter()
                    .position(|r| r.name == name)
                    .and_then(|index| local_item(&self.config, &parents, index))
                    .is_some_and(|item| {
                        view.status(&item)
                            .is_ok_and(|(status, _)| status == host::Status::InPlace)
                    });
                let steer_up = self
                    .status
                    .steer
                    .iter()
                    .filter(|s| s.range == name)
                    .all(|s| s.up);
                let gate = Gate {
                    attached,
                    host_in_place,
                    steer_up,
                };
                (name.to_string(), gate)
            })
            .collect();
        let Some(announcer) = &mut self.bgp else {
            return Ok(());
        };
        announcer.set_gates(|name| {
            gates
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Gate::default(), |(_, g)| *g)
        });
        let told = announcer.evaluate(Instant::now());
        let status = announcer.status();
        if status != self.status.bgp {
            self.status.bgp = status;
            self.files.status.save(&self.status)?;
        }
        told.map_err(DaemonError::from)
    }

    /// Asks the speaker how its sessions are, and records them.
    pub(super) fn refresh_sessions(&mut self) -> Result<(), DaemonError> {
        let Some(announcer) = &mut self.bgp else {
            return Ok(());
        };
        let sessions = announcer.refresh_sessions()?;
        if sessions != self.status.bgp_sessions.as_slice() {
            self.status.bgp_sessions = sessions.to_vec();
            self.files.status.save(&self.status)?;
        }
        Ok(())
    }

    /// Ends drains whose time is up.
    pub(super) async fn drain_tick(&mut self) -> Result<(), DaemonError> {
        let due = self
            .bgp
            .as_ref()
            .and_then(Announcer::next_deadline)
            .is_some_and(|t| t <= Instant::now());
        if due {
            self.refresh_announcements().await?;
        }
        Ok(())
    }

    /// Follows a reloaded config: `[bgp]` added, removed or changed.
    pub(super) async fn reload_announcements(&mut self, old: &Config) -> Result<(), DaemonError> {
        match (&old.bgp, &self.config.bgp) {
            (None, None) => Ok(()),
            (None, Some(_)) => self.start_announcing().await,
            (Some(_), None) => {
                self.stop_announcing().await;
                Ok(())
            }
            (Some(before), Some(now)) => {
                if before != now {
                    // A changed session (AS, neighbors, communities) is a
                    // reconfiguration of the same speaker.
                    let announcer = self.new_announcer().await?;
                    if let Some(mut old) = std::mem::replace(&mut self.bgp, announcer) {
                        old.leave();
                    }
                } else if let Some(announcer) = &mut self.bgp {
                    announcer.set_config(&self.config);
                    announcer.settle(first_results_within(&self.config)).await;
                }
                self.refresh_announcements().await
            }
        }
    }

    /// Drains, withdraws and stops the speaker; logs rather than fails, as the
    /// stop goes on either way.
    pub(super) async fn stop_announcing(&mut self) {
        let Some(mut announcer) = self.bgp.take() else {
            return;
        };
        match announcer.stand_down().await {
            // The record stays for `vip down` to try again.
            Err(e) => log::error!(
                "withdrawing the announcements: {}; `vip down` tries again",
                errors::chain(&e)
            ),
            Ok(()) => {
                if let Err(e) = SpeakerFile::in_dir(&self.options.run_dir).remove() {
                    log::error!("{}", errors::chain(&e));
                }
            }
        }
        self.status.bgp.clear();
        self.status.bgp_sessions.clear();
    }

    /// Leaves the speaker announcing (fail-static) and stops the checks.
    pub(super) fn leave_announcing(&mut self) {
        if let Some(mut announcer) = self.bgp.take() {
            announcer.leave();
        }
    }
}

/// The longest first probe among the config's checks, and some slack.
fn first_results_within(config: &Config) -> Duration {
    config
        .ranges
        .iter()
        .flat_map(|r| &r.health)
        .map(|c| c.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_millis(200)
}
