//! Attaching the classifier, with the fallback that `xdp_mode = "auto"` allows:
//! XDP native, then XDP generic, then TC ingress.

use std::{fmt, path::PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::{self, SchedClassifierLink, TcAttachType},
    ProgramError, SchedClassifier, Xdp, XdpMode as AyaXdpMode,
};
use vip_common::{AttachMeta, ATTACH_TC, ATTACH_XDP_GENERIC, ATTACH_XDP_NATIVE, PROG_TC};

use super::{
    link_update,
    pin::{PinDir, PinError},
    DatapathError,
};
use crate::config::XdpMode;

/// The mode an attachment got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
    Tc,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Tc => "tc",
        }
    }

    pub fn from_meta(mode: u32) -> Option<AttachMode> {
        match mode {
            ATTACH_XDP_NATIVE => Some(AttachMode::Native),
            ATTACH_XDP_GENERIC => Some(AttachMode::Generic),
            ATTACH_TC => Some(AttachMode::Tc),
            _ => None,
        }
    }

    fn meta(self) -> u32 {
        match self {
            AttachMode::Native => ATTACH_XDP_NATIVE,
            AttachMode::Generic => ATTACH_XDP_GENERIC,
            AttachMode::Tc => ATTACH_TC,
        }
    }

    /// The modes tried, in order, for a configured mode.
    pub fn candidates(mode: XdpMode) -> &'static [AttachMode] {
        match mode {
            XdpMode::Auto => &[AttachMode::Native, AttachMode::Generic, AttachMode::Tc],
            XdpMode::Native => &[AttachMode::Native],
            XdpMode::Generic => &[AttachMode::Generic],
            XdpMode::Tc => &[AttachMode::Tc],
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What keeps the datapath attached to an interface. Dropping an unpinned link
/// detaches it; dropping a pinned one leaves it attached while the pin exists.
#[derive(Debug)]
pub(super) enum Link {
    /// A bpf_link (XDP; TC through TCX on kernels 6.6 and later), not pinned yet.
    Fd(FdLink),
    /// A bpf_link pinned at `path`.
    Pinned { link: PinnedLink, path: PathBuf },
    /// A netlink TC filter (kernels before 6.6): it cannot be pinned, so it does
    /// not stay attached across a restart.
    TcNetlink(#[allow(dead_code, reason = "held: dropping it detaches")] SchedClassifierLink),
}

impl Link {
    /// The link pinned as `name` in `pins`.
    pub(super) fn open(pins: &PinDir, name: &str) -> Result<Link, PinError> {
        Ok(Link::Pinned {
            link: pins.open_link(name)?,
            path: pins.path().join(name),
        })
    }

    /// Detaches now, removing the pin if there is one. A pinned link is
    /// detached by BPF_LINK_DETACH, not only unpinned: another descriptor
    /// of it (the running daemon's, on a reload) would keep it attached.
    pub(super) fn detach(self) -> std::io::Result<()> {
        match self {
            Link::Pinned { link, path } => {
                link_update::detach(&path)?;
                link.unpin().map(drop)
            }
            Link::Fd(_) | Link::TcNetlink(_) => Ok(()),
        }
    }

    /// The link pinned as `name` if it is a bpf_link; a netlink one as it is.
    pub(super) fn pinned(self, pins: &PinDir, name: &str) -> Result<Link, PinError> {
        match self {
            Link::Fd(link) => Ok(Link::Pinned {
                link: pins.pin_link(name, link)?,
                path: pins.path().join(name),
            }),
            other => Ok(other),
        }
    }
}

#[derive(Debug)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: AttachMode,
    /// The mode is not the first one tried.
    pub fallback: bool,
    pub(super) link: Link,
}

/// The interface name an [`AttachMeta`] holds (NUL-terminated).
pub fn interface_name(meta: &AttachMeta) -> String {
    let len = meta
        .ifname
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(meta.ifname.len());
    String::from_utf8_lossy(&meta.ifname[..len]).into_owned()
}

impl Attachment {
    /// An attachment an earlier `vip run` recorded in `MAP_ATTACH_META`, held
    /// through its pinned link; `None` for an unused slot.
    pub(super) fn adopted(
        meta: &AttachMeta,
        link: impl FnOnce(&str) -> Result<Link, DatapathError>,
    ) -> Option<Result<Attachment, DatapathError>> {
        let mode = AttachMode::from_meta(meta.mode)?;
        let interface = interface_name(meta);
        Some(link(&interface).map(|link| Attachment {
            interface,
            ifindex: meta.ifindex,
            mode,
            fallback: meta.fallback != 0,
            link,
        }))
    }

    pub(super) fn meta(&self) -> AttachMeta {
        let mut meta: AttachMeta = bytemuck::Zeroable::zeroed();
        let name = self.interface.as_bytes();
        let len = name.len().min(meta.ifname.len() - 1);
        meta.ifname[..len].copy_from_slice(&name[..len]);
        meta.ifindex = self.ifindex;
        meta.mode = self.mode.meta();
        meta.fallback = u32::from(self.fallback);
        meta
    }
}

/// The loaded programs an attachment can use.
pub(super) struct Programs<'a> {
    pub xdp: &'a mut Xdp,
    pub tc: &'a mut SchedClassifier,
}

