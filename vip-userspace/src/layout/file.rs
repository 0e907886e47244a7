//! The layout of the running datapath, saved beside the state file: what a
//! restarted `vip run` needs to adopt the pinned maps and keep updating them.
//! Its format version is the maps' [`LAYOUT_VERSION`].

use vip_common::LAYOUT_VERSION;

use super::Layout;
use crate::run_files::{RunFile, RunFileKind};

impl RunFileKind for Layout {
    const FILE: &'static str = "layout.json";
    const WHAT: &'static str = "layout file";
    const VERSION: u32 = LAYOUT_VERSION;
}

pub type LayoutFile = RunFile<Layout>;
