//! One function per subcommand.

use std::path::Path;

use anyhow::Context;
use vip_userspace::{
    datapath::pin::{self, PinDir},
    stats::{self, PinnedMaps},
    Config, Datapath, Layout,
};

pub fn run(config_path: &Path, pin_dir: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    config.check_host()?;
    let layout = Layout::new(&config);
    let pins = PinDir::claim(pin_dir)?;
    let mut datapath =
        Datapath::load(&layout, config.interfaces.len()).context("loading the datapath")?;
    datapath.attach_all(&config.interfaces, config.xdp_mode)?;
    pins.pin_maps(datapath.ebpf())?;
    log::info!(
        "counting {} range(s) on {}; maps pinned in {}",
        layout.ranges.len(),
        config.interfaces.join(", "),
        pins.path().display()
    );
    wait_for_shutdown()?;
    log::info!("shutting down: detaching");
    datapath.detach_all()?;
    drop(pins);
    Ok(())
}

fn wait_for_shutdown() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM"),
            _ = int.recv() => log::info!("SIGINT"),
        }
        Ok(())
    })
}

pub fn check(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    config.check_host()?;
    println!(
        "{}: ok ({} ranges, {} interfaces)",
        config_path.display(),
        config.ranges.len(),
        config.interfaces.len()
    );
    Ok(())
}

pub fn stats(pin_dir: &Path, json: bool) -> anyhow::Result<()> {
    let maps = PinnedMaps::open(pin_dir)?;
    let report = stats::read(&maps)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", stats::table(&report));
    }
    Ok(())
}

pub fn down(pin_dir: &Path) -> anyhow::Result<()> {
    if pin::remove(pin_dir)? {
        println!("removed pins in {}", pin_dir.display());
    } else {
        println!("nothing pinned in {}", pin_dir.display());
    }
    Ok(())
}
