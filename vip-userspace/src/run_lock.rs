//! The run directory's lock (`RUN_DIR/lock`, flock): `vip run` holds it for
//! its whole life, `vip apply` and `vip down` while they change the host, so
//! that no two of them write the state file or the pins at once. The pid in
//! the state file tells who runs; it is recorded only once a start has loaded
//! its datapath, and the lock covers the start before that.
//!
//! The file is never removed: a path unlinked while another process waits on
//! it would let a third lock a new file of the same name.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io,
    path::{Path, PathBuf},
};

/// The lock file's name in the run directory.
pub const FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum RunLockError {
    #[error("another vip holds {} (a vip run starting or running, or a vip apply or vip down at work); stop it or wait for it", path.display())]
    Held { path: PathBuf },
    #[error("locking {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::errors::Blame for RunLockError {
    /// Another vip at work is the operator's to sort out.
    fn is_user_error(&self) -> bool {
        matches!(self, RunLockError::Held { .. })
    }
}

/// The held lock; released when dropped (or when the process exits). The
/// file is opened close-on-exec, so children (BIRD) never inherit it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `run_dir` (created if missing), or says who has it.
    pub fn take(run_dir: &Path) -> Result<RunLock, RunLockError> {
        let path = run_dir.join(FILE);
        let io_error = |source| RunLockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(run_dir).map_err(io_error)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(RunLockError::Held { path }),
            Err(TryLockError::Error(source)) => Err(io_error(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let first = RunLock::take(&run_dir).expect("a free lock is taken");
        match RunLock::take(&run_dir) {
            Err(RunLockError::Held { path }) => assert_eq!(path, run_dir.join(FILE)),
            other => panic!("a held lock was taken again: {other:?}"),
        }
        drop(first);
        RunLock::take(&run_dir).expect("a released lock is taken");
        assert!(run_dir.join(FILE).exists(), "the lock file stays");
    }
}
