//! Map names and the key/value types of the datapath maps.

use bytemuck::{Pod, Zeroable};

/// LPM trie of IPv4 ranges: `lpm_trie::Key<[u8; 4]>`, address in network order, -> [`RangeValue`].
pub const MAP_V4_RANGES: &str = "VIP_V4_RANGES";
/// LPM trie of IPv6 ranges: `lpm_trie::Key<[u8; 16]>`, address in network order, -> [`RangeValue`].
pub const MAP_V6_RANGES: &str = "VIP_V6_RANGES";
/// Array of [`RangeValue`] indexed by range id, for the IPv4 direct index.
pub const MAP_RANGES: &str = "VIP_RANGES";
/// Array of `u32`, `V4_L1_ENTRIES` long, indexed by the top 16 bits of an IPv4
/// address: 0 when no range touches that /16, else 1 + its block in `MAP_V4_L2`.
pub const MAP_V4_L1: &str = "VIP_V4_L1";
/// Array of `u32`, `V4_L2_BLOCK` per block, indexed by block * 256 + the third
/// octet: `V4_SLOT_NONE`, `V4_SLOT_LPM`, or 1 + the id of the range that covers
/// the whole /24. Read by programs of layout 8 and older only; kept written so
/// that they stay right during an upgrade.
pub const MAP_V4_L2: &str = "VIP_V4_L2";
/// Array of [`V4Slash24`], indexed as `MAP_V4_L2` (layout 9 on): what the
/// datapath needs of the /24, so that a dense range's packet is judged and
/// counted without reading the range.
pub const MAP_V4_SLASH24: &str = "VIP_V4_SLASH24";
/// Array of [`crate::RangePolicy`], indexed by `RangeValue::policy_id`. The
/// datapath reads its flags for ICMP and later fragments; TCP and UDP ports are
/// judged in `crate::MAP_PORTS`. Its entries stay filled in: programs of
/// layout 7 and older read them until an upgrade replaces them.
pub const MAP_POLICY: &str = "VIP_POLICY";
/// Per-CPU array of [`crate::RangeStats`], indexed by `RangeValue::range_id`.
/// Layouts 14 and older count in it; since 15 it is a part of
/// [`MAP_RANGE_COUNTS`], and this one is kept, frozen, by a datapath upgraded
/// from 14 or older (the stats add its counts), and made one entry long by a
/// new one.
pub const MAP_RANGE_STATS: &str = "VIP_RANGE_STATS";
/// CPU table of [`crate::RangeCounts`] (layout 15 on), one row per range id
/// (`GLOBAL_RANGE_STRIDE` rows per CPU): the per-range counters that are not
/// sums of VIP slots, which layouts 14 and older kept in the per-CPU arrays
/// `MAP_RANGE_STATS`, `MAP_PRESSURE` and `crate::MAP_DELIVERED` (frozen on a
/// datapath upgraded from one, as `MAP_RANGE_STATS` is).
pub const MAP_RANGE_COUNTS: &str = "VIP_RANGE_COUNTS";
/// CPU table (see [`CPU_TABLE_MAP_FLAGS`]) of [`crate::Verdicts`], one slot per
/// address of every dense range. Layouts 13 and older count in it; since 14 it
/// is [`MAP_DENSE_COUNTS`], and this one is kept, frozen, by a datapath
/// upgraded from 13 or older (the stats add its counts, slot by slot: dense
/// slots keep their place across an upgrade), and made one page per CPU by a
/// new one.
pub const MAP_DENSE_STATS: &str = "VIP_DENSE_STATS";
/// CPU table of [`crate::Counter`] (layout 14 on), one slot per address of
/// every dense range and verdict: each CPU's stretch is its accepted half,
/// then its dropped half (`GLOBAL_DENSE_DROPPED` on), each
/// `SETTING_DENSE_STRIDE` slots long. A VIP's packets of one verdict touch 16
/// bytes, four VIPs to a cache line, where a [`crate::Verdicts`] slot holds
/// two: traffic that is mostly passed, or mostly dropped, needs half the
/// cache a whole slot per VIP would (BENCHMARKS.md, "Issue 19, fourteenth
/// session").
pub const MAP_DENSE_COUNTS: &str = "VIP_DENSE_COUNTS";
/// CPU table of [`crate::SparseSlot`]: per CPU, an open-addressing table (a power
/// of two long, `SETTING_SPARSE_MASK` + 1, `SPARSE_PROBES` probes) of the VIPs of
/// sparse ranges (IPv6, IPv4 wider than /16) that CPU has seen. Layouts 11 and
/// older count in it; since 12 it is [`MAP_SPARSE_HOT`] and [`MAP_SPARSE_COLD`],
/// and this one is kept, frozen, by a datapath upgraded from 11 or older (the
/// stats add its VIPs' counts), and made one page per CPU by a new one.
pub const MAP_SPARSE_STATS: &str = "VIP_SPARSE_STATS";
/// CPU tables of [`crate::SparseHot`] and [`crate::SparseCold`] (layout 12
/// on): the sparse table, each slot split in a hot half a hit touches and a
/// cold half at the same index; `SETTING_SPARSE_MASK` + 1 slots per CPU, found
/// as `MAP_SPARSE_STATS`'s were.
pub const MAP_SPARSE_HOT: &str = "VIP_SPARSE_HOT";
pub const MAP_SPARSE_COLD: &str = "VIP_SPARSE_COLD";
/// Array of one `u32` (layout 12 on): the sparse tag word, see
/// [`crate::SPARSE_TAG_SWEEP`]. The daemon moves it on after every change to
/// the ranges and at every sweep; the datapath reads it before any range.
pub const MAP_SPARSE_TAG: &str = "VIP_SPARSE_TAG";
/// Array of `u32` settings, indexed by the `SETTING_*` constants.
pub const MAP_SETTINGS: &str = "VIP_SETTINGS";
/// Per-CPU array of `u64`, indexed by the `GLOBAL_*` constants.
pub const MAP_GLOBAL_STATS: &str = "VIP_GLOBAL";
/// Array of [`crate::RangeMeta`], written by userspace only, so `vip stats` can name ranges.
pub const MAP_RANGE_META: &str = "VIP_RANGE_META";
/// Array of [`crate::AttachMeta`], written by userspace only; pinned last, after attaching.
pub const MAP_ATTACH_META: &str = "VIP_ATTACH_META";

