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

/// Where a start or a reload is moving the datapath, saved before its first
/// map write and removed once `layout.json` holds `layout`. While it exists,
/// the maps may hold any mix of `layout.json`'s layout, `earlier` and
/// `layout`: a start or reload was killed half-way, or a reload's map writes
/// failed and the daemon runs on. The next start or reload first moves the
/// maps through each layout in turn, then on to its config (`datapath::adopt`,
/// the daemon's reload).
///
/// The file's older form, a layout alone, reads as a chain of one; a vip
/// that wrote that form reads this one's `layout` and ignores `earlier`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLayout {
    /// Layouts whose moves were cut short before the one to `layout`
    /// began, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Layout>,
    #[serde(flatten)]
    pub layout: Layout,
}

impl PendingLayout {
    /// Every layout the maps may be on their way to, oldest first.
    pub fn chain(self) -> Vec<Layout> {
        let mut chain = self.earlier;
        chain.push(self.layout);
        chain
    }

    /// A move to `layout` after the cut-short moves of `earlier`.
    pub fn after(earlier: &[Layout], layout: &Layout) -> PendingLayout {
        PendingLayout {
            earlier: earlier.to_vec(),
            layout: layout.clone(),
        }
    }
}

impl RunFileKind for PendingLayout {
    const FILE: &'static str = "layout-pending.json";
    const WHAT: &'static str = "pending layout file";
    const VERSION: u32 = LAYOUT_VERSION;
    const READS: &'static [u32] = &UPGRADABLE;
}

pub type PendingLayoutFile = RunFile<PendingLayout>;
