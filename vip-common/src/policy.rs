//! Allow lists as the datapath reads them: one [`RangePolicy`] per range id.

use bytemuck::{Pod, Zeroable};

/// Entries of one range's allow list, ICMP aside.
pub const MAX_ALLOW_ENTRIES: usize = 32;

/// `RangePolicy::flags`: the range has an allow list; what it does not allow is dropped.
pub const POLICY_ENFORCED: u32 = 1;
/// `RangeValue::policy_id` of a range without an allow list: the datapath
/// accepts its packets without reading `MAP_POLICY` (a lookup and a dependent
/// load less on every packet to it). A datapath that does not know this value
/// finds no entry for it, which means the same.
pub const POLICY_NONE: u32 = u32::MAX;
/// `RangePolicy::flags`: ICMP echo and errors are allowed.
pub const POLICY_ICMP: u32 = 2;
/// `RangePolicy::flags`: the list allows some TCP port, so later fragments of
/// TCP are let through (they carry no port to check). Layout 8 on.
pub const POLICY_TCP: u32 = 4;
/// `RangePolicy::flags`: as `POLICY_TCP`, for UDP.
pub const POLICY_UDP: u32 = 8;

/// Array of [`PortBitmap`], two per policy id (`RangeValue::policy_id`): the TCP
/// ports it allows at [`port_bitmap_index`]`(id, false)`, UDP at `(id, true)`.
/// The datapath judges a TCP or UDP packet with one lookup and one bit test,
/// whatever the length of the list (layout 8 on).
pub const MAP_PORTS: &str = "VIP_PORTS";

/// Words of a [`PortBitmap`]: one bit per port.
pub const PORT_BITMAP_WORDS: usize = 65_536 / 64;

/// The ports of one protocol an allow list lets through: port `p` is bit
/// `p % 64` of `words[p / 64]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct PortBitmap {
    pub words: [u64; PORT_BITMAP_WORDS],
}

impl PortBitmap {
    #[inline(always)]
    pub fn allows(&self, port_host: u16) -> bool {
        let word = self.words[usize::from(port_host >> 6)];
        (word >> (port_host & 63)) & 1 != 0
    }

    /// Lets port `port_host` through.
    #[inline(always)]
    pub fn allow(&mut self, port_host: u16) {
        self.words[usize::from(port_host >> 6)] |= 1 << (port_host & 63);
    }
}

/// Where policy `policy_id`'s bitmap for TCP (`udp` false) or UDP is in `MAP_PORTS`.
#[inline(always)]
pub const fn port_bitmap_index(policy_id: u32, udp: bool) -> u32 {
    policy_id.wrapping_mul(2).wrapping_add(udp as u32)
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv4 in IP.
pub const IPPROTO_IPIP: u8 = 4;
/// IPv6 in IP.
pub const IPPROTO_IPV6: u8 = 41;

/// One `proto/first-last` entry; ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AllowEntry {
    pub proto: u8,
    pub _pad: u8,
    pub port_first_host: u16,
    pub port_last_host: u16,
    pub _pad2: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct RangePolicy {
    /// `POLICY_*` bits.
    pub flags: u32,
    /// Used entries, from the start of `entries`.
    pub entry_count: u32,
    pub entries: [AllowEntry; MAX_ALLOW_ENTRIES],
}

const _: () = assert!(size_of::<AllowEntry>() == 8);
const _: () = assert!(size_of::<RangePolicy>() == 8 + 8 * MAX_ALLOW_ENTRIES);
const _: () = assert!(size_of::<PortBitmap>() == 8192);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::AllowEntry {}
    unsafe impl aya::Pod for super::RangePolicy {}
    unsafe impl aya::Pod for super::PortBitmap {}
}
