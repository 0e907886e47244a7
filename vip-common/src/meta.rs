//! Metadata that userspace pins beside the counters, so that `vip stats` can run in
//! another process without the config file. The datapath never reads it.

use bytemuck::{Pod, Zeroable};

pub const RANGE_NAME_MAX: usize = 63;
pub const IFNAME_MAX: usize = 15;

/// `RangeMeta::family`.
pub const FAMILY_V4: u32 = 4;
pub const FAMILY_V6: u32 = 6;

/// `AttachMeta::mode`.
pub const ATTACH_XDP_NATIVE: u32 = 1;
pub const ATTACH_XDP_GENERIC: u32 = 2;
pub const ATTACH_TC: u32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct RangeMeta {
    /// NUL-padded UTF-8.
    pub name: [u8; RANGE_NAME_MAX + 1],
    /// Network address; IPv4 uses the first 4 bytes.
    pub network_be: [u8; 16],
    pub prefix_len: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u32,
    /// Where this range's dense per-VIP slots start, for the reader.
    pub dense_base: u32,
    /// Number of dense slots (the range's size) or 0 for sparse ranges.
    pub dense_len: u32,
    /// The range's `RangeValue::epoch`.
    pub epoch: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct AttachMeta {
    /// NUL-padded interface name.
    pub ifname: [u8; IFNAME_MAX + 1],
    pub ifindex: u32,
    /// `ATTACH_XDP_NATIVE`, `ATTACH_XDP_GENERIC` or `ATTACH_TC`.
    pub mode: u32,
    /// Non-zero when `mode` is a fallback from the requested one.
    pub fallback: u32,
    pub _pad: u32,
}

/// Bytes of a build id: NUL-padded ASCII, such as `git describe` prints it.
pub const BUILD_ID_LEN: usize = 48;

/// ELF section of the datapath object that holds its build id
/// (`BUILD_ID_LEN` bytes), read by the loader: which build's programs these are.
pub const BUILD_SECTION: &str = "vip_build";

/// The one entry of `MAP_INFO`: which build's programs the datapath runs,
/// written when they are attached or replaced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct DatapathInfo {
    /// The running programs' object's build id (see `BUILD_SECTION`).
    pub build: [u8; BUILD_ID_LEN],
    /// In-place upgrades this datapath has had since it was first attached.
    pub upgrades: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<RangeMeta>() == 104);
const _: () = assert!(size_of::<AttachMeta>() == 32);
const _: () = assert!(size_of::<DatapathInfo>() == 56);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::RangeMeta {}
    unsafe impl aya::Pod for super::AttachMeta {}
    unsafe impl aya::Pod for super::DatapathInfo {}
}
