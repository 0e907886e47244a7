//! Tunnels to VIPs: IP in IPv4, IP in IPv6 and GUE, recognised on the interfaces
//! where userspace enabled them (`MAP_DECAP`), and the XDP step that strips the
//! outer headers so the stack gets the inner packet. No tunnel device needed.

use core::ptr::NonNull;

use aya_ebpf::{
    helpers::bpf_xdp_adjust_head,
    macros::map,
    maps::Array,
    programs::{TcContext, XdpContext},
};
use vip_common::{
    DecapConfig, DECAP_GUE, DECAP_IP6IP6, DECAP_IPIP, GLOBAL_DECAP_GUE, GLOBAL_DECAP_IP6IP6,
    GLOBAL_DECAP_IPIP, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP,
};

use crate::{
    count,
    cursor::{moved, read_at, PacketBuf},
    parse::{self, Malformed, Next, ETH_P_IPV4, ETH_P_IPV6, L3, UDP_HLEN},
};

#[map]
static VIP_DECAP: Array<DecapConfig> = Array::with_max_entries(1, 0);

/// The GUE header's fixed part (RFC draft-ietf-intarea-gue, variant 0).
const GUE_HLEN: usize = 4;
/// Variant 0, C bit: a control message, not a tunnelled packet.
const GUE_CONTROL: u8 = 0x20;

/// A packet buffer of a program type that may decapsulate (XDP does, TC does not).
pub trait Tunnels: PacketBuf {
    /// Whether this program type decapsulates; where false, the tunnel path
    /// compiles away.
    const DECAPSULATES: bool;

    /// The interface the packet came in on (only read where `DECAPSULATES`).
    fn ingress_ifindex(&self) -> u32;

    /// Removes a tunnel's outer headers (only called where `DECAPSULATES`).
    fn strip(&self, strip: Strip) -> Result<(), StripFailed>;
}

