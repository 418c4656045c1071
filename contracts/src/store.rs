//! The state interface the modules see, and a copy-on-write overlay.
//!
//! Modules never talk to a database. They read through [`StoreRead`] and
//! write into an [`Overlay`], whose writes the caller either keeps or drops.
//! Execution stacks one overlay per transaction on one per block, which is
//! how a rejected transaction is never partly applied.

use std::collections::BTreeMap;

use crate::ContractError;

/// Key/value pairs in key order, as a scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Ordered key/value reads.
pub trait StoreRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError>;
    /// Up to `limit` pairs whose keys start with `prefix`, in key order,
    /// strictly after `start_after` when it is given.
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ContractError>;
}

/// A plain ordered map is a store; tests and genesis use it.
impl StoreRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ContractError> {
        Ok(range_after(self, prefix, start_after)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Entries of `map` under `prefix`, strictly after `start_after`.
fn range_after<'m, V>(
    map: &'m BTreeMap<Vec<u8>, V>,
    prefix: &'m [u8],
    start_after: Option<&[u8]>,
) -> impl Iterator<Item = (&'m Vec<u8>, &'m V)> + 'm {
    use std::ops::Bound;
    let lower = match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    };
    map.range((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// Pending writes over a read-only base. `None` marks a deletion.
pub struct Overlay<'a> {
    base: &'a dyn StoreRead,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StoreRead) -> Self {
        Overlay {
            base,
            writes: BTreeMap::new(),
        }
    }
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }
    /// Folds a child overlay's writes into this one.
    pub fn absorb(&mut self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        self.writes.extend(writes);
    }
    pub fn writes(&self) -> &BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        &self.writes
    }
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.writes
    }
}

impl StoreRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ContractError> {
        scan_over(&self.writes, prefix, start_after, limit, &mut |p, a, l| {
            self.base.scan(p, a, l)
        })
    }
}

/// A base state's scan, for [`scan_over`]: prefix, start, limit.
pub type BaseScan<'a, E> = dyn FnMut(&[u8], Option<&[u8]>, usize) -> Result<Entries, E> + 'a;

/// A scan of the state that `writes` (`None` deletes) leave over a base
/// whose own scan is `base`: up to `limit` pairs under `prefix`, in key
/// order, strictly after `start_after`. The base is read a page at a time;
/// when a page is full, only keys up to its last are known to be complete,
/// so the writes beyond it wait for the next page.
pub fn scan_over<E>(
    writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    limit: usize,
    base: &mut BaseScan<'_, E>,
) -> Result<Entries, E> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut cursor: Option<Vec<u8>> = start_after.map(<[u8]>::to_vec);
    loop {
        let page = base(prefix, cursor.as_deref(), limit)?;
        let upper: Option<Vec<u8>> = if page.len() == limit {
            page.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            page.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (k, v) in range_after(writes, prefix, cursor.as_deref()) {
            if upper.as_ref().is_some_and(|u| k > u) {
                break;
            }
            merged.insert(k.clone(), v.clone());
        }
        for (k, v) in merged {
            if let Some(v) = v {
                out.push((k, v));
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        match upper {
            Some(u) => cursor = Some(u),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_scan_merges_deletes_and_inserts_in_order() {
        let mut base = BTreeMap::new();
        for i in 0u8..10 {
            base.insert(vec![b'p', i], vec![i]);
        }
        base.insert(b"q".to_vec(), vec![0]);
        let mut o = Overlay::new(&base);
        o.delete(vec![b'p', 1]);
        o.delete(vec![b'p', 2]);
        o.put(vec![b'p', 3, 0], vec![99]);
        o.put(vec![b'p', 20], vec![20]);
        let all = o.scan(b"p", None, 100).unwrap();
        let keys: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
        let mut expect: Vec<Vec<u8>> = vec![vec![b'p', 0]];
        for i in 3u8..10 {
            expect.push(vec![b'p', i]);
            if i == 3 {
                expect.push(vec![b'p', 3, 0]);
            }
        }
        expect.push(vec![b'p', 20]);
        assert_eq!(keys, expect);
        // Small pages see the same sequence.
        let mut paged = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        loop {
            let page = o.scan(b"p", cur.as_deref(), 2).unwrap();
            if page.is_empty() {
                break;
            }
            cur = page.last().map(|(k, _)| k.clone());
            paged.extend(page.into_iter().map(|(k, _)| k));
        }
        assert_eq!(paged, expect);
    }
}
