//! Attaching the classifier, with the fallback that `xdp_mode = "auto"` allows:
//! XDP native, then XDP generic, then TC ingress.

use std::fmt;

use aya::programs::{
    tc::{self, SchedClassifierLinkId, TcAttachType},
    xdp::XdpLinkId,
    SchedClassifier, Xdp, XdpMode as AyaXdpMode,
};
use vip_common::{AttachMeta, ATTACH_TC, ATTACH_XDP_GENERIC, ATTACH_XDP_NATIVE};

use super::DatapathError;
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

#[derive(Debug)]
pub(super) enum Link {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
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

impl Attachment {
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
) -> Result<Link, aya::programs::ProgramError> {
    match mode {
        AttachMode::Native => programs
            .xdp
            .attach(interface, AyaXdpMode::Driver)
            .map(Link::Xdp),
        AttachMode::Generic => programs
            .xdp
            .attach(interface, AyaXdpMode::Skb)
            .map(Link::Xdp),
        AttachMode::Tc => match programs.tc.attach(interface, TcAttachType::Ingress) {
            Ok(link) => Ok(Link::Tc(link)),
            // Before TCX (kernel 6.6) a clsact qdisc must exist first.
            Err(_) => {
                let _ = tc::qdisc_add_clsact(interface);
                programs
                    .tc
                    .attach(interface, TcAttachType::Ingress)
                    .map(Link::Tc)
            }
        },
    }
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
            Err(source) => {
                let error = DatapathError::Attach {
                    interface: interface.to_string(),
                    mode: candidate,
                    source,
                };
                if tried + 1 < candidates.len() {
                    log::warn!("{}", crate::error_chain(&error));
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.expect("at least one attach mode is tried"))
}
