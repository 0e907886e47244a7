//! A started daemon's work: drift repair, steering, reloads, until a signal.

use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{
    exporting::{self, ListenMove},
    Daemon, DaemonError,
};
use crate::{
    config::Config,
    datapath,
    errors::{self, Blame},
    host::{
        self,
        apply::{apply, repair, revert_unwanted},
        plan, HostView,
    },
    layout::{Layout, PendingLayout},
    metrics::SeriesPolicy,
    preflight::{self, Purpose},
    status::{ReloadOutcome, ReloadResult},
};

/// How often owned host state and the attachments are checked for drift.
const DRIFT_INTERVAL: Duration = Duration::from_secs(1);
/// The drift kind of an interface attached again (`Status::drift_repairs`).
const ATTACHMENT_DRIFT: &str = "attachment";

/// The signals a daemon answers, taken over before it says it is counting: a
/// SIGTERM right after that must stop it cleanly, not kill it.
pub(super) struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    /// `vip drain` and `vip undrain`: re-read the drain requests.
    usr1: Signal,
}

impl Signals {
    pub(super) fn take() -> Result<Signals, DaemonError> {
        let handler = |kind: SignalKind, what: &'static str| {
            signal(kind).map_err(|source| DaemonError::Io { what, source })
        };
        Ok(Signals {
            term: handler(SignalKind::terminate(), "SIGTERM handler")?,
            int: handler(SignalKind::interrupt(), "SIGINT handler")?,
            hup: handler(SignalKind::hangup(), "SIGHUP handler")?,
            usr1: handler(SignalKind::user_defined1(), "SIGUSR1 handler")?,
        })
    }
}

/// Why [`Daemon::serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    Sigterm,
    Sigint,
}

/// The next change of a health check; pending forever without `[bgp]`.
async fn next_health_change(bgp: &mut Option<crate::bgp::Announcer>) -> crate::bgp::health::Change {
    match bgp {
        Some(announcer) => announcer.next_change().await,
        None => std::future::pending().await,
    }
}

/// Every half idle time, from one period on: see `vip_common::sparse`.
fn sweep_interval(idle_seconds: u32) -> tokio::time::Interval {
    let period = Duration::from_millis(u64::from(idle_seconds) * 500);
    tokio::time::interval_at(tokio::time::Instant::now() + period, period)
}

impl Daemon {
    /// Repairs drift, ages the sparse table and reloads on SIGHUP, until
    /// SIGINT or SIGTERM. Errors of
    /// each round are logged; the daemon carries on.
    pub async fn serve(&mut self) -> Result<Served, DaemonError> {
        let mut drift = tokio::time::interval(DRIFT_INTERVAL);
        // Start-up has just looked for the steer targets.
        let period = crate::steer::REFRESH_INTERVAL;
        let mut steer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut sweep = sweep_interval(self.config.sparse_idle_seconds);
        let mut drains = tokio::time::interval(super::announce::DRAIN_TICK);
        loop {
            tokio::select! {
                _ = self.signals.term.recv() => { log::info!("SIGTERM"); return Ok(Served::Sigterm); }
                _ = self.signals.int.recv() => { log::info!("SIGINT"); return Ok(Served::Sigint); }
                _ = self.signals.hup.recv() => {
                    let idle = self.config.sparse_idle_seconds;
                    let outcome = self.reload_and_say().await;
                    self.record_reload(outcome);
                    if self.config.sparse_idle_seconds != idle {
                        sweep = sweep_interval(self.config.sparse_idle_seconds);
                    }
                }
                _ = self.signals.usr1.recv() => {
                    if let Err(e) = self.reread_drains().await {
                        log::error!("drain requests: {}", errors::chain(&e));
                    }
                }
                change = next_health_change(&mut self.bgp) => {
                    if let Err(e) = self.health_changed(change).await {
                        log::error!("announcement: {}", errors::chain(&e));
                    }
                }
                _ = drains.tick() => {
                    if let Err(e) = self.drain_tick().await {
                        log::error!("announcement: {}", errors::chain(&e));
                    }
                }
                _ = sweep.tick() => {
                    if let Err(e) = self.datapath.sweep_sparse() {
                        log::error!("sparse table sweep: {}", errors::chain(&e));
                    }
                }
                _ = steer.tick() => {
                    if let Err(e) = self.refresh_steering() {
                        log::error!("steering: {}", errors::chain(&e));
                    }
                }
                _ = drift.tick() => {
                    let failure = self.repair_attachments().err().map(|e| errors::chain(&e));
                    if let Some(failure) = failure.as_ref().filter(|&f| Some(f) != self.attach_failure.as_ref()) {
                        log::error!("attaching again: {failure} (retried every second, logged again if it changes)");
                    }
                    self.attach_failure = failure;
                    if let Err(e) = self.repair_drift().await {
                        log::error!("drift repair: {}", errors::chain(&e));
                    }
                    // The host state and the steer targets, as they are now.
                    if let Err(e) = self.refresh_announcements().await {
                        log::error!("announcement: {}", errors::chain(&e));
                    }
                    if let Err(e) = self.refresh_sessions() {
                        log::error!("BGP sessions: {}", errors::chain(&e));
                    }
                }
            }
        }
    }

