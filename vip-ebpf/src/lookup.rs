//! Which range a destination is in. The LPM tries are the authority; for IPv4, a
//! two-level direct index (top 16 bits, then the third octet) answers every
//! address whose /24 is covered by a single range in three array reads, which the
//! verifier inlines, and sends only /24s that hold longer ranges to the trie.

use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, Array, LpmTrie},
};
use vip_common::{RangeValue, VipAddr, V4_L1_ENTRIES, V4_L2_BLOCK, V4_SLOT_LPM, V4_SLOT_NONE};

#[map]
static VIP_V4_RANGES: LpmTrie<[u8; 4], RangeValue> = LpmTrie::with_max_entries(1, 0);
#[map]
static VIP_V6_RANGES: LpmTrie<[u8; 16], RangeValue> = LpmTrie::with_max_entries(1, 0);
#[map]
static VIP_RANGES: Array<RangeValue> = Array::with_max_entries(1, 0);
#[map]
static VIP_V4_L1: Array<u32> = Array::with_max_entries(V4_L1_ENTRIES, 0);
#[map]
static VIP_V4_L2: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn range_v4(addr_be: [u8; 4]) -> Option<&'static RangeValue> {
    let host = u32::from_be_bytes(addr_be);
    let block = *VIP_V4_L1.get(host >> 16)?;
    if block == 0 {
        return None;
    }
    let slot = *VIP_V4_L2.get((block - 1) * V4_L2_BLOCK + ((host >> 8) & 0xff))?;
    match slot {
        V4_SLOT_NONE => None,
        V4_SLOT_LPM => VIP_V4_RANGES.get(Key::new(32, addr_be)),
        range_slot => VIP_RANGES.get(range_slot - 1),
    }
}

#[inline(always)]
pub fn range_by_id(range_id: u32) -> Option<&'static RangeValue> {
    VIP_RANGES.get(range_id)
}

/// An LPM key placed so that its address starts 8-byte aligned on the stack: the
/// datapath is built with misaligned loads and stores allowed (fine for packet
/// memory), but the verifier rejects a misaligned stack access, and the kernel's
/// key layout puts the address at offset 4.
#[repr(C, align(8))]
struct AlignedV6Key {
    _pad: u32,
    key: Key<[u8; 16]>,
}

#[inline(always)]
pub fn range_v6(vip: &VipAddr) -> Option<&'static RangeValue> {
    let aligned = AlignedV6Key {
        _pad: 0,
        key: Key::new(128, vip.addr_be),
    };
    VIP_V6_RANGES.get(&aligned.key)
}
