//! Adopting the datapath an earlier `vip run` left pinned, after `kill -9` or a
//! stop with `--keep-datapath`: its programs stay attached through the pinned
//! links and keep counting in the pinned maps, so nothing is missed in the gap.
//! Everything is checked before anything changes.

use std::path::PathBuf;

use aya::maps::Array;
use vip_common::{
    maps_added_since, AttachMeta, LAYOUT_VERSION, MAP_ATTACH_META, OLDEST_UPGRADABLE,
    SK_LOOKUP_LINK_PIN,
};

use super::{
    attach::{AttachMode, Attachment, Link},
    pin::{self, PinDir, PinError},
    upgrade, Datapath, DatapathError,
};
use crate::{
    config::Config,
    errors::Blame,
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
    #[error("the pinned datapath is attached to [{pinned}] and the config names [{configured}]; run `vip down` to change interfaces")]
    Interfaces { pinned: String, configured: String },
    #[error("{interface} is not the interface the pinned datapath attached to (it was deleted or recreated); run `vip down`")]
    InterfaceGone { interface: String },
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
    let attachments = adopt_links(&pin::open(&dir, MAP_ATTACH_META)?, pins)?;
    check_interfaces(&attachments, config)?;
    let layout = interrupted
        .last()
        .unwrap_or(&previous)
        .update(config)
        .map_err(AdoptError::TooBig)?;
    // Absent when the kernel refused the sk_lookup program (no steer entries then).
    let steering = if pins.path().join(SK_LOOKUP_LINK_PIN).exists() {
        Some(Link::Pinned(pins.open_link(SK_LOOKUP_LINK_PIN)?))
    } else {
        None
    };
    let datapath = upgrade::upgrade(
        pins,
        &missing,
        upgrade::Moves {
            previous: &previous,
            interrupted: &interrupted,
            target: &layout,
        },
        pending_file,
        &config.interfaces,
        attachments,
        steering,
    )?;
    Ok((datapath, layout))
}

fn adopt_links(metas: &aya::maps::Map, pins: &PinDir) -> Result<Vec<Attachment>, AdoptError> {
    let metas: Array<_, AttachMeta> = metas.try_into().map_err(|source| DatapathError::Map {
        map: MAP_ATTACH_META,
        source,
    })?;
    let mut attachments = Vec::new();
    for meta in metas.iter() {
        let meta = meta.map_err(|source| DatapathError::Map {
            map: MAP_ATTACH_META,
            source,
        })?;
        let interface = super::interface_name(&meta);
        if AttachMode::from_meta(meta.mode).is_some()
            && !pins.path().join(pin::link_name(&interface)).exists()
        {
            return Err(AdoptError::NotPinned { interface });
        }
        let adopted = Attachment::adopted(&meta, |interface| {
            Ok(Link::Pinned(pins.open_link(&pin::link_name(interface))?))
        });
        match adopted {
            Some(attachment) => attachments.push(attachment?),
            None => continue,
        }
    }
    for attachment in &attachments {
        let ifindex = nix::net::if_::if_nametoindex(attachment.interface.as_str()).unwrap_or(0);
        if ifindex != attachment.ifindex {
            return Err(AdoptError::InterfaceGone {
                interface: attachment.interface.clone(),
            });
        }
    }
    Ok(attachments)
}

fn check_interfaces(attachments: &[Attachment], config: &Config) -> Result<(), AdoptError> {
    let mut pinned: Vec<&str> = attachments.iter().map(|a| a.interface.as_str()).collect();
    let mut configured: Vec<&str> = config.interfaces.iter().map(String::as_str).collect();
    pinned.sort_unstable();
    configured.sort_unstable();
    if pinned != configured {
        return Err(AdoptError::Interfaces {
            pinned: pinned.join(", "),
            configured: configured.join(", "),
        });
    }
    Ok(())
}