    /// Looks for the steer targets' sockets; records their state when it changes.
    pub fn refresh_steering(&mut self) -> Result<(), DaemonError> {
        self.steer.refresh(&mut self.datapath);
        let steer = self.steer.status();
        if steer != self.status.steer {
            self.status.steer = steer;
            self.files.status.save(&self.status)?;
        }
        Ok(())
    }

    /// Attaches again to interfaces deleted and created since they were
    /// attached; counted as drift of kind `attachment`. An interface that is
    /// gone is logged once, when it goes. One that decapsulates and came back
    /// at an ifindex beyond `MAP_DECAP` gets the map made afresh (retried at
    /// every tick until that succeeds).
    pub fn repair_attachments(&mut self) -> Result<(), DaemonError> {
        let found =
            self.datapath
                .attach_recreated(&self.pins, self.config.xdp_mode, &self.layout)?;
        for interface in &found.gone {
            if !self.interfaces_gone.contains(interface) {
                log::warn!("{interface} is gone: vip attaches to it again when it is back");
            }
        }
        self.interfaces_gone = found.gone;
        for (interface, before, now) in &found.attached {
            log::warn!(
                "drift: {interface} was deleted and created again (ifindex {before}, now {now}); attached again"
            );
            *self
                .status
                .drift_repairs
                .entry(ATTACHMENT_DRIFT.to_string())
                .or_default() += 1;
        }
        if !found.attached.is_empty() {
            self.files.status.save(&self.status)?;
        }
        if !found.decap_beyond.is_empty() {
            log::info!(
                "{}: the new ifindex is beyond the decapsulation map, which is made afresh",
                found.decap_beyond.join(", ")
            );
            self.decap_map_too_small = true;
        }
        if self.decap_map_too_small {
            let layout = self.next_layout(&self.config)?;
            let config = self.config.clone();
            self.move_and_attach(layout, &config, true)?;
        }
        Ok(())
    }

    /// Puts back owned host state that changed from outside; counts it by
    /// kind. What it cannot put back is in the status and logged when it
    /// first appears, not at every tick.
    pub async fn repair_drift(&mut self) -> Result<(), DaemonError> {
        let outcome = repair(&self.netlink, &mut self.state, &self.files.state).await?;
        let before = &self.status.drift_unrepaired;
        for problem in outcome.problems.iter().filter(|p| !before.contains(p)) {
            log::error!(
                "drift not repaired: {problem} (retried every second, logged again if it changes)"
            );
        }
        for gone in before.iter().filter(|p| !outcome.problems.contains(p)) {
            log::info!("drift: no longer a problem: {gone}");
        }
        let problems_changed = outcome.problems != *before;
        self.status.drift_unrepaired = outcome.problems;
        for item in &outcome.repaired {
            *self
                .status
                .drift_repairs
                .entry(item.kind().to_string())
                .or_default() += 1;
        }
        if problems_changed || !outcome.repaired.is_empty() {
            self.files.status.save(&self.status)?;
        }
        Ok(())
    }

