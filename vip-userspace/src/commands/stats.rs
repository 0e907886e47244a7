use std::path::Path;

use vip_userspace::{
    host::StateFile,
    stats::{self, PinnedMaps},
};

pub fn stats(pin_dir: &Path, run_dir: &Path, json: bool) -> anyhow::Result<()> {
    let maps = PinnedMaps::open(pin_dir)?;
    let mut report = stats::read(&maps)?;
    report.timestamp =
        Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
    if let Some(state) = StateFile::in_dir(run_dir).load()? {
        report.drift_repairs = state.repairs;
        report.steer = stats::steering(&maps, &state.steer)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", stats::table(&report));
    }
    Ok(())
}
