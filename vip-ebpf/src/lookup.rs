//! Which range a destination is in. The LPM tries are the authority; for IPv4, a
//! two-level direct index (top 16 bits, then the third octet) answers every
//! address whose /24 is covered by a single range in array reads, which the
//! verifier inlines, and sends only /24s that hold longer ranges to the trie.
//! A /24 of a dense range carries its policy and dense slots itself, so its
//! packets never read the range: two reads, then the counter. IPv6 dense
//! ranges (/112 or longer) are found by their /112 block in `VIP_V6_BLOCKS`,
//! before the sparse table; a declared IPv6 VIP by an entry of its own there,
//! after the sparse table's probe (layout 16); a sparse IPv6 range alone in
//! its /64 by an entry for the /64 there, before the trie (layout 17).

use core::mem::offset_of;

use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, Array, LpmTrie},
};
use vip_common::{
    v6_block_hash, v6_block_of, v6_range_hash, RangeValue, V4Slash24, V6Block, VipAddr,
    PER_VIP_DENSE, POLICY_NONE, V4_DIRECT_DENSE, V4_L1_ENTRIES, V4_L2_BLOCK, V4_SLOT_LPM,
    V4_SLOT_NONE, V6_BLOCK_DECLARED, V6_BLOCK_DIRECT, V6_BLOCK_EMPTY, V6_BLOCK_LPM,
    V6_BLOCK_PROBES, V6_BLOCK_RANGE, V6_DECLARED_PROBES, V6_RANGE_PROBES,
};

#[map]
static VIP_V4_RANGES: LpmTrie<[u8; 4], RangeValue> = LpmTrie::with_max_entries(1, 0);
#[map]
static VIP_V6_RANGES: LpmTrie<[u8; 16], RangeValue> = LpmTrie::with_max_entries(1, 0);
#[map]
static VIP_RANGES: Array<RangeValue> = Array::with_max_entries(1, 0);
#[map]
static VIP_V4_L1: Array<u32> = Array::with_max_entries(V4_L1_ENTRIES, 0);
// Programs of layout 8 and older read it; declared so the object creates it.
#[map]
static VIP_V4_L2: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static VIP_V4_SLASH24: Array<V4Slash24> = Array::with_max_entries(1, 0);
#[map]
static VIP_V6_BLOCKS: Array<V6Block> = Array::with_max_entries(1, 0);

/// `VIP_V6_BLOCKS`'s length minus one, set by the loader (fixed for the
/// datapath's life, like the sparse table's mask).
#[unsafe(no_mangle)]
static VIP_V6_BLOCK_MASK: u32 = 0;

/// An IPv4 destination in a range: what judging and counting it needs.
pub struct V4Target {
    pub policy_id: u32,
    /// The range, when it must be read; `None` for an address of a dense
    /// range's /24, whose slot is `dense_slot`.
    pub range: Option<&'static RangeValue>,
    pub dense_slot: u32,
}

/// What the packet path needs of an IPv4 destination, if it is in a range.
#[inline(always)]
pub fn v4(addr_be: [u8; 4]) -> Option<V4Target> {
    let host = u32::from_be_bytes(addr_be);
    let slash24 = slash24(host)?;
    if dense_without_list(slash24) {
        return Some(V4Target {
            policy_id: POLICY_NONE,
            range: None,
            dense_slot: slash24.dense_first.wrapping_add(host & 0xff),
        });
    }
    if slash24.direct == V4_DIRECT_DENSE {
        return Some(V4Target {
            policy_id: slash24.policy_id,
            range: None,
            dense_slot: slash24.dense_first.wrapping_add(host & 0xff),
        });
    }
    let range = range_of(slash24, addr_be)?;
    Some(V4Target {
        policy_id: range.policy_id,
        range: Some(range),
        dense_slot: 0,
    })
}

