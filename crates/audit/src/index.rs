//! The transaction index checked as a whole (ADR 008, amendment "the
//! index as one set"): one walk over the store's index in id order against
//! a set hash of what the chain says it must hold, instead of one random
//! read per transaction.
//!
//! Both sides are sets of `(id, height, index)`, hashed with the
//! homomorphic set hash of the state commitment (LtHash16, ADR 003): the
//! sum is order-free, so the walk splits the id space between threads and
//! the chain side adds each block as it is checked, and finding two
//! different sets with the same sum is as hard as for the state root. It
//! is deterministic: the replay's verdict does not depend on a draw.

use aidledger_storage::{IndexEntry, StorageError, Store};
use aidledger_types::{Hash, StateAccumulator};

/// The set hash of a set of index entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SetSum(StateAccumulator);

impl SetSum {
    pub(crate) fn add(&mut self, id: &Hash, height: u64, index: u32) {
        let mut at = [0u8; 12];
        at[..8].copy_from_slice(&height.to_be_bytes());
        at[8..].copy_from_slice(&index.to_be_bytes());
        self.0.insert(&id.0, &at);
    }

    fn merge(&mut self, other: &SetSum) {
        self.0.add(&other.0);
    }
}

/// What one walk over the whole index found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Walked {
    /// The set hash of every entry.
    pub sum: SetSum,
    pub entries: u64,
    /// Entries of the form before ADR 025, which hold their receipt.
    pub receipts_inline: u64,
}

impl Walked {
    fn merge(&mut self, other: &Walked) {
        self.sum.merge(&other.sum);
        self.entries += other.entries;
        self.receipts_inline += other.receipts_inline;
    }
}

/// The first id of part `i` of `parts` equal parts of the id space (by
/// its first two bytes); `None` past the last.
fn part_start(i: usize, parts: usize) -> Option<Hash> {
    if i >= parts {
        return None;
    }
    let first = (i * 0x1_0000 / parts) as u16;
    let mut id = [0u8; 32];
    id[..2].copy_from_slice(&first.to_be_bytes());
    Some(Hash(id))
}

/// Walks the whole index of `store` on `threads` threads, each over its
/// own part of the id space. `None` when the store has no walk; the
/// lowest part's error when a part cannot be read.
pub(crate) fn walk_index(
    store: &dyn Store,
    threads: usize,
) -> Option<Result<Walked, StorageError>> {
    let parts = threads.clamp(1, 256);
    let part = |i: usize| -> Option<Result<Walked, StorageError>> {
        let from = part_start(i, parts)?;
        let to = part_start(i + 1, parts);
        let mut w = Walked::default();
        let r = store.index_walk(&from, to.as_ref(), &mut |e: &IndexEntry| {
            w.entries += 1;
            if e.receipt_inline {
                w.receipts_inline += 1;
            }
            w.sum.add(&e.id, e.location.height, e.location.index);
            true
        })?;
        Some(r.map(|()| w))
    };
    let verdicts: Vec<Option<Result<Walked, StorageError>>> = std::thread::scope(|s| {
        let others: Vec<_> = (1..parts).map(|i| s.spawn(move || part(i))).collect();
        let mut all = vec![part(0)];
        for t in others {
            all.push(t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    let mut total = Walked::default();
    for v in verdicts {
        match v? {
            Ok(w) => total.merge(&w),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_cover_the_id_space_once_in_order() {
        for parts in [1, 2, 3, 7, 256] {
            let starts: Vec<Hash> = (0..parts).map_while(|i| part_start(i, parts)).collect();
            assert_eq!(starts.len(), parts);
            assert_eq!(starts[0], Hash([0u8; 32]));
            assert!(starts.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(part_start(parts, parts), None);
        }
    }

    #[test]
    fn a_set_hash_depends_on_the_set_not_the_order_and_sees_every_field() {
        let id = |b: u8| Hash([b; 32]);
        let mut a = SetSum::default();
        a.add(&id(1), 5, 0);
        a.add(&id(2), 5, 1);
        let mut b = SetSum::default();
        b.add(&id(2), 5, 1);
        b.add(&id(1), 5, 0);
        assert_eq!(a, b);
        let mut parts = SetSum::default();
        let mut other = SetSum::default();
        parts.add(&id(1), 5, 0);
        other.add(&id(2), 5, 1);
        parts.merge(&other);
        assert_eq!(a, parts);
        for (i, h, n) in [(3u8, 5u64, 1u32), (2, 6, 1), (2, 5, 2)] {
            let mut c = SetSum::default();
            c.add(&id(1), 5, 0);
            c.add(&id(i), h, n);
            assert_ne!(a, c, "({i}, {h}, {n})");
        }
        let mut twice = SetSum::default();
        twice.add(&id(1), 5, 0);
        twice.add(&id(1), 5, 0);
        assert_ne!(twice, SetSum::default());
    }
}
