//! Tunnels to VIPs: IP in IPv4, IP in IPv6 and GUE, recognised on the interfaces
//! where userspace enabled them (`MAP_DECAP`), and the XDP step that strips the
//! outer headers so the stack gets the inner packet. No tunnel device needed.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, macros::map, maps::HashMap, programs::XdpContext};
use vip_common::{
    DecapConfig, DECAP_GUE, DECAP_IP6IP6, DECAP_IPIP, GLOBAL_DECAP_GUE, GLOBAL_DECAP_IP6IP6,
    GLOBAL_DECAP_IPIP, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP, SETTING_DECAP_INTERFACES,
};

use crate::{
    classify::Failure,
    count,
    cursor::{read_at, write_at, PacketBuf},
    parse::{self, Malformed, ETH_P_IPV4, ETH_P_IPV6, L3, UDP_HLEN},
};

#[map]
static VIP_DECAP: HashMap<u32, DecapConfig> = HashMap::with_max_entries(1, 0);

/// The GUE header's fixed part (RFC draft-ietf-intarea-gue, variant 0).
const GUE_HLEN: usize = 4;
/// Variant 0, C bit: a control message, not a tunnelled packet.
const GUE_CONTROL: u8 = 0x20;

/// A tunnelled packet: its inner IP header, how to strip the outer headers, and
/// the `GLOBAL_DECAP_*` counter it goes to once decapsulated.
pub struct Tunnel {
    pub inner: L3,
    pub strip: Strip,
    pub counter: u32,
}

/// What [`strip`] removes and rewrites.
#[derive(Clone, Copy)]
pub struct Strip {
    /// Length of the link-layer headers (Ethernet and VLAN tags), kept.
    pub l2_len: usize,
    /// Bytes removed after them: the outer IP header, and UDP and GUE for GUE.
    pub outer_len: usize,
    /// The ethertype the frame gets (the inner family's).
    pub inner_ethertype: u16,
}

/// `outer` as a tunnel this interface decapsulates, if it is one. Fragments
/// are never decapsulated: their inner packet is not whole.
#[inline(always)]
pub fn tunnel<B: PacketBuf>(buf: &B, outer: &L3) -> Result<Option<Tunnel>, Malformed> {
    let Some(ifindex) = buf.decap_ifindex() else {
        return Ok(None);
    };
    let proto = outer.next.proto;
    if outer.fragment
        || !matches!(proto, IPPROTO_IPIP | IPPROTO_IPV6 | IPPROTO_UDP)
        || count::setting(SETTING_DECAP_INTERFACES) == 0
    {
        return Ok(None);
    }
    // SAFETY: a plain lookup; the value is only read.
    let Some(config) = (unsafe { VIP_DECAP.get(&ifindex) }) else {
        return Ok(None);
    };
    let (inner_offset, inner_proto, counter) = if proto == IPPROTO_UDP {
        if config.flags & DECAP_GUE == 0 {
            return Ok(None);
        }
        let udp: [u8; UDP_HLEN] = read_at(buf, outer.next.offset)?;
        if [udp[2], udp[3]] != config.gue_port_be {
            return Ok(None);
        }
        let gue = outer.next.offset + UDP_HLEN;
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
    } else if outer.next.ipv6 {
        if config.flags & DECAP_IP6IP6 == 0 {
            return Ok(None);
        }
        (outer.next.offset, proto, GLOBAL_DECAP_IP6IP6)
    } else {
        if config.flags & DECAP_IPIP == 0 {
            return Ok(None);
        }
        (outer.next.offset, proto, GLOBAL_DECAP_IPIP)
    };
    let (inner, inner_ethertype) = match inner_proto {
        IPPROTO_IPIP => (parse::ipv4(buf, inner_offset)?, ETH_P_IPV4),
        IPPROTO_IPV6 => (parse::ipv6(buf, inner_offset)?, ETH_P_IPV6),
        _ => return Ok(None),
    };
    Ok(Some(Tunnel {
        inner,
        strip: Strip {
            l2_len: outer.header_offset,
            outer_len: inner_offset - outer.header_offset,
            inner_ethertype,
        },
        counter,
    }))
}

/// Removes the outer headers: the link-layer headers move up to just before the
/// inner IP header, with the inner family's ethertype, and the frame starts there.
#[inline(always)]
pub fn strip(ctx: &XdpContext, strip: Strip) -> Result<(), Failure> {
    match strip.l2_len {
        14 => strip_with::<14>(ctx, strip),
        18 => strip_with::<18>(ctx, strip),
        22 => strip_with::<22>(ctx, strip),
        _ => Err(Failure::Internal),
    }
}

#[inline(always)]
fn strip_with<const L2: usize>(ctx: &XdpContext, strip: Strip) -> Result<(), Failure> {
    let mut l2: [u8; L2] = read_at(ctx, 0).map_err(|_| Failure::Internal)?;
    let ethertype = strip.inner_ethertype.to_be_bytes();
    l2[L2 - 2] = ethertype[0];
    l2[L2 - 1] = ethertype[1];
    // SAFETY: the context this program was given; shrinking the head by the
    // outer headers' length, which the parse found inside the packet.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip.outer_len as i32) } != 0 {
        return Err(Failure::Internal);
    }
    write_at(ctx, 0, l2).map_err(|_| Failure::Internal)
}