    /// [`Daemon::reload`], logged; what `vip reload` will be told.
    async fn reload_and_say(&mut self) -> ReloadOutcome {
        let (unfinished, moves) = (self.unfinished.len(), self.moves_done);
        match self.reload().await {
            Ok(()) => {
                let message = format!(
                    "reloaded {}: {} range(s)",
                    self.options.config_path.display(),
                    self.layout.ranges.len()
                );
                log::info!("{message}");
                ReloadOutcome {
                    result: ReloadResult::Reloaded,
                    message,
                    user_error: false,
                }
            }
            Err(e) => {
                // The maps moved, in part or all the way (a later step failed).
                let changed = self.unfinished.len() > unfinished || self.moves_done != moves;
                let (result, outcome) = if changed {
                    (ReloadResult::FailedHalfWay, "failed half-way, part of it applied (the next reload or start moves on from there)")
                } else {
                    (
                        ReloadResult::Refused,
                        "refused, still running the previous config",
                    )
                };
                let message = format!(
                    "reload of {} {outcome}: {}",
                    self.options.config_path.display(),
                    errors::chain(&e)
                );
                log::error!("{message}");
                ReloadOutcome {
                    result,
                    message,
                    user_error: e.is_user_error(),
                }
            }
        }
    }

    /// Records `outcome` in the status file, where `vip reload` waits for it.
    fn record_reload(&mut self, outcome: ReloadOutcome) {
        let reloads = self.status.reloads.get_or_insert_default();
        reloads.count += 1;
        reloads.last = Some(outcome);
        if let Err(e) = self.files.status.save(&self.status) {
            log::error!("recording the reload: {}", errors::chain(&e));
        }
    }

    /// Re-reads and checks the config, then moves the datapath and the host
    /// state to it through map updates and netlink, and the attachments as
    /// [`Daemon::move_and_attach`] says; an interface the config keeps is not
    /// detached. On any error before the first change, nothing changes.
    pub async fn reload(&mut self) -> Result<(), DaemonError> {
        let attached: Vec<String> = self
            .datapath
            .attachments()
            .iter()
            .map(|a| a.interface.clone())
            .collect();
        let config = preflight::config_waiting(&self.options.config_path, Purpose::Run, &attached)?;
        super::check_keep(self.options.keep_datapath, &config)?;
        let layout = self.next_layout(&config)?;
        let view = HostView::read(&self.netlink, &self.state)
            .await
            .map_err(host::HostError::from)?;
        view.check_safety(&config).map_err(host::HostError::from)?;
        let wanted = host::desired(&config);
        let steps = plan::plan(&view, wanted.clone())?;
        let reattaching = self.reattaches(&config)?;
        if !reattaching
            && (config.interfaces != self.config.interfaces
                || config.xdp_mode != self.config.xdp_mode)
        {
            log::warn!("interfaces and xdp_mode changes take effect when vip restarts: a TC filter attached through netlink (kernels before 6.6) cannot be replaced in place");
        }
        let listen = exporting::plan(self.exporter.as_ref(), config.metrics_listen).await?;
        if reattaching {
            self.move_and_attach(layout, &config, false)?;
        } else {
            self.move_datapath(layout)?;
        }
        const FAULT_STEP: &str = "reload-moved";
        if crate::fault::fails(FAULT_STEP) {
            return Err(datapath::DatapathError::Fault { step: FAULT_STEP }.into());
        }
        self.steer.set_layout(&self.layout, &mut self.datapath)?;
        let state_file = &self.files.state;
        apply(&self.netlink, &steps, &mut self.state, state_file).await?;
        revert_unwanted(&self.netlink, &mut self.state, state_file, &wanted).await?;
        if let Some(serving) = &self.exporter {
            serving
                .exporter
                .set_policy(SeriesPolicy::from_config(&config));
        }
        let old = std::mem::replace(&mut self.config, config);
        self.refresh_steering()?;
        self.reload_announcements(&old).await?;
        self.move_listener(listen).await
    }

