//! Ranges inside ranges. The most specific range that holds an address judges
//! and counts it (the longest prefix, as for routes): a /32 inside a /24 has
//! its own allow list and its own counters, and the /24 keeps the rest.

use super::Range;

/// For each range (by index), the index of the smallest other range that
/// holds it, if any. Two ranges with the same CIDR are refused by the
/// config's validation; here the later one would count as inside the earlier.
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
