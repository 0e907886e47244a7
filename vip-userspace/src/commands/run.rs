//! `vip run`: host state, datapath, drift repair, and cleanup on SIGINT/SIGTERM.

use std::{path::Path, time::Duration};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use vip_userspace::{
    datapath::pin::PinDir,
    host::{
        apply::{apply, repair, revert},
        Netlink, State, StateFile,
    },
    Config, Datapath, Layout,
};

use super::{alive, host::planned, runtime};

/// How often owned host state is checked for drift.
const DRIFT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("vip run (pid {pid}) already owns {}; stop it or run `vip down`", path.display())]
pub struct AlreadyRunning {
    pub pid: u32,
    pub path: std::path::PathBuf,
}

pub fn run(config_path: &Path, pin_dir: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    config.check_runnable()?;
    config.check_host()?;
    let layout = Layout::new(&config);
    let file = StateFile::in_dir(run_dir);
    runtime()?.block_on(async {
        let (netlink, steps) = planned(&config).await?;
        let mut state = file.load()?.unwrap_or_else(State::new);
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
        let pins = PinDir::claim(pin_dir)?;
        let mut datapath =
            Datapath::load(&layout, config.interfaces.len()).context("loading the datapath")?;
        state.daemon_pid = Some(std::process::id());
        file.save(&state)?;

        let result = async {
            apply(&netlink, &steps, &mut state, &file).await?;
            datapath.attach_all(&config.interfaces, config.xdp_mode)?;
            pins.pin_maps(datapath.ebpf())?;
            log::info!(
                "counting {} range(s) on {}; maps pinned in {}",
                layout.ranges.len(),
                config.interfaces.join(", "),
                pins.path().display()
            );
            serve(&netlink, &mut state, &file).await
        }
        .await;

        log::info!("shutting down: detaching and reverting host state");
        if let Err(e) = datapath.detach_all() {
            log::error!("detaching: {}", vip_userspace::error_chain(&e));
        }
        drop(pins);
        revert(&netlink, &mut state, &file).await?;
        file.remove()?;
        result
    })
}

/// Repairs drift until SIGINT or SIGTERM.
async fn serve(netlink: &Netlink, state: &mut State, file: &StateFile) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut drift = tokio::time::interval(DRIFT_INTERVAL);
    loop {
        tokio::select! {
            _ = term.recv() => { log::info!("SIGTERM"); return Ok(()); }
            _ = int.recv() => { log::info!("SIGINT"); return Ok(()); }
            _ = drift.tick() => {
                if let Err(e) = repair(netlink, state, file).await {
                    log::error!("drift repair: {}", vip_userspace::error_chain(&e));
                }
            }
        }
    }
}
