//! From a validated config to what the datapath maps hold: range ids, per-VIP
//! modes and dense slot bases. Pure, so the fixture tests and the daemon agree.

use ipnet::IpNet;
use vip_common::{
    RangeMeta, RangePolicy, RangeValue, FAMILY_V4, FAMILY_V6, PER_VIP_DENSE, PER_VIP_SPARSE,
};

use crate::config::{dense_len, range_policy, Config};

mod v4_index;

pub use v4_index::V4Index;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSlot {
    pub name: String,
    pub cidr: IpNet,
    pub value: RangeValue,
    /// Dense per-VIP slots of this range, 0 when sparse.
    pub dense_len: u32,
    pub policy: RangePolicy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Indexed by range id.
    pub ranges: Vec<RangeSlot>,
    /// Size of the dense per-VIP array (at least 1: the kernel has no empty arrays).
    pub dense_slots: u32,
    pub sparse_vip_capacity: u32,
    pub v4_index: V4Index,
}

impl Layout {
    pub fn new(config: &Config) -> Layout {
        let mut next_dense = 0u32;
        let ranges = config
            .ranges
            .iter()
            .enumerate()
            .map(|(id, range)| {
                let dense_len = dense_len(&range.cidr);
                let value = match range.cidr {
                    IpNet::V4(net) if dense_len > 0 => RangeValue {
                        range_id: id as u32,
                        per_vip_mode: PER_VIP_DENSE,
                        dense_base: next_dense,
                        network_v4_host: u32::from(net.network()),
                    },
                    _ => RangeValue {
                        range_id: id as u32,
                        per_vip_mode: PER_VIP_SPARSE,
                        dense_base: 0,
                        network_v4_host: 0,
                    },
                };
                next_dense += dense_len;
                RangeSlot {
                    name: range.name.clone(),
                    cidr: range.cidr,
                    value,
                    dense_len,
                    policy: range_policy(range.allow.as_ref()),
                }
            })
            .collect::<Vec<RangeSlot>>();
        let v4_index = V4Index::build(ranges.iter().filter_map(|slot| match slot.cidr {
            IpNet::V4(net) => Some((slot.value.range_id, net)),
            IpNet::V6(_) => None,
        }));
        Layout {
            v4_index,
            ranges,
            dense_slots: next_dense.max(1),
            sparse_vip_capacity: config.sparse_vip_capacity,
        }
    }

    pub fn v4_count(&self) -> u32 {
        self.ranges
            .iter()
            .filter(|r| r.cidr.addr().is_ipv4())
            .count() as u32
    }

    pub fn v6_count(&self) -> u32 {
        self.ranges.len() as u32 - self.v4_count()
    }
}

impl RangeSlot {
    pub fn meta(&self) -> RangeMeta {
        let mut meta: RangeMeta = bytemuck::Zeroable::zeroed();
        meta.name[..self.name.len()].copy_from_slice(self.name.as_bytes());
        match self.cidr {
            IpNet::V4(net) => {
                meta.network_be[..4].copy_from_slice(&net.network().octets());
                meta.family = FAMILY_V4;
            }
            IpNet::V6(net) => {
                meta.network_be = net.network().octets();
                meta.family = FAMILY_V6;
            }
        }
        meta.prefix_len = u32::from(self.cidr.prefix_len());
        meta.per_vip_mode = self.value.per_vip_mode;
        meta.dense_base = self.value.dense_base;
        meta.dense_len = self.dense_len;
        meta
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn dense_bases_are_consecutive_and_sparse_ranges_take_none() {
        let config = Config::parse(
            r#"
            interfaces = ["lo"]
            [[range]]
            name = "a"
            cidr = "192.0.2.0/24"
            [[range]]
            name = "v6"
            cidr = "2001:db8::/64"
            [[range]]
            name = "b"
            cidr = "198.51.100.0/28"
            "#,
            Path::new("test"),
        )
        .unwrap();
        let layout = Layout::new(&config);
        assert_eq!(layout.dense_slots, 256 + 16);
        assert_eq!(
            layout.ranges[0].value,
            RangeValue {
                range_id: 0,
                per_vip_mode: PER_VIP_DENSE,
                dense_base: 0,
                network_v4_host: 0xc000_0200,
            }
        );
        assert_eq!(layout.ranges[1].value.per_vip_mode, PER_VIP_SPARSE);
        assert_eq!(layout.ranges[1].dense_len, 0);
        assert_eq!(layout.ranges[2].value.dense_base, 256);
        assert_eq!(layout.ranges[2].value.network_v4_host, 0xc633_6400);
        assert_eq!((layout.v4_count(), layout.v6_count()), (2, 1));
        let meta = layout.ranges[2].meta();
        assert_eq!(&meta.name[..2], b"b\0");
        assert_eq!(&meta.network_be[..4], &[198, 51, 100, 0]);
        assert_eq!(
            (meta.prefix_len, meta.family, meta.dense_len),
            (28, FAMILY_V4, 16)
        );
    }
}
