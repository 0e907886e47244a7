//! Upgrading a pinned datapath in place. This binary's programs are loaded onto
//! the live maps (the pins, used as they are, so every counter carries on in
//! the same memory) and replace the running ones link by link through
//! BPF_LINK_UPDATE: nothing the config keeps is detached, and the host state
//! is not touched. Interfaces the config adds or drops (or whose mode it
//! changes) are attached or detached here too ([`Reattach`]).
//!
//! An older layout lacks the maps later ones added (`vip_common::MAPS_ADDED`):
//! they are created fresh and pinned only once every link runs the new
//! programs, when the sync has filled them; but the tables of counts and the
//! sparse tag word ([`PINNED_AT_ONCE`]) are pinned as soon as they exist, so
//! that what the new programs write in them before a crash stays for the
//! next start, which uses a pinned map as it is. The layout version in
//! `VIP_SETTINGS` moves last, so a crash at any step leaves a datapath that
//! counts (old programs, new ones, or a mix on several interfaces, all on the
//! same maps) and that the next start upgrades again.

use aya::maps::Array;
use vip_common::{
    LAYOUT_VERSION, MAP_ATTACH_META, MAP_DECAP, MAP_DENSE_COUNTS, MAP_PORTS, MAP_PRESSURE,
    MAP_RANGE_COUNTS, MAP_SETTINGS, MAP_SPARSE_COLD, MAP_SPARSE_CONTROL, MAP_SPARSE_HOT,
    MAP_SPARSE_TAG, MAP_V4_SLASH24, PROG_SK_LOOKUP, PROG_TC, PROG_XDP, SETTING_LAYOUT_VERSION,
    SK_LOOKUP_LINK_PIN,
};

use super::{
    attach::{self, Attachment, Link},
    build, link_update, open,
    pin::{self, PinDir},
    programs, sparse_control, steering, sync, AttachMode, Datapath, DatapathError, Loaded,
    EBPF_OBJECT,
};
use crate::{
    config::XdpMode,
    fault,
    layout::{Layout, PendingLayout, PendingLayoutFile},
};

/// Maps a layout added that the new programs write from the first link
/// replaced on, and that are complete when fresh: the counter tables, and
/// the tag word their sparse slots are stamped with. A crash before the
/// upgrade ends must leave them pinned: the counts would be lost, and a
/// fresh tag map would start again at a word those slots already hold, so
/// that they would vouch for their VIPs under the old ranges.
const PINNED_AT_ONCE: [&str; 6] = [
    MAP_DENSE_COUNTS,
    MAP_RANGE_COUNTS,
    MAP_SPARSE_HOT,
    MAP_SPARSE_COLD,
    MAP_PRESSURE,
    MAP_SPARSE_TAG,
];

/// The pinned datapath's attachments reconciled with the config's interfaces
/// and mode.
pub(super) struct Reattach {
    /// The configured interfaces, in order: what the datapath ends up
    /// attached to.
    pub interfaces: Vec<String>,
    /// The configured mode, for the interfaces attached afresh.
    pub mode: XdpMode,
    /// On a configured interface, in a mode the config allows: the new
    /// programs replace theirs in place.
    pub kept: Vec<Attachment>,
    /// On a configured interface that is gone (deleted, not created again
    /// yet): its link is defunct, so no program is replaced in it; it stays
    /// among the attachments, for the drift tick to attach again once the
    /// interface is back ([`super::Datapath::attach_recreated`]).
    pub waiting: Vec<Attachment>,
    /// Configured interfaces to attach afresh, in config order.
    pub added: Vec<String>,
    /// Links to detach before the added interfaces are attached, by
    /// interface: in a mode the config no longer allows, on an interface
    /// deleted or recreated since (the kernel detached it then), or pinned
    /// but never recorded in `MAP_ATTACH_META` (a start killed in between).
    pub replaced: Vec<(String, Link)>,
    /// Links to detach once the new attachments are recorded, by interface:
    /// on interfaces the config no longer names.
    pub dropped: Vec<(String, Link)>,
    /// `MAP_ATTACH_META` and `MAP_DECAP` are made afresh: the attachments
    /// change, or an interface's ifindex is beyond `MAP_DECAP`.
    pub fresh_maps: bool,
}

