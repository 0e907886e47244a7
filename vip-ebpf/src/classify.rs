//! The one classifier: packet -> verdict and counters, generic over the program type.

use vip_common::{
    GLOBAL_INTERNAL_ERRORS, GLOBAL_MALFORMED, GLOBAL_NON_VIP, V6_RANGE_DECLARED_COMPLETE,
};

use crate::{
    count,
    cursor::PacketBuf,
    decap::{self, Tunnels},
    lookup,
    parse::{self, Destination, Malformed, Next, L3},
    policy::{self, Judgement},
};

/// What to do with the packet; each entry point maps it to its own return code.
pub enum Verdict {
    Pass,
    Drop,
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

impl From<decap::StripFailed> for Failure {
    #[inline(always)]
    fn from(_: decap::StripFailed) -> Self {
        Failure::Internal
    }
}

impl From<count::MapInconsistent> for Failure {
    #[inline(always)]
    fn from(_: count::MapInconsistent) -> Self {
        Failure::Internal
    }
}

#[inline(always)]
pub fn classify<B: Tunnels>(buf: &B) -> Result<Verdict, Failure> {
    let Some(l3) = parse::network(buf)? else {
        return Ok(non_vip());
    };
    if let Some(verdict) = to_range(buf, &l3, 0)? {
        return Ok(verdict);
    }
    if !B::DECAPSULATES {
        return Ok(non_vip());
    }
    // Not for a VIP: a tunnel to one, where this program decapsulates?
    tunnelled(buf, l3.next)
}

/// A packet to no VIP that may be a tunnel to one: its inner packet is judged
/// and counted as if it had come in bare (its own length), then stripped.
/// Inlined like everything else: under the SRSO "Safe RET" mitigation every
/// return costs a mispredicted branch, about 9 ns, so the program makes no
/// BPF-to-BPF calls (`llvm-objdump -t` on the object shows no function in
/// `.text` but the mem* builtins).
#[inline(always)]
fn tunnelled<B: Tunnels>(buf: &B, next: Next) -> Result<Verdict, Failure> {
    let Some((inner, strip)) = decap::tunnel(buf, next)? else {
        return Ok(non_vip());
    };
    let Some(verdict) = to_range(buf, &inner, strip.outer_len as u64)? else {
        return Ok(non_vip());
    };
    if let Verdict::Pass = verdict {
        buf.strip(strip)?;
        count::bump(strip.counter);
    }
    Ok(verdict)
}

/// The verdict for a packet to `l3`'s destination, counted, if that is a VIP.
/// `outer_len`: the length of the tunnel headers before `l3`, which its bytes
/// do not count (0 for a bare packet).
#[inline(always)]
fn to_range<B: PacketBuf>(buf: &B, l3: &L3, outer_len: u64) -> Result<Option<Verdict>, Failure> {
    match l3.dst {
        Destination::V4 { addr_be } => {
            let Some(target) = lookup::v4(addr_be) else {
                return Ok(None);
            };
            let (verdict, counted) = outcome(policy::judge(buf, target.policy_id, l3.next));
            if let Some(drop) = counted {
                count::v4_hit(&target, addr_be, buf.len().saturating_sub(outer_len), drop)?;
            }
            Ok(Some(verdict))
        }
        Destination::V6 { vip } => {
            // Else it would find the slot of the IPv4 VIP it maps.
            if vip.is_v4_mapped() {
                return Ok(None);
            }
            let bytes = buf.len().saturating_sub(outer_len);
            if let Some(target) = lookup::v6_dense(&vip) {
                return dense_verdict(buf, &target, l3.next, bytes).map(Some);
            }
            // In a sparse range, a VIP this CPU has seen finds its range in its
            // slot, without the trie, and a slot that vouches for its VIP holds
            // all a packet needs.
            let found = count::sparse_find(&vip, true)?;
            if let Some(policy_id) = count::vouched_policy(found) {
                let (verdict, counted) = outcome(policy::judge(buf, policy_id, l3.next));
                if let Some(drop) = counted {
                    count::hot_hit(found, bytes, drop)?;
                }
                return Ok(Some(verdict));
            }
            // A declared VIP never has a slot that vouches (its packets count
            // in its dense slot), so it is looked for only here.
            let absent = match lookup::v6_declared(&vip) {
                lookup::Declared::Found(target) => {
                    return dense_verdict(buf, &target, l3.next, bytes).map(Some);
                }
                lookup::Declared::Absent => FOUND_UNDECLARED,
                lookup::Declared::Stale => 0,
            };
            // One state for the verifier whichever it was, as below.
            let absent = parse::unpinned(absent, vip.addr_be[15], FOUND_MASK);
            let (range, how) = match count::found_range(found)? {
                Some(range) => (range, FOUND_HELD),
                None => match lookup::v6_range(&vip) {
                    Some(indexed) => (indexed.range, undeclared(indexed.flags) & absent),
                    None => {
                        let Some(range) = lookup::range_v6(&vip) else {
                            return Ok(None);
                        };
                        // As `VIP_RANGES` holds it, like the other two ways.
                        let range = lookup::range_by_id(range.range_id).ok_or(Failure::Internal)?;
                        (range, 0)
                    }
                },
            };
            // The three ways to the range meet here as one state for the
            // verifier, which would otherwise check the judging and counting
            // below once per way (vip_xdp 53k -> 91k verified instructions).
            let how = parse::unpinned(how, range.epoch as u8, FOUND_MASK);
            let (held, undeclared) = (how & FOUND_HELD != 0, how & FOUND_UNDECLARED != 0);
            let (verdict, counted) = outcome(policy::judge(buf, range.policy_id, l3.next));
            if let Some(drop) = counted {
                count::sparse_hit(range, &vip, found, held, undeclared, bytes, drop)?;
            }
            Ok(Some(verdict))
        }
    }
}

/// How the sparse IPv6 path found a packet's range: through the VIP's own slot
/// (`count::sparse_hit`'s `held`); through the range's entry by its /64,
/// which showed the VIP is not declared (`undeclared`).
const FOUND_HELD: usize = 1;
const FOUND_UNDECLARED: usize = 2;
const FOUND_MASK: usize = FOUND_HELD | FOUND_UNDECLARED;

/// `FOUND_UNDECLARED` if a range entry's `flags` say its declared VIPs all
/// have entries (so an address without one is not declared), else 0: as
/// arithmetic, since a branch would give the verifier two ways again.
#[inline(always)]
fn undeclared(flags: u16) -> usize {
    const _: () = assert!(V6_RANGE_DECLARED_COMPLETE == 1 && FOUND_UNDECLARED == 2);
    usize::from(flags & V6_RANGE_DECLARED_COMPLETE) << 1
}

/// The verdict for a packet of `bytes` to a VIP with a dense slot, counted.
#[inline(always)]
fn dense_verdict<B: PacketBuf>(
    buf: &B,
    target: &lookup::DenseTarget,
    next: Next,
    bytes: u64,
) -> Result<Verdict, Failure> {
    let (verdict, counted) = outcome(policy::judge(buf, target.policy_id, next));
    if let Some(drop) = counted {
        count::dense_hit(target.dense_slot, bytes, drop)?;
    }
    Ok(verdict)
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
        Judgement::Malformed => {
            count::global(GLOBAL_MALFORMED);
            (Verdict::Drop, None)
        }
    }
}
