//! The pin directory on bpffs: claimed by one daemon, read by `vip stats`.

use std::{
    fs::{File, TryLockError},
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Map, MapData},
    programs::links::{FdLink, LinkError, PinnedLink},
};
use nix::sys::statfs::FsType;
use vip_common::{
    LINK_PIN_PREFIX, MAP_NAME_PREFIX, MAP_SETTINGS, PINNED_MAPS, SETTING_LAYOUT_VERSION,
    SETTING_NETNS_INODE, SK_LOOKUP_LINK_PIN,
};

use crate::netns::NetnsId;

const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: FsType = FsType(0xcafe_4a11);

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{} is not on a bpffs; choose a --pin-dir under a bpffs mount", dir.display())]
    NotBpffs { dir: PathBuf },
    #[error("mounting a bpffs on {BPFFS_ROOT}: {source}{}", mount_hint(*source))]
    Mount { source: nix::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("pinning {what} at {}: {source}", path.display())]
    Pin {
        what: String,
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("opening pinned link {}: {source}", path.display())]
    OpenLink { path: PathBuf, source: LinkError },
    #[error("no vip datapath is pinned at {}: is `vip run` running (with this --pin-dir)?", dir.display())]
    NotRunning { dir: PathBuf },
    #[error("the datapath pinned in {} was set up in {theirs}, this is {ours}: run `vip down` there, or give each namespace its own --pin-dir", dir.display())]
    OtherNetns {
        dir: PathBuf,
        theirs: NetnsId,
        ours: NetnsId,
    },
    #[error("another vip holds {} (a vip run or vip down with another --run-dir); stop it, or give each instance its own --pin-dir", dir.display())]
    Held { dir: PathBuf },
    #[error("opening pinned map {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: aya::maps::MapError,
    },
}

/// systemd mounts the bpffs at boot; a daemon without CAP_SYS_ADMIN (the shipped
/// unit) cannot mount one itself.
fn mount_hint(error: nix::Error) -> &'static str {
    if error == nix::Error::EPERM {
        " (mounting needs CAP_SYS_ADMIN: mount a bpffs there first, `mount -t bpf bpf /sys/fs/bpf`)"
    } else {
        ""
    }
}

impl crate::errors::Blame for PinError {
    /// The operator pointed vip at the wrong place, as opposed to a host failure.
    fn is_user_error(&self) -> bool {
        matches!(
            self,
            PinError::NotBpffs { .. }
                | PinError::NotRunning { .. }
                | PinError::OtherNetns { .. }
                | PinError::Held { .. }
        )
    }
}

/// The pin directory of this daemon's datapath, locked (flock on the
/// directory) for as long as it is held: the run directory's lock keeps two
/// vips of one run directory apart, this one two of separate run
/// directories pointed at the same pins. The pins stay when it is dropped
/// (after a failed start, they may be an earlier daemon's that this one
/// refused to adopt); [`PinDir::remove`] removes them.
pub struct PinDir {
    dir: PathBuf,
    _lock: File,
}

