//! What the tests read from deploy/: the shipped unit's capabilities, and
//! `setpriv` to run a command bounded to them.

use std::path::PathBuf;

/// The text of `deploy/FILE`.
pub fn deploy(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `CapabilityBoundingSet=` of deploy/vip.service, as setpriv names them.
pub fn unit_capabilities() -> Vec<String> {
    let unit = deploy("vip.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{c} is not a CAP_ name"))
                .to_lowercase()
        })
        .collect();
    assert!(
        !unit.contains("AmbientCapabilities=") && !unit.contains("\nUser="),
        "the unit runs vip as root, bounded: ambient capabilities would mean another set"
    );
    caps
}

/// `setpriv` limiting the bounding set to `caps`: as root, that is exactly what
/// the daemon gets, as under the unit's CapabilityBoundingSet=.
pub fn bounded(caps: &[String]) -> Vec<String> {
    let set: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    [
        "setpriv",
        "--bounding-set",
        &format!("-all,{}", set.join(",")),
        "--inh-caps",
        "-all",
    ]
    .map(String::from)
    .to_vec()
}
