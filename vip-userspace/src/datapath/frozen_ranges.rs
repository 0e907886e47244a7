//! The per-range counter maps of layouts 14 and older (`MAP_RANGE_STATS`,
//! `MAP_PRESSURE`, `MAP_DELIVERED`, per-CPU arrays): frozen with the counts
//! their programs left on a datapath upgraded from one, one entry long and
//! never written on a new one. Layout 15 counts in `MAP_RANGE_COUNTS`.

use aya::maps::Map;
use vip_common::{
    RangeCounts, RangePressure, RangeStats, MAP_DELIVERED, MAP_PRESSURE, MAP_RANGE_STATS,
};

use super::batch::{self, BatchError, Rows};

/// Their sums over every CPU, by range id, for the ranges configured when
/// they were read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrozenRanges {
    /// By range id: the epoch of the range that had the id at the read, and
    /// its sums (epoch 0: no range had it).
    by_id: Vec<(u32, RangeCounts)>,
}

impl FrozenRanges {
    /// Reads the three maps whole (`map` gives each by name); `live` is the
    /// (id, epoch) of each configured range.
    pub fn read<'a>(
        map: impl Fn(&'static str) -> &'a Map,
        live: &[(u32, u32)],
    ) -> Result<FrozenRanges, BatchError> {
        let stats: Rows<RangeStats> = batch::per_cpu_array(map(MAP_RANGE_STATS), MAP_RANGE_STATS)?;
        let pressure: Rows<RangePressure> = batch::per_cpu_array(map(MAP_PRESSURE), MAP_PRESSURE)?;
        let delivered: Rows<u64> = batch::per_cpu_array(map(MAP_DELIVERED), MAP_DELIVERED)?;
        let mut frozen = FrozenRanges::default();
        for &(id, epoch) in live {
            let mut counts = RangeCounts::default();
            for row in stats.get(id).unwrap_or_default() {
                counts.stats.merge(row);
            }
            for row in pressure.get(id).unwrap_or_default() {
                counts.pressure.merge(row);
            }
            counts.delivered = delivered.get(id).unwrap_or_default().iter().sum();
            frozen.set(id, epoch, counts);
        }
        Ok(frozen)
    }

    fn set(&mut self, id: u32, epoch: u32, counts: RangeCounts) {
        let id = id as usize;
        if self.by_id.len() <= id {
            self.by_id.resize(id + 1, (0, RangeCounts::default()));
        }
        self.by_id[id] = (epoch, counts);
    }

    /// What the maps held for range `id` of epoch `epoch` when they were
    /// read. Nothing writes them after an upgrade but a sync, which zeroes
    /// the entries of an id it gives to a new range (a new epoch): so an id
    /// that another range had at the read holds nothing now.
    pub fn counts(&self, id: u32, epoch: u32) -> RangeCounts {
        match self.by_id.get(id as usize) {
            Some(&(held_by, counts)) if held_by == epoch => counts,
            _ => RangeCounts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(delivered: u64) -> RangeCounts {
        RangeCounts {
            delivered,
            ..RangeCounts::default()
        }
    }

    #[test]
    fn an_id_given_to_another_range_since_the_read_holds_nothing() {
        let mut frozen = FrozenRanges::default();
        frozen.set(0, 7, counts(5));
        frozen.set(3, 9, counts(11));
        assert_eq!(frozen.counts(0, 7), counts(5));
        assert_eq!(frozen.counts(3, 9), counts(11));
        assert_eq!(frozen.counts(0, 12), RangeCounts::default(), "id 0 reused");
        assert_eq!(frozen.counts(1, 7), RangeCounts::default(), "no range then");
        assert_eq!(frozen.counts(2, 0), RangeCounts::default());
        assert_eq!(frozen.counts(40, 1), RangeCounts::default(), "beyond");
    }
}
