//! The pin directory on bpffs: claimed by one daemon, read by `vip stats`.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Map, MapData},
    Ebpf,
};
use nix::sys::statfs::FsType;
use vip_common::PINNED_MAPS;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/vip";
const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: FsType = FsType(0xcafe_4a11);

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{} already holds vip pins: another vip runs on it, or one was killed (run `vip down`)", dir.display())]
    InUse { dir: PathBuf },
    #[error("{} is not on a bpffs; choose a --pin-dir under a bpffs mount", dir.display())]
    NotBpffs { dir: PathBuf },
    #[error("mounting a bpffs on {BPFFS_ROOT}: {source}")]
    Mount { source: nix::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("pinning map {map} at {}: {source}", path.display())]
    Pin {
        map: &'static str,
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("no vip datapath is pinned at {}: is `vip run` running (with this --pin-dir)?", dir.display())]
    NotRunning { dir: PathBuf },
    #[error("opening pinned map {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: aya::maps::MapError,
    },
}

impl PinError {
    /// The operator pointed vip at the wrong place, as opposed to a host failure.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            PinError::InUse { .. } | PinError::NotBpffs { .. } | PinError::NotRunning { .. }
        )
    }
}

/// A pin directory this process owns; dropping it removes the pins and the directory.
pub struct PinDir {
    dir: PathBuf,
}

impl PinDir {
    /// Makes sure a bpffs is there (mounting one on /sys/fs/bpf if none is, as
    /// bpftool does) and claims an empty `dir`.
    pub fn claim(dir: &Path) -> Result<PinDir, PinError> {
        ensure_bpffs(dir)?;
        if holds_pins(dir) {
            return Err(PinError::InUse {
                dir: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| PinError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(PinDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Pins every map in `PINNED_MAPS` order; the last pin marks a complete datapath.
    pub fn pin_maps(&self, ebpf: &Ebpf) -> Result<(), PinError> {
        for name in PINNED_MAPS {
            let path = self.dir.join(name);
            let map = ebpf.map(name).ok_or(PinError::NotRunning {
                dir: self.dir.clone(),
            })?;
            map.pin(&path).map_err(|source| PinError::Pin {
                map: name,
                path,
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.dir) {
            log::error!("removing pins: {e}");
        }
    }
}

/// Removes vip's pins from `dir`, then `dir` itself if it is left empty.
/// Returns whether there was anything to remove.
pub fn remove(dir: &Path) -> Result<bool, PinError> {
    let mut removed = false;
    for name in PINNED_MAPS {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PinError::Io { path, source }),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(removed),
        Err(source) => Err(PinError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Opens one pinned map of a running datapath.
pub fn open(dir: &Path, name: &str) -> Result<Map, PinError> {
    let path = dir.join(name);
    if !path.exists() {
        return Err(PinError::NotRunning {
            dir: dir.to_path_buf(),
        });
    }
    MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|source| PinError::Open { path, source })
}

/// Whether the datapath pinned at `dir` finished setting up (its last pin exists).
pub fn is_complete(dir: &Path) -> bool {
    dir.join(PINNED_MAPS[PINNED_MAPS.len() - 1]).exists()
}

fn holds_pins(dir: &Path) -> bool {
    PINNED_MAPS.iter().any(|name| dir.join(name).exists())
}

fn ensure_bpffs(dir: &Path) -> Result<(), PinError> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if is_bpffs(existing) {
        return Ok(());
    }
    if existing == Path::new(BPFFS_ROOT) {
        nix::mount::mount(
            Some("bpf"),
            BPFFS_ROOT,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|source| PinError::Mount { source })?;
        log::info!("mounted a bpffs on {BPFFS_ROOT} (none was mounted)");
        return Ok(());
    }
    Err(PinError::NotBpffs {
        dir: dir.to_path_buf(),
    })
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == BPF_FS_MAGIC)
        .unwrap_or(false)
}