/// Array of [`DecapConfig`] indexed by ingress ifindex (as long as the highest
/// ifindex of `interfaces`): the interfaces where XDP decapsulates tunnelled
/// packets to VIPs, and which tunnels (flags 0: none).
pub const MAP_DECAP: &str = "VIP_DECAP";

/// Array of one `DatapathInfo`: the running programs' build (layout 6 on).
pub const MAP_INFO: &str = "VIP_INFO";

/// Array of one [`crate::SparseControl`]: the sparse table's hash key and sweep
/// generation (layout 7 on).
pub const MAP_SPARSE_CONTROL: &str = "VIP_SPARSE_CTL";
/// Per-CPU array of [`crate::RangePressure`], indexed by `RangeValue::range_id`
/// (layouts 7 to 14; frozen since, as `MAP_RANGE_STATS`).
pub const MAP_PRESSURE: &str = "VIP_PRESSURE";
/// Hash of [`VipAddr`] -> [`crate::DeclaredVip`]: the declared VIPs of sparse
/// ranges (layout 7 on).
pub const MAP_DECLARED: &str = "VIP_DECLARED";

/// Array of one `u32` (layout 11 on): the version of the ranges, moved on
/// (never to 0) after every change the daemon makes to them. A slot of
/// `MAP_SPARSE_STATS` marked with the version in force
/// (`crate::SparseSlot::fast_version`) is counted without reading its range by
/// programs of layout 11 (during an upgrade); layout 12's read [`MAP_SPARSE_TAG`].
pub const MAP_RANGES_VERSION: &str = "VIP_RANGES_VERSION";

/// Every map name starts with this, so that `vip down` can remove the pins of
/// maps a newer layout added, which this binary does not know by name.
pub const MAP_NAME_PREFIX: &str = "VIP_";