impl PinDir {
    /// Makes sure a bpffs is there (mounting one on /sys/fs/bpf if none is, as
    /// bpftool does) and that `dir` exists, and locks it ([`PinError::Held`]
    /// if another vip holds it). It may hold the pins of a datapath an
    /// earlier `vip run` left: see [`PinDir::holds_pins`].
    pub fn open(dir: &Path) -> Result<PinDir, PinError> {
        ensure_bpffs(dir)?;
        // A holder that removes the directory after this one opened it
        // leaves the lock on an unlinked directory: open the path again.
        for _ in 0..LOCK_TRIES {
            std::fs::create_dir_all(dir).map_err(|source| PinError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            if let Some(lock) = lock(dir)? {
                return Ok(PinDir {
                    dir: dir.to_path_buf(),
                    _lock: lock,
                });
            }
        }
        Err(kept_moving(dir))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether any vip pin is there (of a complete datapath or not, of this
    /// layout or another).
    pub fn holds_pins(&self) -> bool {
        [LINK_PIN_PREFIX, MAP_NAME_PREFIX]
            .iter()
            .any(|prefix| !pins_named(&self.dir, prefix).unwrap_or_default().is_empty())
    }

    pub fn pin_map(&self, name: &'static str, map: &Map) -> Result<(), PinError> {
        let path = self.dir.join(name);
        map.pin(&path).map_err(|source| PinError::Pin {
            what: format!("map {name}"),
            path,
            source,
        })
    }

    /// Pins a link as `name` (see [`link_name`]): what it attaches stays
    /// attached after this process exits, until the pin is removed.
    pub fn pin_link(&self, name: &str, link: FdLink) -> Result<PinnedLink, PinError> {
        let path = self.dir.join(name);
        link.pin(&path).map_err(|source| PinError::Pin {
            what: format!("link {name}"),
            path,
            source,
        })
    }

    /// Pins `map` as `name` in place of the map pinned there: pinned under a
    /// temporary name, then renamed over it, so that the name always holds
    /// one of the two (the last map pinned marks the pins complete).
    pub fn replace_map(&self, name: &'static str, map: &Map) -> Result<(), PinError> {
        let path = self.dir.join(name);
        // bpffs refuses names with a dot; vip's prefix, so `vip down` sees it.
        let fresh = self.dir.join(format!("{name}_NEW"));
        let _ = std::fs::remove_file(&fresh);
        map.pin(&fresh).map_err(|source| PinError::Pin {
            what: format!("map {name}"),
            path: fresh.clone(),
            source,
        })?;
        std::fs::rename(&fresh, &path).map_err(|source| PinError::Io { path, source })
    }

    /// The interfaces with a link pinned here.
    pub fn linked_interfaces(&self) -> Result<Vec<String>, PinError> {
        let pins = pins_named(&self.dir, LINK_PIN_PREFIX).map_err(|source| PinError::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(pins
            .iter()
            .filter_map(|path| linked_interface(path.file_name()?.to_str()?))
            .collect())
    }

    pub fn open_link(&self, name: &str) -> Result<PinnedLink, PinError> {
        let path = self.dir.join(name);
        PinnedLink::from_pin(&path).map_err(|source| PinError::OpenLink { path, source })
    }

    /// Removes the pins, which detaches the links this process does not hold.
    pub fn remove(self) -> Result<bool, PinError> {
        remove_pins(&self.dir)
    }
}

const LOCK_TRIES: usize = 8;

/// `dir` locked, or `None` when the directory locked is no longer the one at
/// `dir` (removed, perhaps made again, since it was opened).
fn lock(dir: &Path) -> Result<Option<File>, PinError> {
    let io_error = |source| PinError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let file = match File::open(dir) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(source)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(PinError::Held {
                dir: dir.to_path_buf(),
            })
        }
        Err(TryLockError::Error(source)) => return Err(io_error(source)),
    }
    let locked = file.metadata().map_err(io_error)?;
    let same = std::fs::metadata(dir)
        .is_ok_and(|now| (now.dev(), now.ino()) == (locked.dev(), locked.ino()));
    Ok(same.then_some(file))
}

/// The network namespace the datapath pinned in `dir` was set up in, if its
/// settings map is pinned there and records one.
pub fn netns(dir: &Path) -> Option<NetnsId> {
    setting(dir, SETTING_NETNS_INODE)
        .filter(|&inode| inode != 0)
        .map(|inode| NetnsId(inode.into()))
}

/// The layout version the datapath pinned in `dir` records, if its settings
/// map is pinned there.
pub fn layout_version(dir: &Path) -> Option<u32> {
    setting(dir, SETTING_LAYOUT_VERSION)
}

fn setting(dir: &Path, index: u32) -> Option<u32> {
    let data = MapData::from_pin(dir.join(MAP_SETTINGS)).ok()?;
    let settings: aya::maps::Array<_, u32> = Map::Array(data).try_into().ok()?;
    settings.get(&index, 0).ok()
}

/// The pin name of the link that attaches the datapath to `interface`. bpffs
/// refuses a name with a dot, which an interface name may hold (a VLAN,
/// `eth0.100`), so a dot is written as a colon, which no interface name
/// holds.
pub fn link_name(interface: &str) -> String {
    format!("{LINK_PIN_PREFIX}{}", interface.replace('.', ":"))
}

/// The interface of a link pinned as `name`, if it is one.
fn linked_interface(name: &str) -> Option<String> {
    name.strip_prefix(LINK_PIN_PREFIX)
        .map(|interface| interface.replace(':', "."))
}

/// The pins in `dir` whose names start with `prefix`.
fn pins_named(dir: &Path, prefix: &str) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut pins = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(prefix))
        {
            pins.push(entry.path());
        }
    }
    Ok(pins)
}

