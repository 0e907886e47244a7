//! `vip run`'s life: [`Daemon::start`] (load or adopt the datapath, apply the
//! host state, attach, pin, steer, export), then [`Daemon::serve`] (drift
//! repair, steering, reload on SIGHUP) until SIGINT or SIGTERM, then
//! [`Daemon::shutdown`], which reverts everything or keeps the datapath for the
//! next `vip run` to adopt.

mod announce;
mod exporting;
mod serve;

use std::path::{Path, PathBuf};

use crate::{
    bgp::{Announcer, SpeakerError},
    config::{Config, XdpMode},
    datapath::{
        self,
        footprint::Footprint,
        pin::{PinDir, PinError},
        AdoptError, Datapath, DatapathError, Loaded,
    },
    errors::{self, Blame},
    host::{
        apply::{apply, revert, revert_unwanted},
        kernel,
        plan::planned,
        HostError, Netlink, State, StateFile,
    },
    layout::{Layout, LayoutError, LayoutFile, PendingLayoutFile},
    metrics::{
        server::{self, BindError, Exporter},
        SeriesPolicy,
    },
    preflight::{self, PreflightError, Purpose},
    run_files::RunFileError,
    run_lock::{RunLock, RunLockError},
    status::{Status, StatusFile},
    steer::SteerAgent,
};

pub use serve::Served;

/// Where a daemon finds its config and keeps its pins and run files.
#[derive(Clone, Debug)]
pub struct Options {
    pub config_path: PathBuf,
    pub pin_dir: PathBuf,
    pub run_dir: PathBuf,
    /// The daemon will stop with [`Stop::KeepDatapath`]: checked at start
    /// against what this kernel can keep.
    pub keep_datapath: bool,
}