/// Every map the daemon pins, in pin order: `MAP_ATTACH_META` is last, so its pin
/// marks a datapath that is fully set up.
pub const PINNED_MAPS: [&str; 32] = [
    MAP_SETTINGS,
    MAP_INFO,
    MAP_SPARSE_CONTROL,
    MAP_RANGES_VERSION,
    MAP_SPARSE_TAG,
    MAP_PRESSURE,
    MAP_DECLARED,
    MAP_POLICY,
    crate::MAP_PORTS,
    MAP_V4_RANGES,
    MAP_V6_RANGES,
    MAP_RANGES,
    MAP_V4_L1,
    MAP_V4_L2,
    MAP_V4_SLASH24,
    crate::MAP_V6_BLOCKS,
    MAP_RANGE_STATS,
    MAP_RANGE_COUNTS,
    MAP_DENSE_STATS,
    MAP_DENSE_COUNTS,
    MAP_SPARSE_STATS,
    MAP_SPARSE_HOT,
    MAP_SPARSE_COLD,
    MAP_GLOBAL_STATS,
    MAP_RANGE_META,
    MAP_DECAP,
    crate::MAP_STEER,
    crate::MAP_STEER_SOCKETS,
    crate::MAP_STEER_STATS,
    crate::MAP_STEERED_VIPS,
    crate::MAP_DELIVERED,
    MAP_ATTACH_META,
];

/// Names of the eBPF programs in the object.
pub const PROG_XDP: &str = "vip_xdp";
pub const PROG_TC: &str = "vip_tc";
/// `cargo xtask bench` only, never attached: `vip_xdp` on an IPIP frame, then the
/// frame put back as it came (BPF_PROG_TEST_RUN repeats reuse one buffer).
pub const PROG_BENCH_DECAP: &str = "bench_vip_xdp_decap";
/// `cargo xtask bench` only: the same harness around an empty program.
pub const PROG_BENCH_HARNESS: &str = "bench_harness_only";
/// `cargo xtask bench` only: the decap floor (the least an IPIP decapsulation
/// that counts per inner VIP must do) in the same harness.
pub const PROG_BENCH_FLOOR_DECAP: &str = "bench_floor_decap";
/// Per-CPU slot where the bench harness keeps the frame while the program under
/// test runs (see vip-ebpf's bench.rs). Bench programs only; not pinned.
pub const MAP_BENCH_SAVED: &str = "VIP_BENCH_SAVED";

/// The per-VIP floor of the end-to-end bench (vip-baseline's `floor_per_vip`,
/// never in vip's object): a CPU table of [`crate::Verdicts`],
/// `FLOOR_VIPS` slots per CPU, one per address of `FLOOR_PREFIX_V6`/112.
pub const MAP_FLOOR_SLOTS: &str = "FLOOR_SLOTS";
/// The floor's synthetic VIP set: 2001:db8:0:1::/112, the last 16 bits the
/// slot index.
pub const FLOOR_PREFIX_V6: [u8; 14] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
pub const FLOOR_VIPS: u32 = 1 << 16;
/// The hashed per-VIP floors of the end-to-end bench (vip-baseline's
/// `floor_per_vip_hashed` and `floor_per_vip_hashed_line`): vip's table shape
/// without vip. A CPU table of [`crate::FloorSlot`], `FLOOR_HASHED_SLOTS_PER_CPU` per
/// CPU (twice the VIPs, as vip sizes its table for its capacity), found by the
/// multiply hash under [`FLOOR_V6_MULTIPLIERS`] and a linear probe of at most
/// [`SPARSE_PROBES`] slots, taken when free; a packet that finds none is
/// counted in `MAP_FLOOR_HASHED_OVERFLOW`.
pub const MAP_FLOOR_HASHED_SLOTS: &str = "FLOOR_HASHED_SLOTS";
/// The hashed floors' one per-CPU [`crate::Counter`] of packets whose address
/// found no slot within the probe.
pub const MAP_FLOOR_HASHED_OVERFLOW: &str = "FLOOR_HASHED_OVERFLOW";
pub const FLOOR_HASHED_SLOTS_PER_CPU: u32 = 2 * FLOOR_VIPS;
/// `floor_per_vip_hashed_line` puts its 32-byte slots this many apart, one to
/// a 64-byte line as vip's `SparseSlot` of layouts 11 and older
/// (`FLOOR_HASHED_SLOTS_PER_CPU` times this per CPU in the map).
pub const FLOOR_LINE_SPREAD: u32 = 2;
/// The IPv4 floor of `cargo xtask bench` (vip-baseline's `floor_v4_count`): a
/// CPU table of [`crate::Verdicts`], `FLOOR_V4_VIPS` slots per CPU, one per
/// address of `FLOOR_V4_PREFIX`/24, the bench's IPv4 range.
pub const MAP_FLOOR_V4_SLOTS: &str = "FLOOR_V4_SLOTS";
pub const FLOOR_V4_PREFIX: [u8; 3] = [192, 0, 2];
pub const FLOOR_V4_VIPS: u32 = 256;
/// The IPv4 floor of a port under an allow list (vip-baseline's `floor_v4_port`): the
/// allowed ports of one list, TCP at 0 and UDP at 1, as [`crate::PortBitmap`]s.
pub const MAP_FLOOR_V4_PORTS: &str = "FLOOR_V4_PORTS";
/// The IPv6 floor of `cargo xtask bench` (vip-baseline's `floor_v6_count`): a
/// CPU table of [`crate::SparseSlot`], `FLOOR_V6_SLOTS_PER_CPU` per CPU, found by the
/// multiply hash of the address under [`FLOOR_V6_MULTIPLIERS`].
pub const MAP_FLOOR_V6_SLOTS: &str = "FLOOR_V6_SLOTS";
pub const FLOOR_V6_SLOTS_PER_CPU: u32 = 4096;
/// Fixed rather than drawn: the floor reads them from its read-only data as
/// vip reads its own drawn ones, and the bench finds a VIP's slot with them.
pub const FLOOR_V6_MULTIPLIERS: [u64; 4] = [
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xd6e8_feb8_6659_fd93,
];
/// The decap floor of `cargo xtask bench` (vip-ebpf's bench feature only): a
/// per-CPU array of [`crate::Verdicts`], one per address of
/// `FLOOR_V4_PREFIX`/24.
pub const MAP_BENCH_FLOOR_DECAP: &str = "VIP_BENCH_FLOOR_DECAP";

