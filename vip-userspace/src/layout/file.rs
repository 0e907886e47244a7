//! The layout of the running datapath, saved beside the state file: what a
//! restarted `vip run` needs to adopt the pinned maps and keep updating them.
//! Its format version is the maps' [`LAYOUT_VERSION`]; the layouts this binary
//! upgrades from wrote the same fields.

use serde::{Deserialize, Serialize};
use vip_common::{LAYOUT_VERSION, OLDEST_UPGRADABLE};

use super::Layout;
use crate::run_files::{RunFile, RunFileKind};

impl RunFileKind for Layout {
    const FILE: &'static str = "layout.json";
    const WHAT: &'static str = "layout file";
    const VERSION: u32 = LAYOUT_VERSION;
    const READS: &'static [u32] = &UPGRADABLE;
}

const UPGRADABLE: [u32; (LAYOUT_VERSION - OLDEST_UPGRADABLE) as usize] = {
    let mut versions = [0; (LAYOUT_VERSION - OLDEST_UPGRADABLE) as usize];
    let mut i = 0;
    while i < versions.len() {
        versions[i] = OLDEST_UPGRADABLE + i as u32;
        i += 1;
    }
    versions
};

pub type LayoutFile = RunFile<Layout>;

/// The layout a reload is moving the datapath to, saved before its first map
/// write and removed once `layout.json` holds it. While it exists (a reload
/// was killed half-way), the maps may hold any mix of `layout.json`'s layout
/// and this one, and the next start first moves them to this one
/// (`datapath::adopt`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PendingLayout(pub Layout);

impl RunFileKind for PendingLayout {
    const FILE: &'static str = "layout-pending.json";
    const WHAT: &'static str = "pending layout file";
    const VERSION: u32 = LAYOUT_VERSION;
    const READS: &'static [u32] = &UPGRADABLE;
}

pub type PendingLayoutFile = RunFile<PendingLayout>;
