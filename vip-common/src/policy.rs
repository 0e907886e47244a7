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

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::AllowEntry {}
    unsafe impl aya::Pod for super::RangePolicy {}
}
