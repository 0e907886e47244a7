//! Allow lists: whether a packet to a range is accepted.

use aya_ebpf::{macros::map, maps::Array};
use vip_common::{
    port_bitmap_index, PortBitmap, RangePolicy, GLOBAL_FRAGMENTS, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP, POLICY_ICMP, POLICY_NONE, POLICY_TCP, POLICY_UDP,
};

use crate::{
    count,
    cursor::PacketBuf,
    parse::{self, Next, Transport},
};

#[map]
static VIP_POLICY: Array<RangePolicy> = Array::with_max_entries(1, 0);
#[map]
static VIP_PORTS: Array<PortBitmap> = Array::with_max_entries(1, 0);

pub enum Judgement {
    Accept,
    Drop,
    /// The transport header (or an IPv6 extension header) cannot be read, so
    /// the range's allow list cannot be checked: dropped, and counted as
    /// malformed rather than for its VIP.
    Malformed,
}

/// Judges a packet under the allow list `policy_id` (its range's; `POLICY_NONE`
/// for a range without one). A range without a list needs nothing past the IP
/// header, so its packets are accepted without reading the transport header
/// (the IPv6 extension header walk is most of an IPv6 hit's cost otherwise).
#[inline(always)]
pub fn judge<B: PacketBuf>(buf: &B, policy_id: u32, next: Next) -> Judgement {
    if policy_id == POLICY_NONE {
        return Judgement::Accept;
    }
    let Ok(transport) = parse::transport(buf, next) else {
        return Judgement::Malformed;
    };
    if !allows(policy_id, &transport, next.ipv6) {
        return Judgement::Drop;
    }
    if let Transport::LaterFragment { .. } = transport {
        count::global(GLOBAL_FRAGMENTS);
    }
    Judgement::Accept
}

/// A TCP or UDP port costs one lookup and one bit test, however long the list.
/// A policy id the maps have no entry for (they are written before any range
/// points at them, so this is a map inconsistency) judges as no list: vip never
/// drops on its own error.
#[inline(always)]
fn allows(policy_id: u32, transport: &Transport, ipv6: bool) -> bool {
    if let Transport::Ports { proto, dst_port } = *transport {
        let udp = proto == IPPROTO_UDP;
        return VIP_PORTS
            .get(port_bitmap_index(policy_id, udp))
            .is_none_or(|ports| ports.allows(dst_port));
    }
    let Some(policy) = VIP_POLICY.get(policy_id) else {
        return true;
    };
    let flag = |bit: u32| policy.flags & bit != 0;
    match *transport {
        Transport::Icmp {
            icmp_type,
            icmp_code,
        } => {
            path_mtu(ipv6, icmp_type, icmp_code)
                || (flag(POLICY_ICMP) && icmp_allowed(ipv6, icmp_type))
        }
        Transport::LaterFragment { proto } => match proto {
            IPPROTO_ICMP | IPPROTO_ICMPV6 => flag(POLICY_ICMP),
            IPPROTO_TCP => flag(POLICY_TCP),
            IPPROTO_UDP => flag(POLICY_UDP),
            _ => false,
        },
        Transport::Ports { .. } | Transport::Other => false,
    }
}

/// Fragmentation needed (ICMP) and Packet Too Big (ICMPv6) always pass: dropping
/// them would black-hole connections through links with a smaller MTU.
#[inline(always)]
fn path_mtu(ipv6: bool, icmp_type: u8, icmp_code: u8) -> bool {
    if ipv6 {
        icmp_type == 2
    } else {
        icmp_type == 3 && icmp_code == 4
    }
}

/// What `icmp` in an allow list lets through: echo request and reply, destination
/// unreachable, time exceeded (and, for ICMPv6, packet too big).
#[inline(always)]
fn icmp_allowed(ipv6: bool, icmp_type: u8) -> bool {
    if ipv6 {
        matches!(icmp_type, 128 | 129 | 1 | 2 | 3)
    } else {
        matches!(icmp_type, 8 | 0 | 3 | 11)
    }
}