/// How a daemon stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Detach, remove the pins, revert the host state, remove the run files.
    Revert,
    /// Leave the datapath attached, counting and pinned, and the host state in
    /// place, for the next `vip run` to adopt (`--keep-datapath`).
    KeepDatapath,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("vip run (pid {pid}) already owns {}; stop it or run `vip down`", path.display())]
    AlreadyRunning { pid: u32, path: PathBuf },
    #[error("vip needs Linux {}.{} or later (XDP bpf_links, sk_lookup, mmapable arrays), and this kernel is {kernel}", kernel::FLOOR.0, kernel::FLOOR.1)]
    KernelTooOld { kernel: String },
    #[error("--keep-datapath with xdp_mode = \"tc\" needs TCX (kernel 6.6 or later), and this kernel is {kernel}: TC programs attached through netlink cannot outlive vip; use xdp_mode native or generic, or run without --keep-datapath")]
    KeepNeedsTcx { kernel: String },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    RunFile(#[from] RunFileError),
    #[error(transparent)]
    RunLock(#[from] RunLockError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Adopt(#[from] AdoptError),
    #[error("loading the datapath: {0}")]
    Load(#[source] DatapathError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("BGP speaker: {0}")]
    Speaker(#[from] SpeakerError),
    #[error(transparent)]
    Orphan(#[from] crate::bgp::orphan::OrphanError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Blame for DaemonError {
    fn is_user_error(&self) -> bool {
        match self {
            DaemonError::Preflight(e) => e.is_user_error(),
            DaemonError::AlreadyRunning { .. }
            | DaemonError::KeepNeedsTcx { .. }
            | DaemonError::KernelTooOld { .. } => true,
            DaemonError::Host(e) => e.is_user_error(),
            DaemonError::RunFile(e) => e.is_user_error(),
            DaemonError::RunLock(e) => e.is_user_error(),
            DaemonError::Bind(e) => e.is_user_error(),
            DaemonError::Pin(e) => e.is_user_error(),
            DaemonError::Adopt(e) => e.is_user_error(),
            DaemonError::Load(e) | DaemonError::Datapath(e) => e.is_user_error(),
            DaemonError::Layout(e) => e.is_user_error(),
            DaemonError::Speaker(e) => e.is_user_error(),
            DaemonError::Orphan(e) => e.is_user_error(),
            DaemonError::Io { .. } => false,
        }
    }
}

/// The run files a daemon keeps in its run directory.
struct RunFiles {
    state: StateFile,
    layout: LayoutFile,
    pending_layout: PendingLayoutFile,
    status: StatusFile,
}

impl RunFiles {
    fn in_dir(run_dir: &Path) -> RunFiles {
        RunFiles {
            state: StateFile::in_dir(run_dir),
            layout: LayoutFile::in_dir(run_dir),
            pending_layout: PendingLayoutFile::in_dir(run_dir),
            status: StatusFile::in_dir(run_dir),
        }
    }

    fn remove(&self) -> Result<(), RunFileError> {
        self.state.remove()?;
        self.layout.remove()?;
        self.pending_layout.remove()?;
        self.status.remove()?;
        Ok(())
    }
}

/// A running daemon: everything it holds.
pub struct Daemon {
    options: Options,
    config: Config,
    layout: Layout,
    datapath: Datapath,
    netlink: Netlink,
    state: State,
    status: Status,
    files: RunFiles,
    pins: PinDir,
    exporter: Option<exporting::Serving>,
    steer: SteerAgent,
    signals: serve::Signals,
    /// The anycast announcement, with `[bgp]`.
    bgp: Option<Announcer>,
    /// Layouts of reloads whose map writes failed, oldest first: the maps
    /// hold a mix of `layout` and these (`layout-pending.json` says so too).
    unfinished: Vec<Layout>,
    /// The run directory's, held from the start until the process exits.
    _lock: RunLock,
    /// Configured interfaces that did not exist at the last drift tick.
    interfaces_gone: Vec<String>,
    /// Why attaching again to a recreated interface failed at the last
    /// drift tick: logged when it first fails, not at every tick.
    attach_failure: Option<String>,
    /// An interface that decapsulates is attached at an ifindex beyond
    /// `MAP_DECAP`, which is to be made afresh.
    decap_map_too_small: bool,
    /// Moves of the maps finished since the start: tells a reload that
    /// failed after its move from one refused before any change.
    moves_done: u64,
}

/// `pins`, rid of what a start killed before it pinned its last map left:
/// maps and links (attached, counting) that nothing records and no start
/// can adopt. The lock says no other start is making them; they are removed
/// (which detaches the links) and this start begins afresh, so a unit that
/// restarts after such a kill comes up without `vip down`.
fn unfinished_pins_removed(pins: PinDir) -> Result<PinDir, DaemonError> {
    if !pins.holds_pins() || datapath::pin::is_complete(pins.path()) {
        return Ok(pins);
    }
    log::warn!(
        "{} holds the pins of a start that never finished (killed?): removing them, which detaches its links and drops what they counted, and starting afresh",
        pins.path().display()
    );
    let dir = pins.path().to_path_buf();
    pins.remove()?;
    Ok(PinDir::open(&dir)?)
}

/// `--keep-datapath` with `xdp_mode = "tc"` needs TCX: a netlink TC
/// filter cannot outlive the daemon. Checked at start and on a reload.
fn check_keep(keep_datapath: bool, config: &Config) -> Result<(), DaemonError> {
    if keep_datapath && config.xdp_mode == XdpMode::Tc && !kernel::has_tcx() {
        return Err(DaemonError::KeepNeedsTcx {
            kernel: kernel::release(),
        });
    }
    Ok(())
}

/// The datapath before start-up finishes: freshly loaded, or adopted.
enum Starting {
    Loaded(Loaded),
    Adopted(Datapath),
}

impl Daemon {
    /// Checks everything that can be checked before any change; then loads
    /// the datapath (or adopts the one pinned in `pin_dir`), applies the host
    /// state, attaches, pins, starts steering and the exporter. A failure before
    /// the first change leaves the host as it was; a later one reverts what
    /// start-up did.
    pub async fn start(options: Options) -> Result<Daemon, DaemonError> {
        // A datapath left pinned (kill -9, --keep-datapath) waits for its
        // interfaces that are gone, and so does the start that adopts it.
        let waiting = datapath::recorded_interfaces(&options.pin_dir);
        let config = preflight::config_waiting(&options.config_path, Purpose::Run, &waiting)?;
        if !kernel::supported() {
            return Err(DaemonError::KernelTooOld {
                kernel: kernel::release(),
            });
        }
        check_keep(options.keep_datapath, &config)?;
        if let Some(bgp) = &config.bgp {
            crate::bgp::bird::Bird::locate(bgp, &options.run_dir)?;
        }
        let lock = RunLock::take(&options.run_dir)?;
        crate::fault::pause("start-locked");
        let signals = serve::Signals::take()?;
        let files = RunFiles::in_dir(&options.run_dir);
        let mut state = files.state.load()?.unwrap_or_default();
        let (netlink, steps) = planned(&config, &state).await?;
        // Drift repairs and reloads count on across restarts of the daemon.
        let mut status = files.status.load()?.unwrap_or_default();
        // Says to `vip reload` that this daemon records its reloads.
        status.reloads.get_or_insert_default();
        // Seen afresh, and logged again, by this daemon's drift repair.
        status.drift_unrepaired.clear();
        if let Some(pid) = state.live_daemon().filter(|&p| p != std::process::id()) {
            return Err(DaemonError::AlreadyRunning {
                pid,
                path: files.state.path().to_path_buf(),
            });
        }
        let listener = match config.metrics_listen {
            Some(addr) => Some(server::bind(addr).await?),
            None => None,
        };
        let pins = unfinished_pins_removed(PinDir::open(&options.pin_dir)?)?;
        let adopting = pins.holds_pins();
        let (starting, layout) = if adopting {
            let (datapath, layout) =
                datapath::adopt(&pins, &files.layout, &files.pending_layout, &config)?;
            (Starting::Adopted(datapath), layout)
        } else {
            let layout = Layout::new(&config);
            if let Some(footprint) = Footprint::on_this_host(&layout) {
                log::info!("creating the datapath's maps, {footprint}");
            }
            let mut loaded =
                Loaded::load(&layout, &config.interfaces).map_err(DaemonError::Load)?;
            if config.xdp_mode == XdpMode::Tc {
                loaded.verify_tc().map_err(DaemonError::Load)?;
            }
            (Starting::Loaded(loaded), layout)
        };
        files.layout.save(&layout)?;
        files.pending_layout.remove()?;
        state.daemon_pid = Some(std::process::id());
        files.state.save(&state)?;
        files.status.save(&status)?;
        if let Starting::Adopted(datapath) = &starting {
            let info = datapath::build::info(datapath.maps());
            log::info!(
                "adopted the datapath pinned in {}: still attached to {}, counters carry on; its programs replaced in place by this build's ({}; in-place upgrades by another build: {})",
                pins.path().display(),
                config.interfaces.join(", "),
                info.map_or_else(|| "unknown".to_string(), |i| datapath::build::text(&i.build)),
                info.map_or(0, |i| i.upgrades)
            );
        }
        // From here on a failure reverts what start-up did.
        let mut started = Started {
            netlink,
            state,
            files,
            pins,
        };
        match started.bring_up(&config, &steps, starting).await {
            Ok(datapath) => {
                let Started {
                    netlink,
                    state,
                    files,
                    pins,
                } = started;
                let mut daemon = Daemon {
                    options,
                    config,
                    layout,
                    datapath,
                    netlink,
                    state,
                    status,
                    files,
                    pins,
                    exporter: None,
                    steer: SteerAgent::default(),
                    signals,
                    bgp: None,
                    unfinished: Vec::new(),
                    _lock: lock,
                    interfaces_gone: Vec::new(),
                    attach_failure: None,
                    decap_map_too_small: false,
                    moves_done: 0,
                };
                match daemon.finish_start(listener).await {
                    Ok(()) => Ok(daemon),
                    Err(e) => {
                        daemon.shutdown(Stop::Revert).await?;
                        Err(e)
                    }
                }
            }
            Err(e) => {
                started.revert(None).await?;
                Err(e)
            }
        }
    }

    /// Steering and the exporter, on the live datapath.
    async fn finish_start(
        &mut self,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<(), DaemonError> {
        self.steer.set_layout(&self.layout, &mut self.datapath)?;
        self.refresh_steering()?;
        log::info!(
            "counting {} range(s) on {}; maps and links pinned in {}",
            self.layout.ranges.len(),
            self.config.interfaces.join(", "),
            self.pins.path().display()
        );
        if let (Some(listener), Some(addr)) = (listener, self.config.metrics_listen) {
            let exporter = self.fresh_exporter();
            let serving =
                exporting::Serving::start(addr, listener, exporter).map_err(|source| {
                    DaemonError::Io {
                        what: "metrics listener",
                        source,
                    }
                })?;
            self.exporter = Some(serving);
        }
        self.start_announcing().await
    }

    /// An exporter of this daemon's pins and run files, under its config's
    /// series policy (cheap: it opens the maps at its first scrape).
    fn fresh_exporter(&self) -> std::sync::Arc<Exporter> {
        Exporter::new(
            self.options.pin_dir.clone(),
            self.options.run_dir.clone(),
            SeriesPolicy::from_config(&self.config),
        )
    }

    /// The live datapath, e.g. for tests that read its maps.
    pub fn datapath(&self) -> &Datapath {
        &self.datapath
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What the daemon records about itself in the run directory.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Stops the daemon as `stop` says.
    pub async fn shutdown(mut self, stop: Stop) -> Result<(), DaemonError> {
        if let Some(serving) = self.exporter.take() {
            serving.stop().await;
        }
        let stop = if stop == Stop::KeepDatapath && !self.datapath.outlives_its_daemon() {
            log::warn!("a TC attachment through netlink (no TCX before kernel 6.6) cannot outlive vip: stopping as without --keep-datapath");
            Stop::Revert
        } else {
            stop
        };
        if stop == Stop::KeepDatapath {
            self.leave_announcing();
            log::info!(
                "exiting with the datapath attached, pinned in {}; the next `vip run` adopts it, `vip down` removes it",
                self.pins.path().display()
            );
            self.state.daemon_pid = None;
            self.files.state.save(&self.state)?;
            return Ok(());
        }
        // Withdrawn before the alias or route goes, so that no packet drawn
        // by the announcement arrives to find the host no longer accepts it.
        self.stop_announcing().await;
        log::info!("shutting down: detaching and reverting host state");
        let started = Started {
            netlink: self.netlink,
            state: self.state,
            files: self.files,
            pins: self.pins,
        };
        started.revert(Some(&mut self.datapath)).await
    }
}

/// What start-up has changed so far, to revert on a failure.
struct Started {
    netlink: Netlink,
    state: State,
    files: RunFiles,
    pins: PinDir,
}

impl Started {
    /// Applies the host state (reverting what an earlier daemon owned that the
    /// config no longer wants), and attaches and pins a freshly loaded datapath.
    async fn bring_up(
        &mut self,
        config: &Config,
        steps: &[crate::host::Step],
        starting: Starting,
    ) -> Result<Datapath, DaemonError> {
        apply(&self.netlink, steps, &mut self.state, &self.files.state).await?;
        // What an earlier daemon owned for ranges the config no longer has
        // (a restart after a config change), as a reload would.
        let wanted = crate::host::desired(config);
        revert_unwanted(&self.netlink, &mut self.state, &self.files.state, &wanted).await?;
        let mut loaded = match starting {
            Starting::Adopted(datapath) => return Ok(datapath),
            Starting::Loaded(loaded) => loaded,
        };
        loaded.attach_all(&config.interfaces, config.xdp_mode)?;
        if let Err(e) = loaded.attach_steering() {
            if config.ranges.iter().any(|r| !r.steer.is_empty()) {
                return Err(e.into());
            }
            // Without steer entries it only counts delivered lookups.
            log::warn!(
                "no sk_lookup program (delivered counts stay 0): {}",
                errors::chain(&e)
            );
        }
        Ok(loaded.pin(&self.pins)?)
    }

    /// Detaches (an unpinned datapath detached when it was dropped), removes
    /// the pins, reverts the host state and removes the run files.
    async fn revert(mut self, datapath: Option<&mut Datapath>) -> Result<(), DaemonError> {
        if let Some(datapath) = datapath {
            if let Err(e) = datapath.detach_all() {
                log::error!("detaching: {}", errors::chain(&e));
            }
        }
        if let Err(e) = self.pins.remove() {
            log::error!("removing pins: {}", errors::chain(&e));
        }
        revert(&self.netlink, &mut self.state, &self.files.state).await?;
        self.files.remove()?;
        Ok(())
    }
}
