//! How a live entry of the direct indexes (`MAP_V4_SLASH24`, `MAP_V6_BLOCKS`)
//! changes while packets read it: the values to write, in order, so that a
//! lookup that reads an entry while one of them is written finds the old
//! entry's answer, the new one's, or "ask elsewhere" (the trie, which a reload
//! fills with the new ranges before the indexes and empties of the old ones
//! after), never a mix of two ranges' fields.
//!
//! A map update copies the whole value while the datapath may read it, so a
//! lookup can see any mix of the old and the new value's fields. What this
//! assumes of the copy: an aligned 4-byte field is never torn. The datapath
//! reads each field with one load; that the kernel's memcpy of a value writes
//! each aligned 4-byte field whole is assumed (true of moves of 4 bytes or
//! more, not promised by the architecture for `rep movsb`). Each step below
//! changes either only fields the reader ignores in the state both values
//! agree on, or only the fields that select the state.

use vip_common::{
    V4Slash24, V6Block, V4_SLOT_LPM, V4_SLOT_NONE, V6_BLOCK_DECLARED, V6_BLOCK_DIRECT,
    V6_BLOCK_LPM, V6_BLOCK_RANGE, V6_BLOCK_REMOVED,
};

/// The values to write, in order, to change a `MAP_V4_SLASH24` entry from
/// `old` to `new` (empty when they are equal).
///
/// A change of one field (a kept range's new allow list, "ask the trie"
/// gained or lost) is written at once. Any other change parks the entry's
/// range slot and mode first, on "no range" if either side has none and on
/// "ask the trie" otherwise; then writes the new policy and first slot, which
/// no lookup of a parked entry reads; then the new range slot and mode.
pub fn slash24_writes(old: V4Slash24, new: V4Slash24) -> Vec<V4Slash24> {
    let fields_changed = [
        old.range_slot != new.range_slot,
        old.direct != new.direct,
        old.policy_id != new.policy_id,
        old.dense_first != new.dense_first,
    ]
    .into_iter()
    .filter(|&changed| changed)
    .count();
    if fields_changed <= 1 {
        return steps(old, [new]);
    }
    let parked_slot = if old.range_slot == V4_SLOT_NONE || new.range_slot == V4_SLOT_NONE {
        V4_SLOT_NONE
    } else {
        V4_SLOT_LPM
    };
    let park = |fields: V4Slash24| V4Slash24 {
        range_slot: parked_slot,
        direct: 0,
        ..fields
    };
    steps(old, [park(old), park(new), new])
}

/// The values to write, in order, to change a `MAP_V6_BLOCKS` entry from
/// `before` to `value` (empty when they are equal).
///
/// An entry that takes a block (from empty or removed) is written first with
/// its new contents under its old state, which no lookup takes for a block,
/// then with its new state. A live entry (one block, or "ask the trie") that
/// changes goes through "ask the trie" for its old block, then takes the new
/// contents under that state (a lookup that matches a half-written prefix asks
/// the trie), then its new state. A declared VIP's entry (layout 16) is
/// written like a block's, and one that changes is first marked removed,
/// its contents kept, then written as an entry no lookup takes; so is a
/// sparse range's entry (layout 17).
pub fn block_writes(before: V6Block, value: V6Block) -> Vec<V6Block> {
    let validated = |block: &V6Block| matches!(block.state, V6_BLOCK_DECLARED | V6_BLOCK_RANGE);
    if validated(&before) && value != before {
        let retired = V6Block {
            state: V6_BLOCK_REMOVED,
            ..before
        };
        let mut writes = vec![retired];
        writes.extend(block_writes(retired, value));
        return writes;
    }
    let live = |block: &V6Block| matches!(block.state, V6_BLOCK_DIRECT | V6_BLOCK_LPM);
    if !live(&before) {
        if !live(&value) && !validated(&value) {
            return steps(before, [value]);
        }
        return steps(
            before,
            [
                V6Block {
                    state: before.state,
                    ..value
                },
                value,
            ],
        );
    }
    let trie = |contents: V6Block| V6Block {
        state: V6_BLOCK_LPM,
        ..contents
    };
    steps(before, [trie(before), trie(value), value])
}

