//! Adopting the datapath an earlier `vip run` left pinned, after `kill -9` or a
//! stop with `--keep-datapath`: its programs stay attached through the pinned
//! links and keep counting in the pinned maps, so nothing is missed in the gap.
//! Everything is checked before anything changes.

use std::path::{Path, PathBuf};

use aya::maps::Array;
use vip_common::{
    maps_added_since, AttachMeta, LAYOUT_VERSION, MAP_ATTACH_META, OLDEST_UPGRADABLE,
    SK_LOOKUP_LINK_PIN,
};

use super::{
    attach::{AttachMode, Attachment, Link},
    pin::{self, PinDir, PinError},
    upgrade::{self, Reattach},
    Datapath, DatapathError,
};
use crate::{
    config::Config,
    errors::Blame,
    host::kernel,
    layout::{Layout, LayoutError, LayoutFile, PendingLayout, PendingLayoutFile},
    netns::{self, NetnsId},
    run_files::RunFileError,
};

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{} holds the pins of a datapath that never finished setting up; run `vip down`", dir.display())]
    Incomplete { dir: PathBuf },
    #[error("the datapath pinned in {} has layout version {}, this vip has {LAYOUT_VERSION}: run `vip down`, then start again", dir.display(), found.map_or("none".to_string(), |v| v.to_string()))]
    Version { dir: PathBuf, found: Option<u32> },
    #[error("{} holds a pinned datapath but its layout file {} is missing (another --run-dir?); run `vip down`", dir.display(), layout.display())]
    NoLayout { dir: PathBuf, layout: PathBuf },
    #[error("the config does not fit the maps of the pinned datapath ({0}); run `vip down` to start afresh")]
    TooBig(#[source] LayoutError),
    #[error("the datapath pinned in {} was set up by a newer vip (layout version {found}, this vip has {LAYOUT_VERSION}): run that vip, or `vip down` and start afresh", dir.display())]
    Newer { dir: PathBuf, found: u32 },
    #[error("the pinned datapath's attachment to {interface} has no pinned link (a TC filter attached through netlink, as kernels before 6.6 have no TCX, does not outlive its daemon): run `vip down`")]
    NotPinned { interface: String },
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("the datapath pinned in {} was set up in {theirs}, this is {ours}: give each namespace its own --pin-dir", dir.display())]
    OtherNetns {
        dir: PathBuf,
        theirs: NetnsId,
        ours: NetnsId,
    },
    #[error(transparent)]
    LayoutFile(#[from] RunFileError),
    #[error("adopting the pinned datapath: {0}")]
    Datapath(#[source] Box<DatapathError>),
}

impl Blame for AdoptError {
    /// The pins cannot serve this binary or config: the operator must decide
    /// (`vip down`), as opposed to a failure of the host.
    fn is_user_error(&self) -> bool {
        match self {
            AdoptError::LayoutFile(e) => e.is_user_error(),
            AdoptError::Pin(e) => e.is_user_error(),
            AdoptError::Datapath(e) => e.is_user_error(),
            _ => true,
        }
    }
}

impl From<DatapathError> for AdoptError {
    fn from(e: DatapathError) -> Self {
        AdoptError::Datapath(Box::new(e))
    }
}

/// The pinned datapath in `pins`, moved to `config` through map updates and
/// running this binary's programs (an in-place upgrade, see
/// [`super::upgrade`]); and the layout it now has.
pub fn adopt(
    pins: &PinDir,
    layout_file: &LayoutFile,
    pending_file: &PendingLayoutFile,
    config: &Config,
) -> Result<(Datapath, Layout), AdoptError> {
    let dir = pins.path().to_path_buf();
    if !pin::is_complete(&dir) {
        return Err(AdoptError::Incomplete { dir });
    }
    let found = pin::layout_version(&dir);
    let version = match found {
        Some(version) if version > LAYOUT_VERSION => {
            return Err(AdoptError::Newer {
                dir,
                found: version,
            })
        }
        Some(version) if version >= OLDEST_UPGRADABLE => version,
        _ => return Err(AdoptError::Version { dir, found }),
    };
    // A map an interrupted upgrade already pinned is complete: it is used.
    let missing: Vec<&'static str> = maps_added_since(version)
        .filter(|name| !dir.join(name).exists())
        .collect();
    let ours = netns::current();
    if let Some(theirs) = pin::netns(&dir).filter(|&theirs| theirs != ours) {
        return Err(AdoptError::OtherNetns { dir, theirs, ours });
    }
    let previous = match layout_file.load() {
        Ok(Some(layout)) => layout,
        Err(RunFileError::Version { found, .. }) => {
            return Err(AdoptError::Version {
                dir,
                found: Some(found),
            })
        }
        Err(e) => return Err(e.into()),
        Ok(None) => {
            return Err(AdoptError::NoLayout {
                dir,
                layout: layout_file.path().to_path_buf(),
            })
        }
    };
    // Starts or reloads cut short: the last one's layout is where the maps
    // were going, and the new layout is made from it.
    let interrupted = pending_file
        .load()?
        .map_or_else(Vec::new, PendingLayout::chain);
    let reattach = reattach(pins, config)?;
    let layout = interrupted
        .last()
        .unwrap_or(&previous)
        .update(config)
        .map_err(AdoptError::TooBig)?;
    let moves = upgrade::Moves {
        previous: &previous,
        interrupted: &interrupted,
        target: &layout,
    };
    let datapath = upgrade_pinned(pins, &missing, moves, pending_file, reattach)?;
    Ok((datapath, layout))
}

/// The interfaces the complete datapath pinned in `dir` records as attached
/// (none if there is none, or its record cannot be read): those an adopting
/// start keeps waiting for while they are gone, as the daemon that left it
/// did.
pub fn recorded_interfaces(dir: &Path) -> Vec<String> {
    if !pin::is_complete(dir) {
        return Vec::new();
    }
    recorded_metas(dir)
        .map(|metas| metas.iter().map(super::interface_name).collect())
        .unwrap_or_default()
}

/// The attachments recorded in the pinned `MAP_ATTACH_META` of `dir`, in
/// order.
fn recorded_metas(dir: &Path) -> Result<Vec<AttachMeta>, AdoptError> {
    let map_error = |source| DatapathError::Map {
        map: MAP_ATTACH_META,
        source,
    };
    let metas = pin::open(dir, MAP_ATTACH_META)?;
    let metas: Array<_, AttachMeta> = (&metas).try_into().map_err(map_error)?;
    let metas: Result<Vec<AttachMeta>, _> = metas.iter().collect();
    Ok(metas.map_err(map_error)?)
}

/// Whether the datapath pinned in `pins` is attached otherwise than
/// `config` says: an interface to add, drop, or attach again (another mode,
/// or recreated since).
pub fn attachments_differ(pins: &PinDir, config: &Config) -> Result<bool, AdoptError> {
    Ok(reattach(pins, config)?.changes())
}

/// A running daemon's reload that changes the attachments: its own pinned
/// datapath, moved to `moves.target` and attached as `config` says, as an
/// adopting start would (this binary's programs replace the running ones in
/// place, fresh `MAP_ATTACH_META` and `MAP_DECAP`). With `fresh_decap`,
/// those two are made afresh even if no attachment changes: an interface
/// created again has an ifindex beyond `MAP_DECAP`. Checked before anything
/// changes; cut short after that, it leaves `pending_file` for the next
/// reload or start to finish, as an adopting start's upgrade does.
pub fn reattach_live(
    pins: &PinDir,
    moves: upgrade::Moves,
    pending_file: &PendingLayoutFile,
    config: &Config,
    fresh_decap: bool,
) -> Result<Datapath, AdoptError> {
    let mut reattach = reattach(pins, config)?;
    reattach.fresh_maps |= fresh_decap;
    upgrade_pinned(pins, &[], moves, pending_file, reattach)
}

/// The pinned datapath upgraded in place as `reattach` says, with its
/// sk_lookup link when it has one.
fn upgrade_pinned(
    pins: &PinDir,
    missing: &[&'static str],
    moves: upgrade::Moves,
    pending_file: &PendingLayoutFile,
    reattach: Reattach,
) -> Result<Datapath, AdoptError> {
    // Absent when the kernel refused the sk_lookup program (no steer entries then).
    let steering = if pins.path().join(SK_LOOKUP_LINK_PIN).exists() {
        Some(Link::open(pins, SK_LOOKUP_LINK_PIN)?)
    } else {
        None
    };
    Ok(upgrade::upgrade(
        pins,
        missing,
        moves,
        pending_file,
        reattach,
        steering,
    )?)
}

/// What to do with each attachment recorded in the pinned
/// `MAP_ATTACH_META` and each link pinned in `pins`, for the interfaces and
/// mode of `config`. A recorded attachment without a pinned link (a start
/// killed after it detached it to attach it again) is attached afresh if
/// configured, but for a TC one on a kernel without TCX (before 6.6), which
/// is refused: it is a netlink TC filter, which has no pin and may still be
/// attached, and a second filter would count every packet twice. Where TCX
/// is, vip's TC attachments are bpf_links, pinned like XDP ones. One on a
/// configured interface that is gone waits for it (see `Reattach::waiting`).
fn reattach(pins: &PinDir, config: &Config) -> Result<Reattach, AdoptError> {
    let configured = |interface: &str| config.interfaces.iter().any(|c| c == interface);
    let allowed = AttachMode::candidates(config.xdp_mode);
    let (mut kept, mut waiting, mut replaced, mut dropped) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut recorded = Vec::new();
    for meta in recorded_metas(pins.path())? {
        let interface = super::interface_name(&meta);
        let pin_name = pin::link_name(&interface);
        let Some(mode) = AttachMode::from_meta(meta.mode) else {
            continue;
        };
        if !pins.path().join(&pin_name).exists() {
            if mode == AttachMode::Tc && !kernel::has_tcx() {
                return Err(AdoptError::NotPinned { interface });
            }
            log::warn!("{interface}: recorded as attached but its link is not pinned (a start or reload killed while it attached it again?): attaching it afresh");
            continue;
        }
        recorded.push(interface.clone());
        let adopted = Attachment::adopted(&meta, |_| Ok(Link::open(pins, &pin_name)?))
            .expect("a recorded mode")?;
        let ifindex = nix::net::if_::if_nametoindex(interface.as_str()).ok();
        if !configured(&interface) {
            dropped.push((interface, adopted.link));
        } else if ifindex.is_none() {
            waiting.push(adopted);
        } else if allowed.contains(&adopted.mode) && ifindex == Some(adopted.ifindex) {
            kept.push(adopted);
        } else {
            replaced.push((interface, adopted.link));
        }
    }
    for interface in pins.linked_interfaces()? {
        if !recorded.contains(&interface) {
            let link = Link::open(pins, &pin::link_name(&interface))?;
            replaced.push((interface, link));
        }
    }
    let added = config
        .interfaces
        .iter()
        .filter(|interface| {
            !kept
                .iter()
                .chain(&waiting)
                .any(|k: &Attachment| &k.interface == *interface)
        })
        .cloned()
        .collect();
    let mut reattach = Reattach {
        interfaces: config.interfaces.clone(),
        mode: config.xdp_mode,
        kept,
        waiting,
        added,
        replaced,
        dropped,
        fresh_maps: false,
    };
    reattach.fresh_maps = reattach.changes();
    Ok(reattach)
}