impl Tunnels for XdpContext {
    const DECAPSULATES: bool = true;

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: the context pointer the kernel passed to this program.
        unsafe { (*self.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn strip(&self, strip: Strip) -> Result<(), StripFailed> {
        strip_xdp(self, strip)
    }
}

impl Tunnels for TcContext {
    const DECAPSULATES: bool = false;

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        0
    }

    #[inline(always)]
    fn strip(&self, _strip: Strip) -> Result<(), StripFailed> {
        Err(StripFailed)
    }
}

/// The frame could not be moved (the helper refused, or the moved header is
/// out of bounds): a map or kernel inconsistency, counted as an internal error.
pub struct StripFailed;

/// What [`Tunnels::strip`] removes and rewrites, and the counter it adds to.
#[derive(Clone, Copy)]
pub struct Strip {
    /// Length of the link-layer headers (Ethernet and VLAN tags), kept.
    pub l2_len: usize,
    /// Bytes removed after them: the outer IP header, and UDP and GUE for GUE.
    pub outer_len: usize,
    /// The ethertype the frame gets (the inner family's).
    pub inner_ethertype: u16,
    /// This CPU's `GLOBAL_DECAP_*` counter, looked up where the kind is known.
    /// A pointer rather than the index: the verifier tracks a constant map key
    /// exactly, and with one index per kind carried along it checked the whole
    /// inner path once per kind.
    pub counter: Option<NonNull<u64>>,
}

/// The inner IP header of the packet, and how to strip the outer ones, if it is
/// a tunnel the interface it came in on decapsulates, from its outer IP header
/// at `next`. Fragments are never decapsulated: their inner packet is not
/// whole.
#[inline(always)]
pub fn tunnel<B: Tunnels>(buf: &B, next: Next) -> Result<Option<(L3, Strip)>, Malformed> {
    let outer = parse::beyond(buf, next)?;
    let proto = outer.proto;
    if outer.fragment || !matches!(proto, IPPROTO_IPIP | IPPROTO_IPV6 | IPPROTO_UDP) {
        return Ok(None);
    }
    let Some(config) = VIP_DECAP.get(buf.ingress_ifindex()) else {
        return Ok(None);
    };
    let (inner_offset, inner_proto, counter) = if proto == IPPROTO_UDP {
        if config.flags & DECAP_GUE == 0 {
            return Ok(None);
        }
        let udp: [u8; UDP_HLEN] = read_at(buf, outer.offset)?;
        if [udp[2], udp[3]] != config.gue_port_be {
            return Ok(None);
        }
        let gue = outer.offset + UDP_HLEN;
        let head: [u8; 2] = read_at(buf, gue)?;
        match head[0] >> 6 {
            0 if head[0] & GUE_CONTROL == 0 => {
                let options = usize::from(head[0] & 0x1f) * 4;
                (gue + GUE_HLEN + options, head[1], GLOBAL_DECAP_GUE)
            }
            // Variant 1: the IP header follows UDP directly.
            1 => match head[0] >> 4 {
                4 => (gue, IPPROTO_IPIP, GLOBAL_DECAP_GUE),
                6 => (gue, IPPROTO_IPV6, GLOBAL_DECAP_GUE),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        }
    } else if next.ipv6 {
        if config.flags & DECAP_IP6IP6 == 0 {
            return Ok(None);
        }
        (outer.offset, proto, GLOBAL_DECAP_IP6IP6)
    } else {
        if config.flags & DECAP_IPIP == 0 {
            return Ok(None);
        }
        (outer.offset, proto, GLOBAL_DECAP_IPIP)
    };
    let strip = Strip {
        l2_len: next.header_offset,
        outer_len: inner_offset - next.header_offset,
        inner_ethertype: if inner_proto == IPPROTO_IPIP {
            ETH_P_IPV4
        } else {
            ETH_P_IPV6
        },
        counter: count::global_slot(counter),
    };
    let inner = match inner_proto {
        IPPROTO_IPIP => parse::ipv4(buf, inner_offset)?,
        IPPROTO_IPV6 => parse::ipv6(buf, inner_offset)?,
        _ => return Ok(None),
    };
    Ok(Some((inner, strip)))
}

/// Removes the outer headers: the link-layer headers move up to just before the
/// inner IP header, with the inner family's ethertype, and the frame starts there.
/// They move as whole words (unaligned loads are allowed): as a byte array the
/// compiler would copy them byte by byte.
#[inline(always)]
fn strip_xdp(ctx: &XdpContext, strip: Strip) -> Result<(), StripFailed> {
    let internal = |_| StripFailed;
    let ethertype = strip.inner_ethertype.to_be_bytes();
    match strip.l2_len {
        14 => {
            let (a, b): (u64, u32) = (
                read_at(ctx, 0).map_err(internal)?,
                read_at(ctx, 8).map_err(internal)?,
            );
            shrink(ctx, strip.outer_len)?;
            let l2 = moved(ctx, 14).map_err(internal)?;
            l2.write(0, a).map_err(internal)?;
            l2.write(8, b).map_err(internal)?;
            l2.write(12, ethertype).map_err(internal)
        }
        18 => {
            let (a, b): (u64, u64) = (
                read_at(ctx, 0).map_err(internal)?,
                read_at(ctx, 8).map_err(internal)?,
            );
            shrink(ctx, strip.outer_len)?;
            let l2 = moved(ctx, 18).map_err(internal)?;
            l2.write(0, a).map_err(internal)?;
            l2.write(8, b).map_err(internal)?;
            l2.write(16, ethertype).map_err(internal)
        }
        22 => {
            let (a, b, c): (u64, u64, u32) = (
                read_at(ctx, 0).map_err(internal)?,
                read_at(ctx, 8).map_err(internal)?,
                read_at(ctx, 16).map_err(internal)?,
            );
            shrink(ctx, strip.outer_len)?;
            let l2 = moved(ctx, 22).map_err(internal)?;
            l2.write(0, a).map_err(internal)?;
            l2.write(8, b).map_err(internal)?;
            l2.write(16, c).map_err(internal)?;
            l2.write(20, ethertype).map_err(internal)
        }
        _ => Err(StripFailed),
    }
}

/// Moves the frame's start forward by `len` bytes.
#[inline(always)]
fn shrink(ctx: &XdpContext, len: usize) -> Result<(), StripFailed> {
    // SAFETY: the context this program was given; shrinking the head by the
    // outer headers' length, which the parse found inside the packet.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, len as i32) } != 0 {
        return Err(StripFailed);
    }
    Ok(())
}
