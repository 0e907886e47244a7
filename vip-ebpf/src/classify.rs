//! The one classifier: packet -> verdict and counters, generic over the program type.

use vip_common::{
    VipAddr, GLOBAL_INTERNAL_ERRORS, GLOBAL_MALFORMED, GLOBAL_NON_VIP, GLOBAL_PACKETS,
};

use crate::{
    count,
    cursor::PacketBuf,
    parse::{self, Destination, Malformed},
};

/// What to do with the packet; each entry point maps it to its own return code.
pub enum Verdict {
    Pass,
}

/// Why classification stopped. Each failure is counted in its own global counter
/// by the entry point, which then chooses the failure verdict.
pub enum Failure {
    Malformed,
    Internal,
}

impl Failure {
    pub fn global_counter(&self) -> u32 {
        match self {
            Failure::Malformed => GLOBAL_MALFORMED,
            Failure::Internal => GLOBAL_INTERNAL_ERRORS,
        }
    }
}

impl From<Malformed> for Failure {
    #[inline(always)]
    fn from(_: Malformed) -> Self {
        Failure::Malformed
    }
}

impl From<count::MapInconsistent> for Failure {
    #[inline(always)]
    fn from(_: count::MapInconsistent) -> Self {
        Failure::Internal
    }
}

#[inline(always)]
pub fn classify<B: PacketBuf>(buf: &B) -> Result<Verdict, Failure> {
    count::global(GLOBAL_PACKETS);
    let bytes = buf.len();
    let hit = match parse::destination(buf)? {
        Destination::V4 { addr_be } => count::lookup_v4(addr_be).map(|range| {
            (
                range,
                VipAddr::from_v4_be(addr_be),
                u32::from_be_bytes(addr_be),
            )
        }),
        Destination::V6 { addr_be } => {
            count::lookup_v6(addr_be).map(|range| (range, VipAddr::from_v6_be(addr_be), 0))
        }
        Destination::NotIp => None,
    };
    match hit {
        Some((range, vip, v4_host)) => count::vip_hit(range, vip, v4_host, bytes)?,
        None => count::global(GLOBAL_NON_VIP),
    }
    Ok(Verdict::Pass)
}