pub const V4_L1_ENTRIES: u32 = 1 << 16;
pub const V4_L2_BLOCK: u32 = 256;
/// No range covers any address of this /24.
pub const V4_SLOT_NONE: u32 = 0;
/// Ranges longer than /24 lie in this /24: ask the LPM trie.
pub const V4_SLOT_LPM: u32 = u32::MAX;
/// `V4Slash24::direct`: the /24 is covered by a range in `PER_VIP_DENSE` mode.
pub const V4_DIRECT_DENSE: u32 = 1;

/// Value of `MAP_V4_SLASH24`: one /24 of the IPv4 direct index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct V4Slash24 {
    /// `V4_SLOT_NONE`, `V4_SLOT_LPM`, or 1 + the id of the range that covers
    /// the whole /24 (the value `MAP_V4_L2` has for it).
    pub range_slot: u32,
    /// `V4_DIRECT_DENSE`, or 0: read the range from `MAP_RANGES`.
    pub direct: u32,
    /// With `V4_DIRECT_DENSE`: the range's `policy_id`, and the dense slot
    /// (`MAP_DENSE_COUNTS`) of the /24's address .0 (its address .n is n slots
    /// on).
    pub policy_id: u32,
    pub dense_first: u32,
}

const _: () = assert!(size_of::<V4Slash24>() == 16);

/// Global (read-only data) of the datapath object that the loader sets to the
/// length of each CPU's stretch of `MAP_DENSE_COUNTS` (both halves): the
/// programs read it instead of a map.
pub const GLOBAL_DENSE_STRIDE: &str = "VIP_DENSE_STRIDE";
/// Global the loader sets to where the dropped half of a CPU's stretch of
/// `MAP_DENSE_COUNTS` starts (`SETTING_DENSE_STRIDE`'s value).
pub const GLOBAL_DENSE_DROPPED: &str = "VIP_DENSE_DROPPED";
/// Global the loader sets to the rows per CPU of `MAP_RANGE_COUNTS`.
pub const GLOBAL_RANGE_STRIDE: &str = "VIP_RANGE_STRIDE";
/// Global the loader sets to `SETTING_SPARSE_MASK`'s value, as above.
pub const GLOBAL_SPARSE_MASK: &str = "VIP_SPARSE_MASK";
/// Global the loader sets to the pinned or new `SparseControl::hash_kind`.
pub const GLOBAL_SPARSE_HASH_KIND: &str = "VIP_SPARSE_HASH_KIND";
/// Global (`[u64; 4]`) the loader sets to `sparse_multipliers` of the
/// control entry's key.
pub const GLOBAL_SPARSE_MULTIPLIERS: &str = "VIP_SPARSE_MULTIPLIERS";

