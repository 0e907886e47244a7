//! Ranges inside ranges. The most specific range that holds an address judges
//! and counts it (the longest prefix, as for routes): a /32 inside a /24 has
//! its own allow list and its own counters, and the /24 keeps the rest.

use ipnet::IpNet;

use super::{validate::ConfigError, Range};

/// For each range (by index), the index of the smallest other range that
/// holds it, if any. Two ranges with the same CIDR are refused by
/// [`check`] first; here the later one would count as inside the earlier.
pub fn parents(ranges: &[Range]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].cidr.network(), ranges[i].cidr.prefix_len()));
    let mut parents = vec![None; ranges.len()];
    // The ranges holding the current one, outermost first: sorted by network
    // address, shortest prefix first, a range's containers all come before it.
    let mut open: Vec<usize> = Vec::new();
    for i in order {
        while let Some(&top) = open.last() {
            if ranges[top].cidr.contains(&ranges[i].cidr) {
                break;
            }
            open.pop();
        }
        parents[i] = open.last().copied();
        open.push(i);
    }
    parents
}

/// Refuses what nesting cannot mean: two ranges with one CIDR, an IPv6 range
/// inside another that counts sparsely (its VIPs' slots in the sparse table
/// would keep finding the outer range), and a declared VIP that an inner range
/// would count.
pub(super) fn check(ranges: &[Range]) -> Result<(), ConfigError> {
    let parents = parents(ranges);
    for (index, parent) in parents.iter().enumerate() {
        let Some(outer) = *parent else { continue };
        let (inner, outer) = (&ranges[index], &ranges[outer]);
        if inner.cidr == outer.cidr {
            return Err(ConfigError::SameCidr {
                first: outer.name.clone(),
                second: inner.name.clone(),
                cidr: inner.cidr,
            });
        }
        if let IpNet::V6(net) = inner.cidr {
            let dense = net.prefix_len() >= vip_common::DENSE_MIN_PREFIX_V6
                && inner.vips.is_empty()
                && inner.learn;
            if !dense {
                return Err(ConfigError::NestedSparseV6 {
                    range: inner.name.clone(),
                    cidr: inner.cidr,
                    outer: outer.name.clone(),
                    outer_cidr: outer.cidr,
                });
            }
        }
        let mut at = *parent;
        while let Some(a) = at {
            let ancestor = &ranges[a];
            if let Some(vip) = ancestor.vips.iter().find(|vip| inner.cidr.contains(*vip)) {
                return Err(ConfigError::DeclaredInInner {
                    vip: *vip,
                    range: ancestor.name.clone(),
                    inner: inner.name.clone(),
                    inner_cidr: inner.cidr,
                });
            }
            at = parents[a];
        }
    }
    Ok(())
}
