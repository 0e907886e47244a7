//! A reference model of one CPU's sparse VIP table, for the differential test:
//! where a packet to a sparse VIP counts, which slot it takes, and what reclaim
//! moves into the range's pressure counters. Written from the rules documented
//! in `vip_common::sparse` and README's "Sparse accounting", sharing no code with
//! vip-ebpf but the hash and the idle rule, which are the contract.

use std::collections::HashMap;

use vip_common::{
    sparse_tag_idle, sparse_tag_swept, RangePressure, RangeValue, SparseControl, SparseHot,
    Verdicts, VipAddr, PER_VIP_SPARSE, PER_VIP_SPARSE_DECLARED, SPARSE_HOT_POLICY_NONE,
    SPARSE_PROBES, SPARSE_TAG_VOUCHES,
};
use vip_userspace::datapath::cpu_table::SparseRow;

/// Where a packet counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// In the VIP's row, at this slot.
    Row(usize),
    /// In the range's overflow: every probed slot holds a VIP seen lately.
    Overflow,
}

pub struct SparseModel {
    /// `None`: a free slot.
    pub slots: Vec<Option<SparseRow>>,
    /// The datapath's hash and key.
    control: SparseControl,
    /// The tag word, moved on by the model's own sweeps.
    word: u32,
    /// By range id.
    pub pressure: HashMap<u32, RangePressure>,
    pub overflow: HashMap<u32, Verdicts>,
}

impl SparseModel {
    /// An empty table of `slots` slots (a power of two) under `control`'s
    /// hash and key and the tag word `word`; every range stays configured for
    /// the model's life.
    pub fn new(slots: usize, control: SparseControl, word: u32) -> SparseModel {
        assert!(slots.is_power_of_two());
        SparseModel {
            slots: vec![None; slots],
            control,
            word,
            pressure: HashMap::new(),
            overflow: HashMap::new(),
        }
    }

    /// One sweep of the daemon.
    pub fn sweep(&mut self) {
        self.word = sparse_tag_swept(self.word);
    }

    /// Counts one packet of `bytes` to `vip` of `range`.
    pub fn count(&mut self, vip: VipAddr, range: &RangeValue, bytes: u64, drop: bool) -> Counted {
        let (range_id, epoch) = (range.range_id, range.epoch);
        let mask = self.slots.len() - 1;
        let start = self.control.slot_hash(&vip) as usize;
        // The VIP's own slot, else the first free one after the first idle
        // one, else the first idle one.
        let mut idle = None;
        let mut target = None;
        for probe in 0..SPARSE_PROBES as usize {
            let index = (start + probe) & mask;
            let Some(slot) = &self.slots[index] else {
                target = Some(idle.unwrap_or(index));
                break;
            };
            if slot.vip == vip {
                target = Some(index);
                break;
            }
            if idle.is_none() && sparse_tag_idle(self.word, slot.tag) {
                idle = Some(index);
            }
        }
        let Some(index) = target.or(idle) else {
            side(self.overflow.entry(range_id).or_default(), drop).add(bytes);
            return Counted::Overflow;
        };
        let held = self.slots[index]
            .is_some_and(|s| s.vip == vip && s.range_id == range_id && s.epoch == epoch);
        if !held {
            if let Some(slot) = self.slots[index] {
                let owner = self.pressure.entry(slot.range_id).or_default();
                owner.reclaimed.merge(&slot.verdicts);
                owner.slots_reclaimed += 1;
            }
            self.slots[index] = Some(SparseRow {
                vip,
                range_id,
                epoch,
                ..SparseRow::default()
            });
            self.pressure.entry(range_id).or_default().slots_learned += 1;
        }
        let slot = self.slots[index].as_mut().unwrap();
        // A range that counts in the table (its declared VIPs aside, which
        // never come here), and whose list id fits the slot, vouches through
        // its IPv6 VIPs' slots; IPv4 VIPs never vouch.
        let policy = SparseHot::policy_of(range.policy_id);
        let vouches = matches!(range.per_vip_mode, PER_VIP_SPARSE | PER_VIP_SPARSE_DECLARED)
            && policy.is_some()
            && !vip.is_v4_mapped();
        slot.tag = if vouches {
            self.word | SPARSE_TAG_VOUCHES
        } else {
            self.word
        };
        slot.policy_id = policy.unwrap_or(SPARSE_HOT_POLICY_NONE);
        side(&mut slot.verdicts, drop).add(bytes);
        Counted::Row(index)
    }

    /// A packet to an address its range does not learn.
    pub fn unlearned(&mut self, range_id: u32, bytes: u64, drop: bool) {
        side(
            &mut self.pressure.entry(range_id).or_default().unlearned,
            drop,
        )
        .add(bytes);
    }
}

fn side(verdicts: &mut Verdicts, drop: bool) -> &mut vip_common::Counter {
    if drop {
        &mut verdicts.dropped
    } else {
        &mut verdicts.accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(host: u16) -> VipAddr {
        let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        addr[14..].copy_from_slice(&host.to_be_bytes());
        VipAddr::from_v6_be(addr)
    }

    /// The model's own rules, on a table where every VIP collides.
    #[test]
    fn the_model_reclaims_only_after_three_idle_sweeps() {
        let control = SparseControl {
            hash_key: 7,
            hash_kind: vip_common::SPARSE_HASH_MULTIPLY,
            ..SparseControl::default()
        };
        let colliding: Vec<VipAddr> = (0..u16::MAX)
            .map(vip)
            .filter(|v| control.slot_hash(v) as usize & 63 == 0)
            .take(SPARSE_PROBES as usize + 1)
            .collect();
        let range = RangeValue {
            range_id: 1,
            per_vip_mode: PER_VIP_SPARSE,
            epoch: 1,
            policy_id: vip_common::POLICY_NONE,
            ..RangeValue::default()
        };
        let mut model = SparseModel::new(64, control, vip_common::SPARSE_TAG_FIRST);
        for (i, v) in colliding[..8].iter().enumerate() {
            assert_eq!(model.count(*v, &range, 100, false), Counted::Row(i));
        }
        assert_eq!(
            model.slots[0].unwrap().tag,
            vip_common::SPARSE_TAG_FIRST | SPARSE_TAG_VOUCHES
        );
        let late = colliding[8];
        assert_eq!(model.count(late, &range, 100, false), Counted::Overflow);
        for _ in 0..2 {
            model.sweep();
            assert_eq!(model.count(late, &range, 100, false), Counted::Overflow);
        }
        // Slot 1 stays busy; slot 0 is idle after the third sweep.
        model.count(colliding[1], &range, 100, false);
        model.sweep();
        assert_eq!(model.count(late, &range, 100, false), Counted::Row(0));
        let pressure = model.pressure[&1];
        assert_eq!(pressure.slots_reclaimed, 1);
        assert_eq!(pressure.reclaimed.accepted.packets, 1);
        assert_eq!(pressure.slots_learned, 9);
        assert_eq!(model.overflow[&1].accepted.packets, 3);
    }
}
