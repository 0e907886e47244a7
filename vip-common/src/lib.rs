//! Types shared by the kernel and userspace sides of vip.
//!
//! Every type that crosses the boundary is `#[repr(C)]`, has explicit padding,
//! derives `bytemuck::Pod` (which refuses implicit padding at compile time) and
//! carries a size assert. Byte order is spelled out in field names: `_be` is
//! network order, `_host` is host order.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod counters;
pub mod maps;
pub mod meta;
pub mod policy;
pub mod sparse;
pub mod steer;
pub mod v6_blocks;

pub use counters::*;
pub use maps::*;
pub use meta::*;
pub use policy::*;
pub use sparse::*;
pub use steer::*;
pub use v6_blocks::*;
