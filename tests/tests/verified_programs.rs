//! A start verifies vip_tc only where an interface may be attached in TC
//! mode (vip_xdp always): it took a fifth of each start's verification
//! (NOTES.md, "Upgrades in place").

use std::path::Path;

use aya::{maps::MapData, programs::loaded_programs};
use vip_common::{MAP_GLOBAL_STATS, PROG_TC, PROG_XDP};
use vip_tests::{
    daemon::{Daemon, Instance},
    root::require_root,
    seed::{DirectLab, DIRECT_SERVER_IF},
};

fn config(mode: &str) -> String {
    format!(
        "interfaces = [\"{DIRECT_SERVER_IF}\"]\nxdp_mode = \"{mode}\"\n[metrics]\nlisten = \"off\"\n\
         [[range]]\nname = \"web\"\ncidr = \"192.0.2.0/24\"\naccept = \"route\"\n"
    )
}

/// The names of the loaded programs that use the global counters pinned in
/// `pins`: this datapath's classifiers, whatever other tests load meanwhile.
fn classifiers_of(pins: &Path) -> Vec<String> {
    let map = MapData::from_pin(pins.join(MAP_GLOBAL_STATS)).expect("the global counters pin");
    let id = map.info().expect("the map's info").id();
    let mut names: Vec<String> = loaded_programs()
        .filter_map(Result::ok)
        .filter(|program| {
            program
                .map_ids()
                .ok()
                .flatten()
                .is_some_and(|ids| ids.contains(&id))
        })
        .map(|program| program.name_as_str().unwrap_or("?").to_string())
        .collect();
    names.sort();
    names
}

fn loaded_in_mode(tag: &str, mode: &str) -> Vec<String> {
    let lab = DirectLab::new(tag);
    let instance = Instance::new(tag);
    let daemon = Daemon::start(&lab.server, &config(mode), &instance);
    let loaded = classifiers_of(instance.pin_dir());
    daemon.stop();
    loaded
}

#[test]
fn an_xdp_start_verifies_no_tc_program() {
    if !require_root("an_xdp_start_verifies_no_tc_program") {
        return;
    }
    assert_eq!(loaded_in_mode("vfnat", "native"), [PROG_XDP]);
}

#[test]
fn a_tc_start_verifies_the_tc_program() {
    if !require_root("a_tc_start_verifies_the_tc_program") {
        return;
    }
    let mut expected = [PROG_TC, PROG_XDP];
    expected.sort();
    assert_eq!(loaded_in_mode("vftc", "tc"), expected);
}