/// `writes` without those that would write what the entry already holds.
fn steps<T: PartialEq + Copy, const N: usize>(start: T, writes: [T; N]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(N);
    let mut current = start;
    for write in writes {
        if write != current {
            out.push(write);
            current = write;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use vip_common::{
        V4_DIRECT_DENSE, V6_BLOCK_EMPTY, V6_BLOCK_REMOVED, V6_RANGE_DECLARED_COMPLETE,
    };

    use super::*;

    /// What vip-ebpf's `lookup::v4` makes of a /24 entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum V4Answer {
        /// A dense range's policy and first slot, from the entry itself.
        Dense {
            policy_id: u32,
            dense_first: u32,
        },
        /// The range `MAP_RANGES` holds at this slot.
        Range(u32),
        Trie,
        NoRange,
    }

    fn v4_answer(entry: V4Slash24) -> V4Answer {
        if entry.direct == V4_DIRECT_DENSE {
            return V4Answer::Dense {
                policy_id: entry.policy_id,
                dense_first: entry.dense_first,
            };
        }
        match entry.range_slot {
            V4_SLOT_NONE => V4Answer::NoRange,
            V4_SLOT_LPM => V4Answer::Trie,
            slot => V4Answer::Range(slot),
        }
    }

    /// Every value a lookup may read while `to` overwrites `from`: each field
    /// from one or the other.
    fn v4_mixes(from: V4Slash24, to: V4Slash24) -> Vec<V4Slash24> {
        let pick = |bit: u32, mask: u32, a: u32, b: u32| if mask & bit == 0 { a } else { b };
        (0..16)
            .map(|mask| V4Slash24 {
                range_slot: pick(1, mask, from.range_slot, to.range_slot),
                direct: pick(2, mask, from.direct, to.direct),
                policy_id: pick(4, mask, from.policy_id, to.policy_id),
                dense_first: pick(8, mask, from.dense_first, to.dense_first),
            })
            .collect()
    }

    /// Whether an answer read during the change is one the datapath may
    /// give: the old entry's, the new one's, or the trie's. A dense answer
    /// and a range slot name the same range (its range, read in full, gives
    /// the same policy and slot), so either is right for a range that either
    /// entry names.
    fn v4_coherent(answer: V4Answer, old: V4Slash24, new: V4Slash24) -> bool {
        let names = |entry: V4Slash24| {
            let mut answers = vec![v4_answer(entry)];
            if entry.direct == V4_DIRECT_DENSE {
                answers.push(V4Answer::Range(entry.range_slot));
            }
            answers
        };
        answer == V4Answer::Trie || names(old).contains(&answer) || names(new).contains(&answer)
    }

    fn assert_v4_change_is_never_torn(old: V4Slash24, new: V4Slash24) {
        let writes = slash24_writes(old, new);
        assert_eq!(
            writes.last().copied().unwrap_or(old),
            new,
            "{old:?} -> {new:?}"
        );
        let mut current = old;
        for write in writes {
            for seen in v4_mixes(current, write) {
                let answer = v4_answer(seen);
                assert!(
                    v4_coherent(answer, old, new),
                    "{old:?} -> {new:?}: writing {write:?} over {current:?}, a lookup can read \
                     {seen:?}: {answer:?}"
                );
            }
            current = write;
        }
    }

    fn dense(range_slot: u32, policy_id: u32, dense_first: u32) -> V4Slash24 {
        V4Slash24 {
            range_slot,
            direct: V4_DIRECT_DENSE,
            policy_id,
            dense_first,
        }
    }

    fn by_range(range_slot: u32) -> V4Slash24 {
        V4Slash24 {
            range_slot,
            ..V4Slash24::default()
        }
    }

    #[test]
    fn a_slash24_that_changes_range_is_never_read_half_written() {
        let entries = [
            V4Slash24::default(),
            by_range(V4_SLOT_LPM),
            by_range(3),
            by_range(8),
            dense(3, 1, 512),
            dense(3, 2, 512),
            dense(8, 1, 768),
            dense(8, 4, 1024),
        ];
        for old in entries {
            for new in entries {
                assert_v4_change_is_never_torn(old, new);
            }
        }
    }

    #[test]
    fn one_field_changes_in_one_write_and_others_through_a_parked_entry() {
        let parked = |range_slot, policy_id, dense_first| V4Slash24 {
            range_slot,
            direct: 0,
            policy_id,
            dense_first,
        };
        // A kept range's new allow list; nothing to change.
        assert_eq!(
            slash24_writes(dense(3, 1, 512), dense(3, 2, 512)),
            vec![dense(3, 2, 512)]
        );
        assert_eq!(slash24_writes(by_range(3), by_range(3)), vec![]);
        // A /24 gained or lost: its policy and slot are written where no
        // lookup reads them, then it is found; lost, the other way round.
        assert_eq!(
            slash24_writes(V4Slash24::default(), dense(3, 1, 512)),
            vec![parked(V4_SLOT_NONE, 1, 512), dense(3, 1, 512)]
        );
        assert_eq!(
            slash24_writes(dense(3, 1, 512), V4Slash24::default()),
            vec![parked(V4_SLOT_NONE, 1, 512), V4Slash24::default()]
        );
        // Another range: through "ask the trie".
        assert_eq!(
            slash24_writes(dense(3, 1, 512), dense(8, 4, 1024)),
            vec![
                parked(V4_SLOT_LPM, 1, 512),
                parked(V4_SLOT_LPM, 4, 1024),
                dense(8, 4, 1024),
            ]
        );
    }

    /// The one write the reload made before these sequences, which a lookup
    /// could read as the old range's policy with the new range's slot.
    #[test]
    fn the_model_catches_a_range_change_written_at_once() {
        let (old, new) = (dense(3, 1, 512), dense(8, 4, 1024));
        let torn = v4_mixes(old, new)
            .into_iter()
            .filter(|seen| !v4_coherent(v4_answer(*seen), old, new))
            .count();
        assert_eq!(torn, 8);
    }

    /// What vip-ebpf's `lookup::v6_dense`, `lookup::v6_declared` and
    /// `lookup::v6_range` make of an entry for a packet to the entry's own
    /// prefix, VIP or range (any other
    /// packet passes the entry by, or stops at an empty one, and asks
    /// elsewhere).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum V6Answer {
        Dense {
            prefix_be: [u8; 16],
            policy_id: u32,
            dense_base: u32,
            first_offset_host: u16,
            span_host: u16,
        },
        Declared {
            vip_be: [u8; 16],
            range_id: u32,
            epoch: u32,
            slot: u32,
        },
        Range {
            network_be: [u8; 16],
            prefix_len: u16,
            range_id: u32,
            epoch: u32,
            flags: u16,
        },
        Elsewhere,
    }

    fn v6_answer(block: V6Block) -> V6Answer {
        match block.state {
            V6_BLOCK_DIRECT => V6Answer::Dense {
                prefix_be: block.prefix_be,
                policy_id: block.policy_id,
                dense_base: block.dense_base,
                first_offset_host: block.first_offset_host,
                span_host: block.span_host,
            },
            V6_BLOCK_DECLARED => V6Answer::Declared {
                vip_be: block.prefix_be,
                range_id: block.declared_range_id(),
                epoch: block.declared_epoch(),
                slot: block.declared_slot(),
            },
            V6_BLOCK_RANGE => V6Answer::Range {
                network_be: block.prefix_be,
                prefix_len: block.first_offset_host,
                range_id: block.range_id(),
                epoch: block.range_epoch(),
                flags: block.range_flags(),
            },
            _ => V6Answer::Elsewhere,
        }
    }

    /// Every value a lookup may read while `to` overwrites `from`, by 4-byte
    /// field (the prefix as four, the offset and span as one).
    fn v6_mixes(from: V6Block, to: V6Block) -> Vec<V6Block> {
        let (a, b): ([u32; 8], [u32; 8]) = (bytemuck::cast(from), bytemuck::cast(to));
        (0..256u32)
            .map(|mask| {
                let mut words = a;
                for (i, word) in words.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        *word = b[i];
                    }
                }
                bytemuck::cast(words)
            })
            .collect()
    }

    fn assert_v6_change_is_never_torn(before: V6Block, value: V6Block) {
        let writes = block_writes(before, value);
        assert_eq!(writes.last().copied().unwrap_or(before), value);
        let mut current = before;
        for write in writes {
            for seen in v6_mixes(current, write) {
                let answer = v6_answer(seen);
                assert!(
                    answer == V6Answer::Elsewhere
                        || answer == v6_answer(before)
                        || answer == v6_answer(value),
                    "{before:?} -> {value:?}: writing {write:?} over {current:?}, a lookup can \
                     read {seen:?}"
                );
            }
            current = write;
        }
    }

    fn block(prefix: &str, state: u32, policy_id: u32, dense_base: u32, span: u16) -> V6Block {
        V6Block {
            prefix_be: prefix.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            state,
            policy_id,
            dense_base,
            first_offset_host: 0,
            span_host: span,
        }
    }

    fn declared(vip: &str, range_id: u32, epoch: u32, slot: u32) -> V6Block {
        let vip = vip.parse::<std::net::Ipv6Addr>().unwrap();
        V6Block::declared(vip.octets(), range_id, epoch, slot)
    }

    fn range(network: &str, prefix_len: u8, range_id: u32, epoch: u32, flags: u16) -> V6Block {
        let network = network.parse::<std::net::Ipv6Addr>().unwrap();
        V6Block::range(network.octets(), prefix_len, range_id, epoch, flags)
    }

    /// A declared VIP's entry and a sparse range's (layout 17) alike.
    #[test]
    fn an_entry_that_validates_its_epoch_is_retired_first_when_it_changes() {
        let pairs = [
            (
                declared("2001:db8::10", 3, 5, 100),
                declared("2001:db8::10", 4, 0x0001_0006, 200),
            ),
            (
                range("2001:db8::", 64, 3, 5, 0),
                range("2001:db8::", 64, 3, 5, V6_RANGE_DECLARED_COMPLETE),
            ),
        ];
        let retired = |block: V6Block| V6Block {
            state: V6_BLOCK_REMOVED,
            ..block
        };
        let removed = V6Block {
            state: V6_BLOCK_REMOVED,
            ..V6Block::default()
        };
        for (old, new) in pairs {
            assert_eq!(
                block_writes(old, new),
                vec![retired(old), retired(new), new]
            );
            let taken = V6Block {
                state: V6_BLOCK_EMPTY,
                ..new
            };
            assert_eq!(block_writes(V6Block::default(), new), vec![taken, new]);
            assert_eq!(block_writes(old, removed), vec![retired(old), removed]);
            assert_eq!(block_writes(new, new), vec![]);
        }
    }

    #[test]
    fn a_block_entry_that_changes_is_never_read_half_written() {
        let entries = [
            V6Block::default(),
            V6Block {
                state: V6_BLOCK_REMOVED,
                ..V6Block::default()
            },
            block("2001:db8::", V6_BLOCK_DIRECT, 1, 0, 0xffff),
            block("2001:db8::", V6_BLOCK_DIRECT, 2, 65_536, 0xff),
            block("2001:db8::", V6_BLOCK_LPM, 0, 0, 0),
            block("2001:db8:1::", V6_BLOCK_DIRECT, 1, 131_072, 0xffff),
            block("2001:db8:1::", V6_BLOCK_LPM, 0, 0, 0),
            declared("2001:db8::10", 3, 5, 100),
            declared("2001:db8::10", 4, 0x0001_0006, 200),
            declared("2001:db8::", 4, 0x0001_0006, 201),
            declared("2001:db8:1::20", 3, 5, 101),
            range("2001:db8::", 64, 3, 5, 0),
            range("2001:db8::", 64, 3, 5, V6_RANGE_DECLARED_COMPLETE),
            range("2001:db8::", 80, 4, 0x0001_0006, V6_RANGE_DECLARED_COMPLETE),
            range("2001:db8:1::", 64, 5, 7, 0),
        ];
        for before in entries {
            for value in entries {
                assert_v6_change_is_never_torn(before, value);
            }
        }
        assert_eq!(V6Block::default().state, V6_BLOCK_EMPTY);
    }

    /// A block's range replaced by another in place, written at once (as
    /// before these sequences): a lookup could take the old range's slot
    /// with the new one's span.
    #[test]
    fn the_model_catches_a_block_rewritten_at_once() {
        let before = block("2001:db8::", V6_BLOCK_DIRECT, 1, 0, 0xffff);
        let value = block("2001:db8::", V6_BLOCK_DIRECT, 2, 65_536, 0xff);
        assert!(v6_mixes(before, value).into_iter().any(|seen| {
            let answer = v6_answer(seen);
            answer != v6_answer(before) && answer != v6_answer(value)
        }));
        assert_eq!(block_writes(before, value).len(), 3);
    }
}
