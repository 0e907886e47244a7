//! A reference model of one CPU's sparse VIP table, for the differential test:
//! where a packet to a sparse VIP counts, which slot it takes, and what reclaim
//! moves into the range's pressure counters. Written from the rules documented
//! in `vip_common::sparse` and README's "Sparse accounting", sharing no code with
//! vip-ebpf but the hash and the idle rule, which are the contract.

use std::collections::HashMap;

use vip_common::{
    sparse_idle, RangePressure, RangeValue, SparseControl, SparseSlot, Verdicts, VipAddr,
    PER_VIP_SPARSE, POLICY_NONE, SPARSE_PROBES,
};

/// Where a packet counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// In the VIP's row, at this slot.
    Row(usize),
    /// In the range's overflow: every probed slot holds a VIP seen lately.
    Overflow,
}

pub struct SparseModel {
    pub slots: Vec<SparseSlot>,
    /// The datapath's hash and key (its generation is the model's own).
    control: SparseControl,
    generation: u32,
    /// The datapath's `MAP_RANGES_VERSION`, fixed for the model's life.
    ranges_version: u32,
    /// By range id.
    pub pressure: HashMap<u32, RangePressure>,
    pub overflow: HashMap<u32, Verdicts>,
}

impl SparseModel {
    /// An empty table of `slots` slots (a power of two) under `control`'s
    /// hash and key and the ranges' version `ranges_version`; every range
    /// stays configured for the model's life.
    pub fn new(slots: usize, control: SparseControl, ranges_version: u32) -> SparseModel {
        assert!(slots.is_power_of_two());
        SparseModel {
            slots: vec![SparseSlot::default(); slots],
            control,
            generation: 0,
            ranges_version,
            pressure: HashMap::new(),
            overflow: HashMap::new(),
        }
    }

    /// One sweep of the daemon.
    pub fn sweep(&mut self) {
        self.generation = self.generation.wrapping_add(1);
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
            let slot = &self.slots[index];
            if slot.epoch == 0 {
                target = Some(idle.unwrap_or(index));
                break;
            }
            if slot.vip == vip {
                target = Some(index);
                break;
            }
            if idle.is_none() && sparse_idle(self.generation, slot.seen_generation) {
                idle = Some(index);
            }
        }
        let Some(index) = target.or(idle) else {
            side(self.overflow.entry(range_id).or_default(), drop).add(bytes);
            return Counted::Overflow;
        };
        let slot = &mut self.slots[index];
        if !(slot.vip == vip && slot.range_id == range_id && slot.epoch == epoch) {
            if slot.epoch != 0 {
                let owner = self.pressure.entry(slot.range_id).or_default();
                owner.reclaimed.merge(&slot.verdicts);
                owner.slots_reclaimed += 1;
            }
            *slot = SparseSlot {
                vip,
                range_id,
                epoch,
                ..SparseSlot::default()
            };
            self.pressure.entry(range_id).or_default().slots_learned += 1;
        }
        slot.seen_generation = self.generation;
        side(&mut slot.verdicts, drop).add(bytes);
        // A range that only counts marks the slot with the ranges' version.
        slot.fast_version =
            if range.per_vip_mode == PER_VIP_SPARSE && range.policy_id == POLICY_NONE {
                self.ranges_version
            } else {
                0
            };
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
            policy_id: POLICY_NONE,
            ..RangeValue::default()
        };
        let mut model = SparseModel::new(64, control, 5);
        for (i, v) in colliding[..8].iter().enumerate() {
            assert_eq!(model.count(*v, &range, 100, false), Counted::Row(i));
        }
        assert_eq!(model.slots[0].fast_version, 5);
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
