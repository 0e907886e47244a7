//! The versioned JSON files in the run directory: the state file (what vip owns
//! on the host), the layout file (where each range lives in the maps) and the
//! status file (what the running daemon sees). Each records its format version
//! and the network namespace it describes, and is refused in any other.

use std::{
    io,
    marker::PhantomData,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::netns::{self, NetnsId};

/// What one kind of run file holds.
pub trait RunFileKind: Serialize + DeserializeOwned {
    /// Its name in the run directory.
    const FILE: &'static str;
    /// What messages call it.
    const WHAT: &'static str;
    /// The version of its format this binary reads and writes.
    const VERSION: u32;
    /// Older format versions that read as this one (the same fields).
    const READS: &'static [u32] = &[];
}

#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what} {} has format version {found}, this vip reads {supported}: it was written by another vip", path.display())]
    Version {
        what: &'static str,
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{what} {} belongs to another network namespace ({theirs}; this is {ours}): give each namespace its own --run-dir", path.display())]
    OtherNetns {
        what: &'static str,
        path: PathBuf,
        theirs: NetnsId,
        ours: NetnsId,
    },
}

impl crate::errors::Blame for RunFileError {
    /// The file is not this binary's or this namespace's to use: the operator
    /// pointed vip at it, as opposed to a failure of the host.
    fn is_user_error(&self) -> bool {
        matches!(
            self,
            RunFileError::Version { .. } | RunFileError::OtherNetns { .. }
        )
    }
}

/// What every run file starts with.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    netns: NetnsId,
}

#[derive(Serialize)]
struct Written<'a, T> {
    #[serde(flatten)]
    header: Header,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Deserialize)]
struct Read<T> {
    #[serde(flatten)]
    body: T,
}

/// One run file of kind `T` in a run directory, for the calling process's
/// network namespace.
pub struct RunFile<T> {
    path: PathBuf,
    netns: NetnsId,
    kind: PhantomData<T>,
}

impl<T: RunFileKind> RunFile<T> {
    pub fn in_dir(run_dir: &Path) -> RunFile<T> {
        RunFile {
            path: run_dir.join(T::FILE),
            netns: netns::current(),
            kind: PhantomData,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's contents, `None` if there is none; an error if it is of
    /// another version or namespace.
    pub fn load(&self) -> Result<Option<T>, RunFileError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        // The header alone first: a body of another version may not parse.
        let header: Header = serde_json::from_str(&text).map_err(|e| self.parse(e))?;
        if header.version != T::VERSION && !T::READS.contains(&header.version) {
            return Err(RunFileError::Version {
                what: T::WHAT,
                path: self.path.clone(),
                found: header.version,
                supported: T::VERSION,
            });
        }
        if header.netns != self.netns {
            return Err(RunFileError::OtherNetns {
                what: T::WHAT,
                path: self.path.clone(),
                theirs: header.netns,
                ours: self.netns,
            });
        }
        let read: Read<T> = serde_json::from_str(&text).map_err(|e| self.parse(e))?;
        Ok(Some(read.body))
    }

    /// Writes through a temporary file renamed over the old one, so a reader
    /// (or a restart after a crash) sees the old contents or the new, never half.
    pub fn save(&self, body: &T) -> Result<(), RunFileError> {
        let written = Written {
            header: Header {
                version: T::VERSION,
                netns: self.netns,
            },
            body,
        };
        let text = serde_json::to_string_pretty(&written).expect("run files serialize");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| self.io(e))
    }

    /// Returns whether there was a file to remove.
    pub fn remove(&self) -> Result<bool, RunFileError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(e)),
        }
    }

    fn io(&self, source: io::Error) -> RunFileError {
        RunFileError::Io {
            what: T::WHAT,
            path: self.path.clone(),
            source,
        }
    }

    fn parse(&self, source: serde_json::Error) -> RunFileError {
        RunFileError::Parse {
            what: T::WHAT,
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Blame;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        items: Vec<u32>,
    }

    impl RunFileKind for Sample {
        const FILE: &'static str = "sample.json";
        const WHAT: &'static str = "sample file";
        const VERSION: u32 = 3;
    }

    #[test]
    fn saves_loads_and_refuses_other_versions_and_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let file = RunFile::<Sample>::in_dir(dir.path());
        assert!(file.load().unwrap().is_none());
        let sample = Sample { items: vec![1, 2] };
        file.save(&sample).unwrap();
        assert_eq!(file.load().unwrap(), Some(sample));
        let text = std::fs::read_to_string(file.path()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["version"], 3);
        assert_eq!(value["netns"], netns::current().0);

        let mut other = value.clone();
        other["version"] = 2.into();
        std::fs::write(file.path(), other.to_string()).unwrap();
        let error = file.load().unwrap_err();
        assert!(matches!(
            error,
            RunFileError::Version {
                found: 2,
                supported: 3,
                ..
            }
        ));
        assert!(error.is_user_error());

        let mut other = value;
        other["netns"] = 1.into();
        std::fs::write(file.path(), other.to_string()).unwrap();
        let error = file.load().unwrap_err();
        assert!(
            matches!(
                error,
                RunFileError::OtherNetns {
                    theirs: NetnsId(1),
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.is_user_error());

        assert!(file.remove().unwrap());
        assert!(!file.remove().unwrap());
    }
}
