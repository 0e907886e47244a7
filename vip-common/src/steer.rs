//! Socket steering: the sk_lookup program's maps.

use bytemuck::{Pod, Zeroable};

use crate::VipAddr;

/// Hash of [`SteerKey`] -> [`SteerValue`]: which steer entry a lookup for a
/// range's port matches.
pub const MAP_STEER: &str = "VIP_STEER";
/// SOCKMAP indexed by steer entry: the socket the entry steers to, when found.
pub const MAP_STEER_SOCKETS: &str = "VIP_STEER_SOCKETS";
/// Per-CPU array of `u64` indexed by steer entry: lookups steered.
pub const MAP_STEER_STATS: &str = "VIP_STEER_STATS";
/// Per-CPU hash of [`SteeredVip`] -> `u64`: lookups steered, per VIP and entry.
/// Bounded (`STEERED_VIPS`); when full, a new VIP's lookups are still counted by
/// its entry in `MAP_STEER_STATS`.
pub const MAP_STEERED_VIPS: &str = "VIP_STEERED_VIPS";
/// Per-CPU array of `u64` indexed by range id: socket lookups for a VIP of the
/// range, i.e. packets that reached the transport layer (every UDP datagram, the
/// first packet of a TCP connection). Layouts 14 and older count in it; since
/// 15 it is `RangeCounts::delivered` in `crate::MAP_RANGE_COUNTS` (frozen on an
/// upgraded datapath, as `crate::MAP_RANGE_STATS`).
pub const MAP_DELIVERED: &str = "VIP_DELIVERED";

/// Name of the sk_lookup program.
pub const PROG_SK_LOOKUP: &str = "vip_sk_lookup";
/// Name, in the pin directory, of the pinned link of the sk_lookup program.
pub const SK_LOOKUP_LINK_PIN: &str = "steer-sk-lookup-link";

/// Entries of `MAP_STEERED_VIPS`.
pub const STEERED_VIPS: u32 = 65_536;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SteerKey {
    pub range_id: u32,
    pub port_host: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    pub _pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SteerValue {
    /// Index into `MAP_STEER_SOCKETS` and `MAP_STEER_STATS`.
    pub entry: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SteeredVip {
    pub vip: VipAddr,
    pub entry: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<SteerKey>() == 8);
const _: () = assert!(size_of::<SteerValue>() == 4);
const _: () = assert!(size_of::<SteeredVip>() == 24);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::SteerKey {}
    unsafe impl aya::Pod for super::SteerValue {}
    unsafe impl aya::Pod for super::SteeredVip {}
}
