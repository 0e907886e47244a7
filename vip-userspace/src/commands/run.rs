//! `vip run`: host state, datapath, drift repair, reload on SIGHUP, and cleanup
//! on SIGINT or SIGTERM (or, with `--keep-datapath`, an exit that leaves the
//! datapath for the next `vip run` to adopt).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use vip_userspace::{
    datapath::{self, pin::PinDir},
    host::{
        self,
        apply::{apply, repair, revert, revert_unwanted},
        plan, HostView, Netlink, State, StateFile,
    },
    layout::LayoutFile,
    metrics::{server, SeriesPolicy},
    status::{Status, StatusFile},
    steer::SteerAgent,
    Config, Datapath, Layout,
};

use super::{alive, host::planned, runtime};

/// How often owned host state is checked for drift.
const DRIFT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("vip run (pid {pid}) already owns {}; stop it or run `vip down`", path.display())]
pub struct AlreadyRunning {
    pub pid: u32,
    pub path: PathBuf,
}

/// Everything a running daemon holds.
struct Running<'a> {
    config_path: &'a Path,
    config: Config,
    layout: Layout,
    datapath: Datapath,
    netlink: Netlink,
    state: State,
    file: &'a StateFile,
    layout_file: &'a LayoutFile,
    status: Status,
    status_file: &'a StatusFile,
    exporter: Option<Arc<server::Exporter>>,
    steer: SteerAgent,
}

pub fn run(
    config_path: &Path,
    pin_dir: &Path,
    run_dir: &Path,
    keep_datapath: bool,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    config.check_runnable()?;
    config.check_host()?;
    let file = StateFile::in_dir(run_dir);
    let layout_file = LayoutFile::in_dir(run_dir);
    let status_file = StatusFile::in_dir(run_dir);
    runtime()?.block_on(async {
        let (netlink, steps) = planned(&config).await?;
        let mut state = file.load()?.unwrap_or_default();
        // Drift repairs count on across restarts of the daemon.
        let status = status_file.load()?.unwrap_or_default();
        if let Some(pid) = state
            .daemon_pid
            .filter(|&p| alive(p) && p != std::process::id())
        {
            return Err(AlreadyRunning {
                pid,
                path: file.path().to_path_buf(),
            }
            .into());
        }
        let listener = match config.metrics_listen {
            Some(addr) => Some(server::bind(addr).await?),
            None => None,
        };
        let pins = PinDir::open(pin_dir)?;
        let adopting = pins.holds_pins();
        let (datapath, layout) = if adopting {
            datapath::adopt(&pins, &layout_file, &config)?
        } else {
            let layout = Layout::new(&config);
            let datapath =
                Datapath::load(&layout, &config.interfaces).context("loading the datapath")?;
            (datapath, layout)
        };
        layout_file.save(&layout)?;
        state.daemon_pid = Some(std::process::id());
        file.save(&state)?;
        if adopting {
            log::info!(
                "adopted the datapath pinned in {}: still attached to {}, counters carry on",
                pins.path().display(),
                config.interfaces.join(", ")
            );
        }
        let mut running = Running {
            config_path,
            config,
            layout,
            datapath,
            netlink,
            state,
            file: &file,
            layout_file: &layout_file,
            status,
            status_file: &status_file,
            exporter: None,
            steer: SteerAgent::default(),
        };

        let result = async {
            apply(&running.netlink, &steps, &mut running.state, &file).await?;
            if !adopting {
                let config = &running.config;
                running
                    .datapath
                    .attach_all(&config.interfaces, config.xdp_mode)?;
                if let Err(e) = running.datapath.attach_steering() {
                    if config.ranges.iter().any(|r| !r.steer.is_empty()) {
                        return Err(e.into());
                    }
                    // Without steer entries it only counts delivered lookups.
                    log::warn!(
                        "no sk_lookup program (delivered counts stay 0): {}",
                        vip_userspace::error_chain(&e)
                    );
                }
                running.datapath.pin(&pins)?;
            }
            running
                .steer
                .set_layout(&running.layout, &mut running.datapath)?;
            running.refresh_steering()?;
            let config = &running.config;
            log::info!(
                "counting {} range(s) on {}; maps and links pinned in {}",
                running.layout.ranges.len(),
                config.interfaces.join(", "),
                pins.path().display()
            );
            if let Some(listener) = listener {
                let exporter = server::Exporter::new(
                    pin_dir.to_path_buf(),
                    run_dir.to_path_buf(),
                    SeriesPolicy::from_config(config),
                );
                log::info!(
                    "serving /metrics and /healthz on http://{}",
                    listener.local_addr().context("metrics listener")?
                );
                tokio::spawn(server::serve(listener, exporter.clone()));
                running.exporter = Some(exporter);
            }
            running.serve().await
        }
        .await;

        // With --keep-datapath a clean stop leaves the datapath attached and
        // counting, pinned, and the host state in place; a failure still cleans up.
        if keep_datapath && result.is_ok() {
            log::info!(
                "exiting with the datapath attached, pinned in {}; the next `vip run` adopts it, `vip down` removes it",
                pins.path().display()
            );
            running.state.daemon_pid = None;
            file.save(&running.state)?;
            return Ok(());
        }
        log::info!("shutting down: detaching and reverting host state");
        if let Err(e) = running.datapath.detach_all() {
            log::error!("detaching: {}", vip_userspace::error_chain(&e));
        }
        if let Err(e) = pins.remove() {
            log::error!("removing pins: {}", vip_userspace::error_chain(&e));
        }
        revert(&running.netlink, &mut running.state, &file).await?;
        file.remove()?;
        layout_file.remove()?;
        status_file.remove()?;
        result
    })
}