/// `direct` then `policy_id` of a dense /24 whose range has no allow list, as
/// one word in memory.
const DENSE_WITHOUT_LIST: u64 = {
    let (direct, policy) = (V4_DIRECT_DENSE.to_ne_bytes(), POLICY_NONE.to_ne_bytes());
    u64::from_ne_bytes([
        direct[0], direct[1], direct[2], direct[3], policy[0], policy[1], policy[2], policy[3],
    ])
};
const _: () = assert!(offset_of!(V4Slash24, policy_id) == offset_of!(V4Slash24, direct) + 4);

/// Whether a /24 is a dense range's without an allow list, the common case:
/// its `direct` and `policy_id` compared as one word, one load and one branch
/// where each field costs its own. The answer is the same as comparing them
/// one by one; what changes is the cost, 0.9 to 1.25 ns less on an IPv4 hit
/// (AMD EPYC family 25 model 17, over five code layouts: NOTES.md,
/// thirty-fifth session), and the policy check after it folds away.
#[inline(always)]
fn dense_without_list(slash24: &V4Slash24) -> bool {
    // SAFETY: the two adjacent u32 fields (asserted above) of a map value,
    // read unaligned.
    let pair = unsafe {
        core::ptr::addr_of!(slash24.direct)
            .cast::<u64>()
            .read_unaligned()
    };
    pair == DENSE_WITHOUT_LIST
}

/// The range an IPv4 address is in, read whatever its mode.
#[inline(always)]
pub fn range_v4(addr_be: [u8; 4]) -> Option<&'static RangeValue> {
    range_of(slash24(u32::from_be_bytes(addr_be))?, addr_be)
}

#[inline(always)]
fn slash24(host: u32) -> Option<&'static V4Slash24> {
    let block = *VIP_V4_L1.get(host >> 16)?;
    if block == 0 {
        return None;
    }
    VIP_V4_SLASH24.get((block - 1) * V4_L2_BLOCK + ((host >> 8) & 0xff))
}

#[inline(always)]
fn range_of(slash24: &V4Slash24, addr_be: [u8; 4]) -> Option<&'static RangeValue> {
    match slash24.range_slot {
        V4_SLOT_NONE => None,
        V4_SLOT_LPM => VIP_V4_RANGES.get(Key::new(32, addr_be)),
        range_slot => VIP_RANGES.get(range_slot - 1),
    }
}

/// A destination in a dense range: its policy and its slot in the dense table.
pub struct DenseTarget {
    pub policy_id: u32,
    pub dense_slot: u32,
}

/// The dense slot of an IPv6 destination in a dense range. `None` sends the
/// packet on to the sparse path, which finds anything else: sparse ranges
/// (whose /112 blocks are never in `VIP_V6_BLOCKS`, or for a range an
/// upgrade kept sparse, may share a block with a dense range) and addresses
/// in no range.
#[inline(always)]
pub fn v6_dense(vip: &VipAddr) -> Option<DenseTarget> {
    let (prefix, offset) = v6_block_of(vip.words());
    // SAFETY: a static. Read volatile, or the compiler folds the 0 above.
    let mask = unsafe { core::ptr::read_volatile(&VIP_V6_BLOCK_MASK) };
    let start = v6_block_hash(prefix);
    for i in 0..V6_BLOCK_PROBES {
        let block = VIP_V6_BLOCKS.get(start.wrapping_add(i) & mask)?;
        match block.state {
            V6_BLOCK_EMPTY => return None,
            V6_BLOCK_DIRECT if block.prefix_words() == prefix => {
                let from_first = offset.wrapping_sub(block.first_offset_host);
                if from_first > block.span_host {
                    return None;
                }
                return Some(DenseTarget {
                    policy_id: block.policy_id,
                    dense_slot: block.dense_base.wrapping_add(u32::from(from_first)),
                });
            }
            V6_BLOCK_LPM if block.prefix_words() == prefix => {
                let range = range_v6(vip)?;
                if range.per_vip_mode != PER_VIP_DENSE {
                    return None;
                }
                return Some(DenseTarget {
                    policy_id: range.policy_id,
                    dense_slot: dense_slot(range, vip),
                });
            }
            _ => {}
        }
    }
    None
}

