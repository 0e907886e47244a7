//! Interfaces deleted and created again under a running daemon. The kernel
//! detaches a link whose device goes away, and the device that comes back
//! under the same name has a new ifindex and nothing attached: its traffic
//! would reach the host's stack uncounted and unjudged, while the alias or
//! AnyIP route still accepts the whole range on every port. The daemon looks
//! for such interfaces every drift tick and attaches the programs it keeps
//! loaded again, pinned under the same name.

use super::{
    attach::{self, Attachment},
    pin::{self, PinDir},
    programs, sync, Datapath, DatapathError,
};
use crate::{config::XdpMode, layout::Layout};

/// What [`Datapath::attach_recreated`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recreated {
    /// Attached again: (interface, its old ifindex, its new one).
    pub attached: Vec<(String, u32, u32)>,
    /// Interfaces that do not exist now: attached again once they do.
    pub gone: Vec<String>,
    /// Attached again at an ifindex beyond `MAP_DECAP` while they
    /// decapsulate: the map must be made afresh
    /// ([`super::reattach_live`] with `fresh_decap`).
    pub decap_beyond: Vec<String>,
}

impl Datapath {
    /// Whether what arrives on `interfaces` is judged: each one that exists
    /// runs the datapath at its present ifindex (not one recreated and not
    /// yet attached again), and one at least exists.
    pub fn judges_all(&self, interfaces: &[String]) -> bool {
        let mut present = false;
        for interface in interfaces {
            let Ok(now) = nix::net::if_::if_nametoindex(interface.as_str()) else {
                continue;
            };
            let attached = self
                .attachments
                .iter()
                .any(|a| a.interface == *interface && a.ifindex == now);
            if !attached {
                return false;
            }
            present = true;
        }
        present
    }

    /// Attaches again, in `mode`, to every interface whose ifindex changed
    /// since it was attached; moves its decapsulation entry (`layout`'s) to
    /// the new ifindex, and records the attachments (also those attached
    /// again before an error).
    pub fn attach_recreated(
        &mut self,
        pins: &PinDir,
        mode: XdpMode,
        layout: &Layout,
    ) -> Result<Recreated, DatapathError> {
        let mut found = Recreated::default();
        let mut failed = None;
        for index in 0..self.attachments.len() {
            let interface = self.attachments[index].interface.clone();
            let Ok(now) = nix::net::if_::if_nametoindex(interface.as_str()) else {
                found.gone.push(interface);
                continue;
            };
            let before = self.attachments[index].ifindex;
            if now == before {
                continue;
            }
            match self.attach_again(index, pins, mode) {
                Ok(()) => {
                    if !sync::move_decap(&mut self.maps, layout, &interface, before, now)? {
                        found.decap_beyond.push(interface.clone());
                    }
                    found.attached.push((interface, before, now));
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if !found.attached.is_empty() {
            self.record_attachments()?;
        }
        failed.map_or(Ok(found), Err)
    }

    /// Attaches the kept programs to the interface of attachment `index`
    /// again, in its place. Its old link is defunct (its device went): its
    /// pin goes, and the new link takes the name.
    fn attach_again(
        &mut self,
        index: usize,
        pins: &PinDir,
        mode: XdpMode,
    ) -> Result<(), DatapathError> {
        let ebpf = self.programs.as_mut().ok_or(DatapathError::Missing {
            kind: "program",
            name: vip_common::PROG_XDP,
        })?;
        let interface = self.attachments[index].interface.clone();
        let fresh = attach::attach(&mut programs(ebpf)?, &interface, mode)?;
        let old = self.attachments.remove(index);
        old.link.detach().map_err(|source| DatapathError::Detach {
            interface: interface.clone(),
            source,
        })?;
        let link = fresh.link.pinned(pins, &pin::link_name(&interface))?;
        self.attachments.insert(index, Attachment { link, ..fresh });
        Ok(())
    }
}
