//! The one classifier: packet -> verdict and counters, generic over the program type.

use vip_common::{GLOBAL_INTERNAL_ERRORS, GLOBAL_MALFORMED, GLOBAL_NON_VIP};

use crate::{
    count,
    cursor::PacketBuf,
    lookup,
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
    let bytes = buf.len();
    match parse::destination(buf)? {
        Destination::V4 { addr_be } => match lookup::range_v4(addr_be) {
            Some(range) => count::v4_hit(range, addr_be, bytes)?,
            None => count::global(GLOBAL_NON_VIP),
        },
        Destination::V6 { vip } => {
            // IPv6 ranges are all sparse: a VIP seen before skips the LPM lookup.
            if !count::sparse_known(&vip, bytes) {
                match lookup::range_v6(&vip) {
                    Some(range) => count::sparse_first(range, &vip, bytes)?,
                    None => count::global(GLOBAL_NON_VIP),
                }
            }
        }
        Destination::NotIp => count::global(GLOBAL_NON_VIP),
    }
    Ok(Verdict::Pass)
}