/// [`remove_pins`], once no other vip holds `dir` (a daemon of another run
/// directory would lose its datapath): [`PinError::Held`] if one does.
pub fn remove(dir: &Path) -> Result<bool, PinError> {
    for _ in 0..LOCK_TRIES {
        if !dir.exists() {
            return Ok(false);
        }
        if let Some(_lock) = lock(dir)? {
            return remove_pins(dir);
        }
    }
    Err(kept_moving(dir))
}

fn kept_moving(dir: &Path) -> PinError {
    PinError::Io {
        path: dir.to_path_buf(),
        source: io::Error::other("removed and made again while it was being locked"),
    }
}

/// Removes vip's pins from `dir` (links first, which detaches the datapath
/// unless a running process still holds them), then `dir` itself if it is left
/// empty. Returns whether there was anything to remove. Maps this binary does
/// not know, pinned by a newer layout, go too: their names have vip's prefix.
fn remove_pins(dir: &Path) -> Result<bool, PinError> {
    let ours = crate::netns::current();
    if let Some(theirs) = netns(dir).filter(|&theirs| theirs != ours) {
        return Err(PinError::OtherNetns {
            dir: dir.to_path_buf(),
            theirs,
            ours,
        });
    }
    let mut removed = false;
    let named = |prefix| {
        pins_named(dir, prefix).map_err(|source| PinError::Io {
            path: dir.to_path_buf(),
            source,
        })
    };
    let links = named(LINK_PIN_PREFIX)?;
    let maps = PINNED_MAPS.iter().map(|name| dir.join(name));
    let newer_maps = named(MAP_NAME_PREFIX)?.into_iter().filter(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_none_or(|name| !PINNED_MAPS.contains(&name))
    });
    let steering = std::iter::once(dir.join(SK_LOOKUP_LINK_PIN));
    for path in links
        .into_iter()
        .chain(steering)
        .chain(maps)
        .chain(newer_maps)
    {
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

/// Which map objects the pins of `dir` are, as bpffs inodes (a pin made
/// anew, or renamed over another, is a new inode): a reader that holds maps
/// open sees from a change that they are no longer the datapath's (a reload
/// that changed the attachments, an upgrade, `vip down` then `vip run`).
/// `None` without a complete datapath.
pub fn maps_identity(dir: &Path) -> Option<Vec<u64>> {
    if !is_complete(dir) {
        return None;
    }
    PINNED_MAPS
        .iter()
        .map(|name| {
            std::fs::symlink_metadata(dir.join(name))
                .ok()
                .map(|m| m.ino())
        })
        .collect()
}

/// Whether the datapath pinned at `dir` finished setting up (its last pin exists).
pub fn is_complete(dir: &Path) -> bool {
    dir.join(PINNED_MAPS[PINNED_MAPS.len() - 1]).exists()
}

/// Makes sure `dir` is (or will be, once created) on a bpffs, mounting one on
/// /sys/fs/bpf if `dir` lies there and none is mounted.
pub fn ensure_bpffs(dir: &Path) -> Result<(), PinError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of plain files stands in for bpffs: `remove` unlinks
    /// names, and with no settings pin it has no namespace to refuse.
    fn dir_with(test: &str, names: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vip-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        dir
    }

    #[test]
    fn remove_takes_the_maps_of_a_newer_layout_and_the_directory() {
        let dir = dir_with("newer", &["link-eth0", "VIP_GLOBAL", "VIP_SOME_NEWER_MAP"]);
        assert!(remove(&dir).unwrap());
        assert!(!dir.exists());
    }

    #[test]
    fn a_link_pin_name_has_no_dot_and_gives_the_interface_back() {
        for interface in ["eth0", "eth0.100", "bond0.7.3"] {
            let name = link_name(interface);
            assert!(!name.contains('.'), "{name}");
            assert_eq!(linked_interface(&name).as_deref(), Some(interface));
        }
        assert_eq!(link_name("eth0.100"), "link-eth0:100");
        assert_eq!(linked_interface("VIP_GLOBAL"), None);
    }

    #[test]
    fn remove_leaves_what_is_not_vips() {
        let dir = dir_with("not-ours", &["VIP_GLOBAL", "someone-elses-map"]);
        let error = remove(&dir).unwrap_err();
        assert!(matches!(error, PinError::Io { .. }), "{error}");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["someone-elses-map"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
