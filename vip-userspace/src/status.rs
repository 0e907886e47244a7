//! The status file: what the running daemon sees (its steer targets, the drift
//! it repaired), written by `vip run` and read by `vip stats` and the exporter
//! through [`crate::stats::collect`]. A leaf: the host-only commands never need it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run_files::{RunFile, RunFileKind};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Steer targets and whether each is up, as the daemon last saw them.
    pub steer: Vec<SteerStatus>,
    /// Host state put back after it changed from outside, by item kind.
    pub drift_repairs: BTreeMap<String, u64>,
}

impl RunFileKind for Status {
    const FILE: &'static str = "status.json";
    const WHAT: &'static str = "status file";
    const VERSION: u32 = 1;
}

pub type StatusFile = RunFile<Status>;

/// A steer target as `vip stats` and the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteerStatus {
    pub range: String,
    #[serde(rename = "match")]
    pub matches: String,
    pub to: String,
    /// The entry's index in the steer maps.
    pub entry: u32,
    pub up: bool,
}
