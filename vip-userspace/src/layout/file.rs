//! The layout of the running datapath, saved beside the state file: what a
//! restarted `vip run` needs to adopt the pinned maps and keep updating them.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use vip_common::LAYOUT_VERSION;

use super::Layout;
use crate::run_files::{read_if_exists, remove_if_exists, write_atomically};

#[derive(Debug, thiserror::Error)]
pub enum LayoutFileError {
    #[error("layout file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("layout file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Saved {
    layout_version: u32,
    layout: Layout,
}

/// What a layout file holds.
#[derive(Debug)]
pub enum SavedLayout {
    Current(Layout),
    /// Saved by a binary of another `LAYOUT_VERSION`: not read further.
    OtherVersion(u32),
}

pub struct LayoutFile {
    path: PathBuf,
}

impl LayoutFile {
    pub fn in_dir(run_dir: &Path) -> LayoutFile {
        LayoutFile {
            path: run_dir.join("layout.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Option<SavedLayout>, LayoutFileError> {
        let Some(text) = read_if_exists(&self.path).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        // Read the version alone first: a layout of another version may not parse.
        #[derive(Deserialize)]
        struct Version {
            layout_version: u32,
        }
        let version: Version = serde_json::from_str(&text).map_err(|e| self.parse(e))?;
        if version.layout_version != LAYOUT_VERSION {
            return Ok(Some(SavedLayout::OtherVersion(version.layout_version)));
        }
        let saved: Saved = serde_json::from_str(&text).map_err(|e| self.parse(e))?;
        Ok(Some(SavedLayout::Current(saved.layout)))
    }

    /// Writes atomically (a temporary file renamed over the old one).
    pub fn save(&self, layout: &Layout) -> Result<(), LayoutFileError> {
        let saved = Saved {
            layout_version: LAYOUT_VERSION,
            layout: layout.clone(),
        };
        let text = serde_json::to_string(&saved).expect("a layout serializes");
        write_atomically(&self.path, &text).map_err(|e| self.io(e))
    }

    /// Returns whether there was a file to remove.
    pub fn remove(&self) -> Result<bool, LayoutFileError> {
        remove_if_exists(&self.path).map_err(|e| self.io(e))
    }

    fn io(&self, source: io::Error) -> LayoutFileError {
        LayoutFileError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn parse(&self, source: serde_json::Error) -> LayoutFileError {
        LayoutFileError::Parse {
            path: self.path.clone(),
            source,
        }
    }
}
