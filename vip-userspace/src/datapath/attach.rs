//! Attaching the XDP program, with the fallback that `xdp_mode = "auto"` allows.

use std::fmt;

use aya::programs::{xdp::XdpLinkId, Xdp, XdpMode as AyaXdpMode};
use vip_common::{AttachMeta, ATTACH_XDP_GENERIC, ATTACH_XDP_NATIVE};

use super::DatapathError;
use crate::config::XdpMode;

/// The mode an attachment got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }

    pub fn from_meta(mode: u32) -> Option<AttachMode> {
        match mode {
            ATTACH_XDP_NATIVE => Some(AttachMode::Native),
            ATTACH_XDP_GENERIC => Some(AttachMode::Generic),
            _ => None,
        }
    }

    fn meta(self) -> u32 {
        match self {
            AttachMode::Native => ATTACH_XDP_NATIVE,
            AttachMode::Generic => ATTACH_XDP_GENERIC,
        }
    }

    fn aya(self) -> AyaXdpMode {
        match self {
            AttachMode::Native => AyaXdpMode::Driver,
            AttachMode::Generic => AyaXdpMode::Skb,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: AttachMode,
    /// The mode is not the first one tried.
    pub fallback: bool,
    pub(super) link: XdpLinkId,
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

/// Attaches in the configured mode; under `auto`, native first, then generic.
pub(super) fn attach(
    program: &mut Xdp,
    interface: &str,
    mode: XdpMode,
) -> Result<Attachment, DatapathError> {
    let candidates: &[AttachMode] = match mode {
        XdpMode::Auto => &[AttachMode::Native, AttachMode::Generic],
        XdpMode::Native => &[AttachMode::Native],
        XdpMode::Generic => &[AttachMode::Generic],
    };
    let ifindex = nix::net::if_::if_nametoindex(interface).unwrap_or(0);
    let mut last_error = None;
    for (tried, &candidate) in candidates.iter().enumerate() {
        match program.attach(interface, candidate.aya()) {
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
