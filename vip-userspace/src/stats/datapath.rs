//! Which build's programs run ([`DatapathReport`]): the datapath's record in
//! `MAP_INFO`, its layout version, and the program ids of its pinned links.

use std::path::Path;

use aya::{
    maps::Array,
    programs::links::{FdLink, PinnedLink},
};
use vip_common::{
    MAP_SETTINGS, PROG_SK_LOOKUP, PROG_TC, PROG_XDP, SETTING_LAYOUT_VERSION, SK_LOOKUP_LINK_PIN,
};

use super::{AttachReport, DatapathReport, ProgramReport};
use crate::datapath::{build, maps::Maps, pin, AttachMode};

/// The datapath's build and, when `maps` came from pins, its programs.
pub fn datapath(maps: &Maps, attachments: &[AttachReport]) -> DatapathReport {
    let info = build::info(maps);
    let layout_version = maps
        .map(MAP_SETTINGS)
        .and_then(|map| Array::<_, u32>::try_from(map).ok())
        .and_then(|settings| settings.get(&SETTING_LAYOUT_VERSION, 0).ok())
        .unwrap_or(0);
    let programs = maps
        .pin_dir()
        .map(|dir| programs(dir, attachments))
        .unwrap_or_default();
    DatapathReport {
        build: info.map_or_else(|| "unknown".to_string(), |info| build::text(&info.build)),
        layout_version,
        upgrades: info.map_or(0, |info| info.upgrades),
        programs,
    }
}

fn programs(dir: &Path, attachments: &[AttachReport]) -> Vec<ProgramReport> {
    let mut programs: Vec<ProgramReport> = attachments
        .iter()
        .filter_map(|a| {
            let program = if a.mode == AttachMode::Tc.as_str() {
                PROG_TC
            } else {
                PROG_XDP
            };
            let id = program_id(&dir.join(pin::link_name(&a.interface)))?;
            Some(ProgramReport {
                program: program.to_string(),
                attached_to: a.interface.clone(),
                id,
            })
        })
        .collect();
    if let Some(id) = program_id(&dir.join(SK_LOOKUP_LINK_PIN)) {
        programs.push(ProgramReport {
            program: PROG_SK_LOOKUP.to_string(),
            attached_to: "netns".to_string(),
            id,
        });
    }
    programs
}

/// The id of the program behind the link pinned at `path`.
fn program_id(path: &Path) -> Option<u32> {
    let link = FdLink::from(PinnedLink::from_pin(path).ok()?);
    link.info().ok().map(|info| info.program_id())
}