    /// The metrics listener moved to `metrics.listen`, last: an address that
    /// conflicts with the old one on its port can be bound only once the old
    /// one is closed, and if that fails the old one serves again.
    async fn move_listener(&mut self, listen: ListenMove) -> Result<(), DaemonError> {
        let fresh = self.fresh_exporter();
        let serving = self.exporter.take();
        match exporting::apply(serving, listen, self.config.metrics_listen, fresh).await {
            Ok(serving) => {
                self.exporter = serving;
                Ok(())
            }
            Err((restored, e)) => {
                self.exporter = restored;
                Err(e.into())
            }
        }
    }

    /// The layout for `config`, made from where the maps were going after
    /// failed moves, else from the current one.
    fn next_layout(&self, config: &Config) -> Result<Layout, DaemonError> {
        Ok(self
            .unfinished
            .last()
            .unwrap_or(&self.layout)
            .update(config)?)
    }

    /// Whether a reload to `config` attaches or detaches: the pinned
    /// attachments differ from what it asks (also after a reload that did so
    /// and failed half-way). Never with a netlink TC filter (kernels before
    /// 6.6), which has no link to replace a program in.
    fn reattaches(&self, config: &Config) -> Result<bool, DaemonError> {
        if !self.datapath.outlives_its_daemon() {
            return Ok(false);
        }
        Ok(datapath::attachments_differ(&self.pins, config)?)
    }

    /// Moves the maps to `layout` and the attachments to `config`'s
    /// interfaces and mode, as an adopting start does: this binary's programs
    /// replace the running ones in place, links that stay keep every count.
    /// `fresh_decap`: `MAP_DECAP` is made afresh even if no attachment
    /// changes. Cut short after its first change, it leaves the move pending
    /// (as `layout-pending.json` says) for the next reload or start.
    fn move_and_attach(
        &mut self,
        layout: Layout,
        config: &Config,
        fresh_decap: bool,
    ) -> Result<(), DaemonError> {
        let moves = datapath::Moves {
            previous: &self.layout,
            interrupted: &self.unfinished,
            target: &layout,
        };
        let moved = datapath::reattach_live(
            &self.pins,
            moves,
            &self.files.pending_layout,
            config,
            fresh_decap,
        );
        let datapath = match moved {
            Ok(datapath) => datapath,
            Err(e) => {
                // Where the maps were going, if the upgrade got as far as saying so.
                match self.files.pending_layout.load() {
                    Ok(Some(pending)) => self.unfinished = pending.chain(),
                    Ok(None) => {}
                    Err(read) => log::error!("{}", errors::chain(&read)),
                }
                return Err(e.into());
            }
        };
        self.datapath = datapath;
        // Made afresh for the interfaces as they are now.
        self.decap_map_too_small = false;
        if let Some(serving) = &self.exporter {
            serving.exporter.reopen_maps();
        }
        self.moves_done += 1;
        self.files.layout.save(&layout)?;
        self.layout = layout;
        self.unfinished.clear();
        self.files.pending_layout.remove()?;
        let attached: Vec<String> = self
            .datapath
            .attachments()
            .iter()
            .map(|a| format!("{} ({})", a.interface, a.mode))
            .collect();
        log::info!("attachments now: {}", attached.join(", "));
        Ok(())
    }

    /// Moves the maps to `layout`, through the layouts of earlier reloads
    /// whose map writes failed. The moves are saved as pending first, so
    /// that a crash leaves them to the next start; if the writes fail, the
    /// daemon runs on with the maps between layouts and the next reload
    /// moves them on from there (`unfinished`).
    fn move_datapath(&mut self, layout: Layout) -> Result<(), DaemonError> {
        self.files
            .pending_layout
            .save(&PendingLayout::after(&self.unfinished, &layout))?;
        let moved = self
            .datapath
            .update(&self.layout, &self.unfinished, &layout)
            .map_err(DaemonError::Datapath)
            .and_then(|()| Ok(self.files.layout.save(&layout)?));
        if let Err(e) = moved {
            self.unfinished.push(layout);
            return Err(e);
        }
        self.moves_done += 1;
        self.layout = layout;
        self.unfinished.clear();
        self.files.pending_layout.remove()?;
        Ok(())
    }
}