/// `MAP_SETTINGS` index: the sparse table's length per CPU minus one (a power of
/// two minus one).
pub const SETTING_SPARSE_MASK: u32 = 0;
/// `MAP_SETTINGS` index: dense slots per CPU and verdict (each half of a CPU's
/// stretch of `MAP_DENSE_COUNTS`; `MAP_DENSE_STATS`'s slots per CPU before
/// layout 14). Written when a datapath is created, for inspection; read by
/// nothing.
pub const SETTING_DENSE_STRIDE: u32 = 1;
/// `MAP_SETTINGS` index: the [`LAYOUT_VERSION`] of the binary that created the
/// maps. The datapath never reads it; a restarted daemon does, before adopting
/// pinned maps.
pub const SETTING_LAYOUT_VERSION: u32 = 2;
/// `MAP_SETTINGS` index: the inode of the network namespace the datapath was set
/// up in (namespace inodes are 32-bit). Never read by the datapath; a daemon or
/// `vip down` in another namespace refuses the pins.
pub const SETTING_NETNS_INODE: u32 = 3;
pub const SETTINGS: u32 = 4;

/// Bumped whenever a map, a shared type or the meaning of a setting changes, so
/// that a binary never adopts maps pinned by one it does not know. A binary
/// upgrades a datapath of an older layout from [`OLDEST_UPGRADABLE`] on.
pub const LAYOUT_VERSION: u32 = 17;

/// The oldest layout this binary upgrades in place; it upgrades every one
/// from this to `LAYOUT_VERSION - 1`.
pub const OLDEST_UPGRADABLE: u32 = 5;

/// The maps each layout since [`OLDEST_UPGRADABLE`] added: an upgrade creates
/// (and pins) those of every layout after the datapath's. Layout 10 added no
/// map: its new datapaths use the multiply hash in the sparse table
/// (`SparseControl::hash_kind`, padding before), which no older binary may
/// adopt; an upgraded one keeps fmix. Layout 16 added none either: declared
/// IPv6 VIPs get entries of a new state in `MAP_V6_BLOCKS`, which no older
/// binary's reloads would keep right; nor did layout 17, whose new state is
/// a sparse IPv6 range's entry by its /64. The upgrade's sync sets
/// `MAP_RANGES_VERSION` and `MAP_SPARSE_TAG`, and writes those entries.
pub const MAPS_ADDED: [(u32, &[&str]); 9] = [
    (6, &[MAP_INFO]),
    (7, &[MAP_SPARSE_CONTROL, MAP_PRESSURE, MAP_DECLARED]),
    (8, &[crate::MAP_PORTS]),
    (9, &[MAP_V4_SLASH24]),
    (11, &[MAP_RANGES_VERSION]),
    (12, &[MAP_SPARSE_HOT, MAP_SPARSE_COLD, MAP_SPARSE_TAG]),
    (13, &[crate::MAP_V6_BLOCKS]),
    (14, &[MAP_DENSE_COUNTS]),
    (15, &[MAP_RANGE_COUNTS]),
];

/// The maps a datapath of layout `version` lacks.
pub fn maps_added_since(version: u32) -> impl Iterator<Item = &'static str> {
    MAPS_ADDED
        .iter()
        .filter(move |(added_in, _)| *added_in > version)
        .flat_map(|(_, maps)| maps.iter().copied())
}

/// Name, in the pin directory, of the pinned bpf_link that keeps the datapath
/// attached to an interface: this prefix, then the interface name.
pub const LINK_PIN_PREFIX: &str = "link-";

/// `BPF_F_MMAPABLE`. The per-VIP counter maps are "CPU tables": plain arrays that
/// hold one stretch of slots per possible CPU (CPU `c`'s slot `i` is at
/// `c * stride + i`), rather than per-CPU arrays. A per-CPU array reaches a slot
/// through a pointer table, two dependent cache misses when VIPs are many; a CPU
/// table is one. Being mmapable, the array starts on a page, so slots whose size
/// divides 64 never straddle cache lines, and userspace reads all of it at once.
pub const CPU_TABLE_MAP_FLAGS: u32 = 1 << 10;
/// Slots per CPU in a CPU table are a multiple of this many bytes, so that each
/// CPU's stretch starts on a page of its own.
pub const CPU_TABLE_ALIGN: u32 = 4096;
/// Slots tried for a sparse VIP before its packets count as the range's overflow.
pub const SPARSE_PROBES: u32 = 8;

