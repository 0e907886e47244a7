//! Allow lists: whether a packet to a range is accepted.

use aya_ebpf::{macros::map, maps::Array};
use vip_common::{
    RangePolicy, GLOBAL_FRAGMENTS, IPPROTO_ICMP, IPPROTO_ICMPV6, MAX_ALLOW_ENTRIES,
    POLICY_ENFORCED, POLICY_ICMP, POLICY_NONE,
};

use crate::{
    count,
    cursor::PacketBuf,
    parse::{self, Next, Transport},
};

#[map]
static VIP_POLICY: Array<RangePolicy> = Array::with_max_entries(1, 0);

pub enum Judgement {
    Accept,
    Drop,
    /// The transport header (or an IPv6 extension header) cannot be read. Counted
    /// as malformed, not for its VIP; dropped when the range has an allow list (its
    /// ports cannot be checked), passed when it has none.
    Malformed {
        drop: bool,
    },
}

/// Judges a packet under the allow list `policy_id` (its range's).
#[inline(always)]
pub fn judge<B: PacketBuf>(buf: &B, policy_id: u32, next: Next) -> Judgement {
    let policy = if policy_id == POLICY_NONE {
        None
    } else {
        VIP_POLICY.get(policy_id)
    };
    let enforced = policy.is_some_and(|p| p.flags & POLICY_ENFORCED != 0);
    let Ok(transport) = parse::transport(buf, next) else {
        return Judgement::Malformed { drop: enforced };
    };
    let accept = match policy {
        Some(policy) if enforced => allows(policy, &transport, next.ipv6),
        _ => true,
    };
    if !accept {
        return Judgement::Drop;
    }
    if let Transport::LaterFragment { .. } = transport {
        count::global(GLOBAL_FRAGMENTS);
    }
    Judgement::Accept
}

#[inline(always)]
fn allows(policy: &RangePolicy, transport: &Transport, ipv6: bool) -> bool {
    let icmp = policy.flags & POLICY_ICMP != 0;
    match *transport {
        Transport::Ports { proto, dst_port } => allows_port(policy, proto, dst_port),
        Transport::Icmp {
            icmp_type,
            icmp_code,
        } => path_mtu(ipv6, icmp_type, icmp_code) || (icmp && icmp_allowed(ipv6, icmp_type)),
        Transport::LaterFragment { proto } => {
            if proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 {
                icmp
            } else {
                allows_proto(policy, proto)
            }
        }
        Transport::Other => false,
    }
}

#[inline(always)]
fn allows_port(policy: &RangePolicy, proto: u8, port: u16) -> bool {
    for i in 0..MAX_ALLOW_ENTRIES {
        if i as u32 >= policy.entry_count {
            break;
        }
        let entry = &policy.entries[i];
        if entry.proto == proto && entry.port_first_host <= port && port <= entry.port_last_host {
            return true;
        }
    }
    false
}

#[inline(always)]
fn allows_proto(policy: &RangePolicy, proto: u8) -> bool {
    for i in 0..MAX_ALLOW_ENTRIES {
        if i as u32 >= policy.entry_count {
            break;
        }
        if policy.entries[i].proto == proto {
            return true;
        }
    }
    false
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