impl Running<'_> {
    /// Repairs drift and reloads on SIGHUP, until SIGINT or SIGTERM.
    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut drift = tokio::time::interval(DRIFT_INTERVAL);
        // Start-up has just looked for the steer targets.
        let period = vip_userspace::steer::REFRESH_INTERVAL;
        let mut steer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM"); return Ok(()); }
                _ = int.recv() => { log::info!("SIGINT"); return Ok(()); }
                _ = hup.recv() => {
                    if let Err(e) = self.reload().await {
                        log::error!(
                            "reload of {} refused, still running the previous config: {}",
                            self.config_path.display(),
                            vip_userspace::error_chain(e.as_ref())
                        );
                    }
                }
                _ = steer.tick() => {
                    if let Err(e) = self.refresh_steering() {
                        log::error!("steering: {}", vip_userspace::error_chain(e.as_ref()));
                    }
                }
                _ = drift.tick() => {
                    if let Err(e) = self.repair_drift().await {
                        log::error!("drift repair: {}", vip_userspace::error_chain(e.as_ref()));
                    }
                }
            }
        }
    }

    /// Looks for the steer targets' sockets; records their state when it changes.
    fn refresh_steering(&mut self) -> anyhow::Result<()> {
        self.steer.refresh(&mut self.datapath);
        let steer = self.steer.status();
        if steer != self.status.steer {
            self.status.steer = steer;
            self.status_file.save(&self.status)?;
        }
        Ok(())
    }

    /// Puts back owned host state that changed from outside; counts it by kind.
    async fn repair_drift(&mut self) -> anyhow::Result<()> {
        let repaired = repair(&self.netlink, &self.state).await?;
        if repaired.is_empty() {
            return Ok(());
        }
        for item in repaired {
            *self
                .status
                .drift_repairs
                .entry(item.kind().to_string())
                .or_default() += 1;
        }
        self.status_file.save(&self.status)?;
        Ok(())
    }

    /// Re-reads and validates the config, then moves the datapath and the host
    /// state to it through map updates and netlink; nothing is detached. On any
    /// error before the first change, nothing changes.
    async fn reload(&mut self) -> anyhow::Result<()> {
        let config = Config::load(self.config_path)?;
        config.check_runnable()?;
        config.check_host()?;
        let layout = self.layout.update(&config)?;
        let view = HostView::read(&self.netlink).await?;
        view.check_safety(&config)?;
        let wanted = host::desired(&config);
        let steps = plan::plan(&view, wanted.clone())?;
        if config.interfaces != self.config.interfaces
            || config.xdp_mode != self.config.xdp_mode
            || config.metrics_listen != self.config.metrics_listen
        {
            log::warn!(
                "interfaces, xdp_mode and metrics.listen changes take effect when vip restarts"
            );
        }
        self.datapath.update(&self.layout, &layout)?;
        self.layout_file.save(&layout)?;
        self.steer.set_layout(&layout, &mut self.datapath)?;
        apply(&self.netlink, &steps, &mut self.state, self.file).await?;
        revert_unwanted(&self.netlink, &mut self.state, self.file, &wanted).await?;
        if let Some(exporter) = &self.exporter {
            exporter.set_policy(SeriesPolicy::from_config(&config));
        }
        self.layout = layout;
        self.config = config;
        self.refresh_steering()?;
        log::info!(
            "reloaded {}: {} range(s)",
            self.config_path.display(),
            self.layout.ranges.len()
        );
        Ok(())
    }
}

/// `vip reload`: asks the running daemon to reload its config.
pub fn reload(run_dir: &Path) -> anyhow::Result<()> {
    let file = StateFile::in_dir(run_dir);
    let pid = file
        .load()?
        .and_then(|s| s.daemon_pid)
        .filter(|&p| alive(p))
        .ok_or_else(|| NotRunning {
            path: file.path().to_path_buf(),
        })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    println!("asked vip run (pid {pid}) to reload; its log says how it went");
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("no vip run owns {}: nothing to reload", path.display())]
pub struct NotRunning {
    pub path: PathBuf,
}
