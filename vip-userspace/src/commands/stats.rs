use std::path::Path;

use vip_userspace::stats::{self, PinnedMaps};

pub fn stats(pin_dir: &Path, run_dir: &Path, json: bool) -> anyhow::Result<()> {
    let maps = PinnedMaps::open(pin_dir)?;
    let mut report = stats::collect(&maps, run_dir)?;
    report.timestamp =
        Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", stats::table(&report));
    }
    Ok(())
}