/// What the block index says of an address as a declared VIP.
pub enum Declared {
    /// A declared VIP of a sparse IPv6 range, through its entry (layout 16),
    /// while its range is the incarnation the entry was written for.
    Found(DenseTarget),
    /// No declared entry holds the address: declared nowhere, or declared
    /// without an entry (no room), which only the range's entry can tell
    /// apart (`V6_RANGE_DECLARED_COMPLETE`).
    Absent,
    /// An entry holds the address for an incarnation of its range that is
    /// not the current one.
    Stale,
}

/// The dense slot of a declared VIP of a sparse IPv6 range, through its
/// entry in `VIP_V6_BLOCKS`. Anything but `Found` sends the packet on to the
/// sparse path, which finds every declared VIP as well (by the trie and
/// `VIP_DECLARED`).
#[inline(always)]
pub fn v6_declared(vip: &VipAddr) -> Declared {
    let words = vip.words();
    // SAFETY: a static. Read volatile, or the compiler folds the 0 above.
    let mask = unsafe { core::ptr::read_volatile(&VIP_V6_BLOCK_MASK) };
    let start = v6_block_hash(words);
    let mut found = None;
    for i in 0..V6_DECLARED_PROBES {
        let Some(entry) = VIP_V6_BLOCKS.get(start.wrapping_add(i) & mask) else {
            return Declared::Stale;
        };
        match entry.state {
            V6_BLOCK_EMPTY => return Declared::Absent,
            V6_BLOCK_DECLARED if entry.prefix_words() == words => {
                found = Some(entry);
                break;
            }
            _ => {}
        }
    }
    let Some(entry) = found else {
        return Declared::Absent;
    };
    let Some(range) = range_by_id(entry.declared_range_id()) else {
        return Declared::Stale;
    };
    if range.epoch != entry.declared_epoch() {
        return Declared::Stale;
    }
    Declared::Found(DenseTarget {
        policy_id: range.policy_id,
        dense_slot: entry.declared_slot(),
    })
}

/// A sparse IPv6 range found through its /64's entry in `VIP_V6_BLOCKS`.
pub struct IndexedRange {
    pub range: &'static RangeValue,
    /// The entry's `V6_RANGE_*` flags.
    pub flags: u16,
}

/// The sparse range of an IPv6 address through the entry of its /64 (layout
/// 17), while the range is the incarnation the entry was written for. `None`
/// sends the packet to the trie, the authority: no entry, the address
/// outside the range, or a stale entry.
#[inline(always)]
pub fn v6_range(vip: &VipAddr) -> Option<IndexedRange> {
    let words = vip.words();
    // SAFETY: a static. Read volatile, or the compiler folds the 0 above.
    let mask = unsafe { core::ptr::read_volatile(&VIP_V6_BLOCK_MASK) };
    let start = v6_range_hash(words[0]);
    let mut found = None;
    for i in 0..V6_RANGE_PROBES {
        let entry = VIP_V6_BLOCKS.get(start.wrapping_add(i) & mask)?;
        match entry.state {
            V6_BLOCK_EMPTY => return None,
            V6_BLOCK_RANGE if entry.prefix_words()[0] == words[0] => {
                found = Some(entry);
                break;
            }
            _ => {}
        }
    }
    let entry = found?;
    if !entry.range_holds(words) {
        return None;
    }
    let range = range_by_id(entry.range_id())?;
    if range.epoch != entry.range_epoch() {
        return None;
    }
    Some(IndexedRange {
        range,
        flags: entry.range_flags(),
    })
}

/// The dense slot of `vip` in `range`, a dense range: by its last four bytes,
/// which hold an IPv4 address (mapped) or the offset within the /112 block
/// of an IPv6 one.
#[inline(always)]
pub fn dense_slot(range: &RangeValue, vip: &VipAddr) -> u32 {
    let [.., a, b, c, d] = vip.addr_be;
    let low = u32::from_be_bytes([a, b, c, d]);
    range
        .dense_base
        .wrapping_add(low.wrapping_sub(range.network_v4_host))
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
