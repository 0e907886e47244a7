//! The operator's drain requests (`vip drain`, `vip undrain`): a run file, so
//! that a drained range stays drained across restarts of the daemon.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::run_files::{RunFile, RunFileKind};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Every range, whatever `ranges` says.
    pub all: bool,
    pub ranges: BTreeSet<String>,
}

impl Drain {
    pub fn covers(&self, range: &str) -> bool {
        self.all || self.ranges.contains(range)
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.ranges.is_empty()
    }
}

impl RunFileKind for Drain {
    const FILE: &'static str = "drain.json";
    const WHAT: &'static str = "drain file";
    const VERSION: u32 = 1;
}

pub type DrainFile = RunFile<Drain>;