/// IPv4 ranges of this prefix length or longer get a dense per-VIP index.
pub const DENSE_MIN_PREFIX_V4: u8 = 16;

/// `RangeValue::per_vip_mode`: per-VIP counters live in `MAP_DENSE_COUNTS`
/// (IPv4 ranges of `DENSE_MIN_PREFIX_V4` or longer; since layout 13 IPv6
/// ranges of `crate::DENSE_MIN_PREFIX_V6` or longer that learn every VIP).
pub const PER_VIP_DENSE: u32 = 1;
/// `RangeValue::per_vip_mode`: per-VIP counters live in `MAP_SPARSE_STATS`.
pub const PER_VIP_SPARSE: u32 = 2;
/// `RangeValue::per_vip_mode`: a sparse range with declared VIPs. A declared VIP
/// (in `MAP_DECLARED`) counts in its own slot of `MAP_DENSE_COUNTS`; any other
/// address counts as in `PER_VIP_SPARSE`.
pub const PER_VIP_SPARSE_DECLARED: u32 = 3;
/// `RangeValue::per_vip_mode`: only declared VIPs have rows; packets to any
/// other address count as the range's `RangePressure::unlearned`.
pub const PER_VIP_DECLARED_ONLY: u32 = 4;

/// What an LPM lookup of a destination returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RangeValue {
    /// Index into `MAP_RANGE_STATS` and `MAP_RANGE_META`.
    pub range_id: u32,
    /// One of the `PER_VIP_*` modes.
    pub per_vip_mode: u32,
    /// First slot of this range in `MAP_DENSE_COUNTS`: its addresses' slots for a
    /// dense range, its declared VIPs' for a sparse one.
    pub dense_base: u32,
    /// Dense ranges only: the range's IPv4 network address in host order, or
    /// for an IPv6 range the last four bytes of its network address, in host
    /// order (a dense IPv6 range lies within one /112).
    pub network_v4_host: u32,
    /// Unique for the life of the datapath (never 0): a sparse slot recording an
    /// older epoch belongs to a range a reload removed or replaced.
    pub epoch: u32,
    /// Index into `MAP_POLICY`; ranges with the same allow list share one entry.
    pub policy_id: u32,
}

/// Key of `MAP_SPARSE_STATS`: an IPv6 address, or an IPv4 address mapped into
/// `::ffff:0:0/96`, in network order. Aligned to 8 so the datapath moves it in two
/// 8-byte words rather than sixteen bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct VipAddr {
    pub addr_be: [u8; 16],
}

impl VipAddr {
    pub const fn from_v4_be(v4: [u8; 4]) -> Self {
        Self {
            addr_be: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
            ],
        }
    }

    pub const fn from_v6_be(v6: [u8; 16]) -> Self {
        Self { addr_be: v6 }
    }

    /// The key of an address: IPv4 mapped into `::ffff:0:0/96`.
    pub const fn from_ip(addr: core::net::IpAddr) -> Self {
        match addr {
            core::net::IpAddr::V4(v4) => Self::from_v4_be(v4.octets()),
            core::net::IpAddr::V6(v6) => Self::from_v6_be(v6.octets()),
        }
    }

    /// From the address as two words loaded straight from the packet (so their
    /// bytes are already in network order, whatever the host's).
    #[inline(always)]
    pub fn from_v6_words(words: [u64; 2]) -> Self {
        bytemuck::cast(words)
    }

    /// The address as two words loaded from memory (the inverse of
    /// [`VipAddr::from_v6_words`]).
    #[inline(always)]
    pub fn words(&self) -> [u64; 2] {
        bytemuck::cast(self.addr_be)
    }

    /// Whether the address is in `::ffff:0:0/96`, the form an IPv4 VIP takes
    /// as a key. No IPv6 range holds such addresses (the config refuses them),
    /// so an IPv6 packet to one is to no VIP.
    #[inline(always)]
    pub fn is_v4_mapped(&self) -> bool {
        let words: [u32; 4] = bytemuck::cast(self.addr_be);
        words[0] == 0 && words[1] == 0 && words[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
    }
}

/// `DecapConfig::flags`: IPv4 or IPv6 in IPv4 (IP protocol 4 or 41).
pub const DECAP_IPIP: u32 = 1;
/// `DecapConfig::flags`: IPv6 or IPv4 in IPv6 (next header 41 or 4).
pub const DECAP_IP6IP6: u32 = 2;
/// `DecapConfig::flags`: GUE (variant 0 with protocol 4 or 41, or variant 1,
/// direct IP) on UDP port `gue_port_be`.
pub const DECAP_GUE: u32 = 4;