fn attach_one(
    programs: &mut Programs<'_>,
    interface: &str,
    mode: AttachMode,
) -> Result<Link, DatapathError> {
    let attach_error = |source| DatapathError::Attach {
        interface: interface.to_string(),
        mode,
        source,
    };
    let xdp_mode = match mode {
        AttachMode::Native => AyaXdpMode::Driver,
        AttachMode::Generic => AyaXdpMode::Skb,
        AttachMode::Tc => {
            load_tc(programs.tc)?;
            return attach_tc(programs.tc, interface).map_err(attach_error);
        }
    };
    let id = programs
        .xdp
        .attach(interface, xdp_mode)
        .map_err(attach_error)?;
    let link = programs.xdp.take_link(id).map_err(attach_error)?;
    // aya falls back to netlink only where bpf_link_create rejects XDP (before 5.9).
    FdLink::try_from(link)
        .map(Link::Fd)
        .map_err(|_| DatapathError::NotALink {
            interface: interface.to_string(),
        })
}

/// Loads (verifies) the TC program unless it is loaded already.
pub(super) fn load_tc(tc: &mut SchedClassifier) -> Result<(), DatapathError> {
    match tc.load() {
        Ok(()) | Err(ProgramError::AlreadyLoaded) => Ok(()),
        Err(source) => Err(DatapathError::Program {
            program: PROG_TC,
            source,
        }),
    }
}

fn attach_tc(tc: &mut SchedClassifier, interface: &str) -> Result<Link, ProgramError> {
    let id = match tc.attach(interface, TcAttachType::Ingress) {
        Ok(id) => id,
        // Before TCX (kernel 6.6) a clsact qdisc must exist first.
        Err(_) => {
            let _ = tc::qdisc_add_clsact(interface);
            tc.attach(interface, TcAttachType::Ingress)?
        }
    };
    let link = tc.take_link(id)?;
    if <&FdLink>::try_from(&link).is_err() {
        log::warn!("{interface}: attached through netlink (no TCX before kernel 6.6): this attachment does not survive a restart");
        return Ok(Link::TcNetlink(link));
    }
    Ok(Link::Fd(
        FdLink::try_from(link).expect("checked to be a bpf_link"),
    ))
}

/// Attaches in the configured mode, trying each fallback in turn.
pub(super) fn attach(
    programs: &mut Programs<'_>,
    interface: &str,
    mode: XdpMode,
) -> Result<Attachment, DatapathError> {
    let candidates = AttachMode::candidates(mode);
    let ifindex = nix::net::if_::if_nametoindex(interface).unwrap_or(0);
    let mut last_error = None;
    for (tried, &candidate) in candidates.iter().enumerate() {
        match attach_one(programs, interface, candidate) {
            Ok(link) => {
                if tried > 0 {
                    log::warn!(
                        "{interface}: attached in {candidate} mode (fallback; see the error above)"
                    );
                } else {
                    log::info!("{interface}: attached in {candidate} mode");
                }
                return Ok(Attachment {
                    interface: interface.to_string(),
                    ifindex,
                    mode: candidate,
                    fallback: tried > 0,
                    link,
                });
            }
            Err(error) => {
                if tried + 1 < candidates.len() {
                    log::warn!("{}", crate::errors::chain(&error));
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.expect("at least one attach mode is tried"))
}