impl Reattach {
    /// Whether the attachments change.
    pub fn changes(&self) -> bool {
        !(self.added.is_empty() && self.replaced.is_empty() && self.dropped.is_empty())
    }

    /// Whether an attachment may run the TC program: one kept or waiting in
    /// TC mode, or an interface to attach in a mode that allows TC. Such an
    /// upgrade verifies it with the rest, before any map changes.
    pub fn may_need_tc(&self) -> bool {
        let allows_tc = AttachMode::candidates(self.mode).contains(&AttachMode::Tc);
        self.kept
            .iter()
            .chain(&self.waiting)
            .any(|a| a.mode == AttachMode::Tc)
            || (allows_tc && !self.added.is_empty())
    }
}

/// Where an upgrade moves the maps: from `previous` (`layout.json`'s), through
/// `interrupted` (the layouts of starts or reloads cut short, oldest first:
/// the maps hold a mix of them all), to `target`.
pub struct Moves<'a> {
    pub previous: &'a Layout,
    pub interrupted: &'a [Layout],
    pub target: &'a Layout,
}

/// The pinned datapath in `pins` (with its sk_lookup link),
/// moved to `moves.target` and running this binary's programs. The moves
/// are saved in `pending` before the first map write, so that a start
/// killed during its own writes is finished by the next one.
///
/// The attachments change as `reattach` says: links replaced or dropped
/// are detached, added interfaces attached in its mode, and a fresh
/// `MAP_ATTACH_META` and `MAP_DECAP` (sized for its interfaces) take the
/// place of the pinned ones once every link runs the new programs.
pub(super) fn upgrade(
    pins: &PinDir,
    missing: &[&'static str],
    moves: Moves,
    pending: &PendingLayoutFile,
    reattach: Reattach,
    steering_link: Option<Link>,
) -> Result<Datapath, DatapathError> {
    let Moves {
        previous,
        interrupted,
        target: layout,
    } = moves;
    // The hash stays the one the datapath was created with: its slots are
    // where that hash put them.
    let control = sparse_control::pinned(pins.path(), missing.contains(&MAP_SPARSE_CONTROL))?;
    let fresh: &[&'static str] = if reattach.fresh_maps {
        &FRESH_FOR_INTERFACES
    } else {
        &[]
    };
    let not_pinned: Vec<&'static str> = missing.iter().chain(fresh).copied().collect();
    let (ebpf, maps) = open(
        EBPF_OBJECT,
        layout,
        &reattach.interfaces,
        Some((pins.path(), &not_pinned)),
        &control,
    )?;
    // Replacing programs by the same build's (a restart, a reload that
    // changes the attachments) is no upgrade.
    let upgrades = build::info(&maps).map_or(0, |info| {
        let same = build::text(&info.build) == build::of_object(EBPF_OBJECT);
        info.upgrades + u32::from(!same)
    });
    // Verified before any map changes: a program the kernel refuses leaves
    // the running datapath exactly as it was.
    let mut loaded = Loaded::verify(ebpf, maps)?;
    if reattach.may_need_tc() {
        loaded.verify_tc()?;
    }
    pending.save(&PendingLayout::after(interrupted, layout))?;
    for &name in missing.iter().filter(|name| PINNED_AT_ONCE.contains(name)) {
        pins.pin_map(name, loaded.datapath.map(name)?)?;
    }
    fault::at("upgrade-loaded");
    if missing.contains(&MAP_PORTS) {
        // Before any program reads it: the bitmaps of the lists the sync
        // below leaves as they are.
        sync::fill_ports(&mut loaded.datapath.maps, previous, layout)?;
    }
    if missing.contains(&MAP_V4_SLASH24) {
        sync::fill_slash24s(&mut loaded.datapath.maps, previous)?;
    }
    if fresh.contains(&MAP_DECAP) {
        sync::fill_decap(&mut loaded.datapath.maps, layout)?;
    }
    // The maps hold a mix of `previous` and the cut-short layouts: moved to
    // each of those in turn first (the writes set values, so they can be
    // done again), then on.
    let mut from = previous;
    for step in interrupted {
        sync::sync(&mut loaded.datapath.maps, Some(from), step)?;
        from = step;
    }
    sync::sync(&mut loaded.datapath.maps, Some(from), layout)?;
    let Reattach {
        interfaces,
        mode,
        kept: mut attachments,
        waiting,
        added,
        replaced,
        dropped,
        fresh_maps: _,
    } = reattach;
    for (index, attachment) in attachments.iter().enumerate() {
        let (name, program) = match attachment.mode {
            AttachMode::Tc => (PROG_TC, loaded.tc()?.fd()),
            AttachMode::Native | AttachMode::Generic => (PROG_XDP, loaded.xdp().fd()),
        };
        let program = program
            .map_err(|source| DatapathError::Program {
                program: name,
                source,
            })?
            .try_clone()
            .map_err(|source| replace_error(&attachment.interface, source))?;
        let pin = pins.path().join(pin::link_name(&attachment.interface));
        link_update::replace_program(&pin, std::os::fd::AsFd::as_fd(&program))
            .map_err(|source| replace_error(&attachment.interface, source))?;
        if index == 0 {
            fault::at("upgrade-replaced-first");
        }
    }
    if steering_link.is_some() {
        let program = steering::program(&mut loaded.ebpf)?
            .fd()
            .map_err(|source| DatapathError::Program {
                program: PROG_SK_LOOKUP,
                source,
            })?
            .try_clone()
            .map_err(|source| replace_error("the network namespace", source))?;
        link_update::replace_program(
            &pins.path().join(SK_LOOKUP_LINK_PIN),
            std::os::fd::AsFd::as_fd(&program),
        )
        .map_err(|source| replace_error("the network namespace", source))?;
    }
    attachments.extend(waiting);
    fault::at("upgrade-replaced");
    for (interface, link) in replaced {
        detach(&interface, link)?;
        log::info!(
            "{interface}: detached, to be attached again (mode, interface or record changed)"
        );
    }
    fault::at("upgrade-detached");
    for interface in &added {
        let attachment = attach::attach(&mut programs(&mut loaded.ebpf)?, interface, mode)?;
        let link = attachment.link.pinned(pins, &pin::link_name(interface))?;
        attachments.push(Attachment { link, ..attachment });
    }
    attachments.sort_by_key(|a| interfaces.iter().position(|i| *i == a.interface));
    fault::at("upgrade-attached");
    let mut datapath = loaded.datapath;
    datapath.attachments = attachments;
    build::record(&mut datapath.maps, EBPF_OBJECT, upgrades)?;
    for &name in missing.iter().filter(|name| !PINNED_AT_ONCE.contains(name)) {
        pins.pin_map(name, datapath.map(name)?)?;
    }
    if !fresh.is_empty() {
        datapath.record_attachments()?;
        // The attachments' record last: its pin marks the pins complete.
        pins.replace_map(MAP_DECAP, datapath.map(MAP_DECAP)?)?;
        pins.replace_map(MAP_ATTACH_META, datapath.map(MAP_ATTACH_META)?)?;
    }
    for (interface, link) in dropped {
        detach(&interface, link)?;
        log::info!("{interface}: detached (no longer in interfaces)");
    }
    fault::at("upgrade-committing");
    let mut settings: Array<_, u32> = datapath.maps.typed_mut(MAP_SETTINGS)?;
    settings
        .set(SETTING_LAYOUT_VERSION, LAYOUT_VERSION, 0)
        .map_err(|source| DatapathError::Map {
            map: MAP_SETTINGS,
            source,
        })?;
    datapath.steering = steering_link;
    datapath.programs = Some(loaded.ebpf);
    Ok(datapath)
}

/// Maps an adopting start creates afresh when the attachments change: the
/// attachments' record, and the decapsulation entries by ifindex, sized for
/// the configured interfaces.
const FRESH_FOR_INTERFACES: [&str; 2] = [MAP_DECAP, MAP_ATTACH_META];

fn detach(interface: &str, link: Link) -> Result<(), DatapathError> {
    link.detach().map_err(|source| DatapathError::Detach {
        interface: interface.to_string(),
        source,
    })
}

fn replace_error(what: &str, source: std::io::Error) -> DatapathError {
    DatapathError::Replace {
        what: what.to_string(),
        source,
    }
}
