//! Socket steering (sk_lookup): a new connection or a datagram to a VIP of a
//! range with a matching steer entry goes to the entry's socket, whatever
//! address that socket is bound to. Also counts, per range, the socket lookups
//! that reached a socket vip knows of ("delivered").

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap, SockMap},
    programs::SkLookupContext,
};
use vip_common::{RangeValue, SteerKey, SteerValue, SteeredVip, VipAddr, STEERED_VIPS};

use crate::{
    count::{self, add},
    lookup,
};

#[map]
static VIP_STEER: HashMap<SteerKey, SteerValue> = HashMap::with_max_entries(1, 0);
#[map]
static VIP_STEER_SOCKETS: SockMap = SockMap::with_max_entries(1, 0);
#[map]
static VIP_STEER_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VIP_STEERED_VIPS: PerCpuHashMap<SteeredVip, u64> =
    PerCpuHashMap::with_max_entries(STEERED_VIPS, 0);
// Programs of layout 14 and older count in it; declared so that the object
// creates it (one entry on a new datapath) and an upgrade keeps it.
#[map]
static VIP_DELIVERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

/// Assigns the lookup to its steer entry's socket, if it is for a VIP of a
/// range with a matching entry whose socket is there; otherwise leaves it to the
/// kernel's own lookup.
#[inline(always)]
pub fn steer(ctx: &SkLookupContext) {
    // SAFETY: the context the kernel passed; fields are read only.
    let lookup = unsafe { &*ctx.lookup };
    let found = match lookup.family {
        AF_INET => {
            let addr_be = lookup.local_ip4.to_ne_bytes();
            lookup::range_v4(addr_be).map(|range| (range, VipAddr::from_v4_be(addr_be)))
        }
        AF_INET6 => {
            let mut addr_be = [0u8; 16];
            for (i, word) in lookup.local_ip6.iter().enumerate() {
                addr_be[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
            let vip = VipAddr::from_v6_be(addr_be);
            lookup::range_v6(&vip).map(|range| (range, vip))
        }
        _ => None,
    };
    let Some((range, vip)) = found else {
        return;
    };
    let key = SteerKey {
        range_id: range.range_id,
        port_host: lookup.local_port as u16,
        proto: lookup.protocol as u8,
        _pad: 0,
    };
    // SAFETY: a plain lookup; the value is copied out.
    let Some(entry) = (unsafe { VIP_STEER.get(key) }).map(|v| v.entry) else {
        delivered(range);
        return;
    };
    // Fails when the entry's socket is missing, or of another family or
    // protocol: the kernel's own lookup goes on, and nothing is delivered here.
    if VIP_STEER_SOCKETS.redirect_sk_lookup(ctx, entry, 0).is_err() {
        return;
    }
    delivered(range);
    add(&VIP_STEER_STATS, entry);
    let steered = SteeredVip {
        vip,
        entry,
        _pad: 0,
    };
    match VIP_STEERED_VIPS.get_ptr_mut(steered) {
        // SAFETY: this CPU's value.
        Some(count) => unsafe { *count += 1 },
        None => {
            // Full: the entry's total above still has it.
            let _ = VIP_STEERED_VIPS.insert(steered, 1, 0);
        }
    }
}

#[inline(always)]
fn delivered(range: &RangeValue) {
    // A range id beyond the table is a map inconsistency; the lookup goes on
    // uncounted (this program has no failure counter of its own).
    if let Ok(counts) = count::range_counts(range.range_id) {
        counts.delivered += 1;
    }
}
