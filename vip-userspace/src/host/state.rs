//! The state file: what vip changed on this host, so `vip down` can undo exactly
//! that and nothing else.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::items::Item;
use crate::run_files::{read_if_exists, remove_if_exists, write_atomically};

pub const DEFAULT_RUN_DIR: &str = "/run/vip";
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("state file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {} has version {found}, this vip understands {STATE_VERSION}; revert it with the vip that wrote it", path.display())]
    Version { path: PathBuf, found: u32 },
}

/// Something vip added or changed, with what it replaced (sysctls only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub item: Item,
    pub previous: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The `vip run` that owns this state, if one is running.
    pub daemon_pid: Option<u32>,
    /// In the order applied; reverted in reverse.
    pub owned: Vec<Owned>,
    /// Drift repairs by item kind.
    pub repairs: BTreeMap<String, u64>,
    /// Steer targets and whether each is up, as the running daemon last saw them.
    #[serde(default)]
    pub steer: Vec<crate::steer::SteerStatus>,
}

impl State {
    pub fn new() -> State {
        State {
            version: STATE_VERSION,
            ..State::default()
        }
    }

    pub fn owns(&self, item: &Item) -> bool {
        self.owned.iter().any(|o| o.item.same_target(item))
    }
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(run_dir: &Path) -> StateFile {
        StateFile {
            path: run_dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Option<State>, StateError> {
        let Some(text) = read_if_exists(&self.path).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        let state: State = serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: self.path.clone(),
            source,
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Writes atomically (a temporary file renamed over the old one).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(state).expect("state serializes");
        write_atomically(&self.path, &text).map_err(|e| self.io(e))
    }

    pub fn remove(&self) -> Result<(), StateError> {
        remove_if_exists(&self.path)
            .map(drop)
            .map_err(|e| self.io(e))
    }

    fn io(&self, source: io::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source,
        }
    }
}
