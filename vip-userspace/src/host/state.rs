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

    /// The `vip run` that owns this state, if it is still running.
    pub fn live_daemon(&self) -> Option<u32> {
        self.daemon_pid.filter(|&pid| alive(pid))
    }
}

/// Whether a process with this pid exists and has not exited (a zombie has).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
