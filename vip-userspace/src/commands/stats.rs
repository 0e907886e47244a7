use std::path::Path;

use vip_userspace::{
    datapath::maps::{Access, Maps},
    stats::{self, Selection},
};

use super::Failure;

pub fn stats(
    pin_dir: &Path,
    run_dir: &Path,
    selection: &Selection,
    json: bool,
) -> Result<(), Failure> {
    let maps = Maps::open_pinned(pin_dir, Access::ReadOnly)?;
    let mut report = stats::collect(&maps, run_dir)?;
    selection.apply(&mut report)?;
    report.timestamp =
        Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", stats::table(&report));
    }
    Ok(())
}
