//! The one classifier: packet -> verdict and counters, generic over the program type.

use vip_common::{GLOBAL_INTERNAL_ERRORS, GLOBAL_MALFORMED, GLOBAL_NON_VIP};

use crate::{
    count,
    cursor::PacketBuf,
    decap::{self, Strip},
    lookup,
    parse::{self, Destination, Malformed, L3},
    policy::{self, Judgement},
};

/// What to do with the packet; each entry point maps it to its own return code.
pub enum Verdict {
    Pass,
    Drop,
    /// Pass the inner packet of a tunnel (only where `decap_ifindex` is `Some`).
    Decap(Strip),
}

/// Why classification stopped early. Each failure is counted in its own global
/// counter by the entry point, which then chooses the failure verdict.
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
    let l3 = parse::network(buf)?;
    if let Some(verdict) = to_range(buf, &l3, bytes)? {
        return Ok(verdict);
    }
    // Not for a VIP: a tunnel to one, on an interface that decapsulates? Its
    // inner packet is judged and counted as if it had come in bare.
    if let Some(tunnel) = decap::tunnel(buf, &l3)? {
        let inner_bytes = bytes - tunnel.strip.outer_len as u64;
        if let Some(verdict) = to_range(buf, &tunnel.inner, inner_bytes)? {
            return Ok(match verdict {
                Verdict::Pass => {
                    count::global(tunnel.counter);
                    Verdict::Decap(tunnel.strip)
                }
                other => other,
            });
        }
    }
    Ok(non_vip())
}

/// The verdict for a packet to `l3`'s destination, counted, if that is a VIP.
#[inline(always)]
fn to_range<B: PacketBuf>(buf: &B, l3: &L3, bytes: u64) -> Result<Option<Verdict>, Failure> {
    match l3.dst {
        Destination::V4 { addr_be } => {
            let Some(range) = lookup::range_v4(addr_be) else {
                return Ok(None);
            };
            let (verdict, counted) = outcome(policy::judge(buf, range.policy_id, l3.next));
            if let Some(drop) = counted {
                count::v4_hit(range, addr_be, bytes, drop)?;
            }
            Ok(Some(verdict))
        }
        Destination::V6 { vip } => {
            // IPv6 ranges are all sparse: a VIP this CPU has seen finds its range
            // in its slot, without the trie.
            let found = count::sparse_find(&vip);
            let range = match count::found_range(found) {
                Some(range) => range,
                None => match lookup::range_v6(&vip) {
                    Some(range) => range,
                    None => return Ok(None),
                },
            };
            let (verdict, counted) = outcome(policy::judge(buf, range.policy_id, l3.next));
            if let Some(drop) = counted {
                count::sparse_hit(range, &vip, found, bytes, drop)?;
            }
            Ok(Some(verdict))
        }
        Destination::NotIp => Ok(None),
    }
}

#[inline(always)]
fn non_vip() -> Verdict {
    count::global(GLOBAL_NON_VIP);
    Verdict::Pass
}

/// The verdict for a judgement, and which side of the VIP's counters it goes to
/// (`Some(true)`: dropped), or `None` when it was counted as malformed instead.
#[inline(always)]
fn outcome(judgement: Judgement) -> (Verdict, Option<bool>) {
    match judgement {
        Judgement::Accept => (Verdict::Pass, Some(false)),
        Judgement::Drop => (Verdict::Drop, Some(true)),
        Judgement::Malformed { drop } => {
            count::global(GLOBAL_MALFORMED);
            (if drop { Verdict::Drop } else { Verdict::Pass }, None)
        }
    }
}
