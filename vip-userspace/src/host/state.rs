//! The state file: what vip changed on this host, so `vip down` can undo exactly
//! that and nothing else.

use serde::{Deserialize, Serialize};

use super::items::Item;
use crate::run_files::{RunFile, RunFileKind};

/// Something vip added or changed, with what it replaced (sysctls only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub item: Item,
    pub previous: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The `vip run` that owns this state, if one is running.
    pub daemon_pid: Option<u32>,
    /// In the order applied; reverted in reverse.
    pub owned: Vec<Owned>,
}

impl RunFileKind for State {
    const FILE: &'static str = "state.json";
    const WHAT: &'static str = "state file";
    const VERSION: u32 = 2;
}

pub type StateFile = RunFile<State>;

impl State {
    pub fn owns(&self, item: &Item) -> bool {
        self.owned.iter().any(|o| o.item.same_target(item))
    }
}