/// Value of `MAP_DECAP`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DecapConfig {
    /// `DECAP_*` bits.
    pub flags: u32,
    pub gue_port_be: [u8; 2],
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<DecapConfig>() == 8);
const _: () = assert!(size_of::<RangeValue>() == 24);
const _: () = assert!(size_of::<VipAddr>() == 16);

/// Slots per CPU of a CPU table that needs `slots` slots of `slot_size` bytes
/// each (a power of two no larger than `CPU_TABLE_ALIGN`).
pub const fn cpu_table_stride(slots: u32, slot_size: u32) -> u32 {
    let per_page = CPU_TABLE_ALIGN / slot_size;
    let slots = if slots == 0 { 1 } else { slots };
    slots.div_ceil(per_page) * per_page
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::RangeValue {}
    unsafe impl aya::Pod for super::VipAddr {}
    unsafe impl aya::Pod for super::DecapConfig {}
    unsafe impl aya::Pod for super::V4Slash24 {}
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    #[test]
    fn every_pinned_map_has_the_prefix() {
        for name in PINNED_MAPS {
            assert!(name.starts_with(MAP_NAME_PREFIX), "{name}");
        }
    }

    #[test]
    fn only_ipv4_mapped_addresses_are_v4_mapped() {
        let v6 = |s: &str| VipAddr::from_ip(s.parse().unwrap());
        assert!(v6("192.0.2.1").is_v4_mapped());
        assert!(v6("::ffff:198.51.100.7").is_v4_mapped());
        assert!(v6("::ffff:0:0").is_v4_mapped());
        assert!(!v6("::fffe:c000:201").is_v4_mapped());
        assert!(!v6("::c000:201").is_v4_mapped());
        assert!(!v6("1::ffff:c000:201").is_v4_mapped());
        assert!(!v6("0:0:1::ffff:c000:201").is_v4_mapped());
        assert!(!v6("2001:db8::ffff:c000:201").is_v4_mapped());
    }

    #[test]
    fn cpu_table_strides_fill_whole_pages() {
        assert_eq!(cpu_table_stride(0, 32), 128);
        assert_eq!(cpu_table_stride(1, 32), 128);
        assert_eq!(cpu_table_stride(128, 32), 128);
        assert_eq!(cpu_table_stride(129, 32), 256);
        assert_eq!(cpu_table_stride(65_536, 64), 65_536);
        assert_eq!(cpu_table_stride(65_537, 64), 65_600);
    }

    #[test]
    fn an_upgrade_creates_the_maps_of_every_later_layout() {
        let since = |version| maps_added_since(version).collect::<Vec<_>>();
        assert_eq!(
            since(5),
            [
                MAP_INFO,
                MAP_SPARSE_CONTROL,
                MAP_PRESSURE,
                MAP_DECLARED,
                crate::MAP_PORTS,
                MAP_V4_SLASH24,
                MAP_RANGES_VERSION,
                MAP_SPARSE_HOT,
                MAP_SPARSE_COLD,
                MAP_SPARSE_TAG,
                crate::MAP_V6_BLOCKS,
                MAP_DENSE_COUNTS,
                MAP_RANGE_COUNTS,
            ]
        );
        assert_eq!(since(9), since(10), "layout 10 added no map");
        assert_eq!(
            since(11),
            [
                MAP_SPARSE_HOT,
                MAP_SPARSE_COLD,
                MAP_SPARSE_TAG,
                crate::MAP_V6_BLOCKS,
                MAP_DENSE_COUNTS,
                MAP_RANGE_COUNTS,
            ]
        );
        assert_eq!(
            since(12),
            [crate::MAP_V6_BLOCKS, MAP_DENSE_COUNTS, MAP_RANGE_COUNTS]
        );
        assert_eq!(since(13), [MAP_DENSE_COUNTS, MAP_RANGE_COUNTS]);
        assert_eq!(since(14), [MAP_RANGE_COUNTS]);
        assert!(since(LAYOUT_VERSION).is_empty());
        for (_, maps) in MAPS_ADDED {
            assert!(maps.iter().all(|map| PINNED_MAPS.contains(map)));
        }
    }
}
