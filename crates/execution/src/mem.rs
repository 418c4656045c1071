//! An in-memory state for tests and the simulator.

use std::collections::BTreeMap;

use aidledger_types::StateAccumulator;

use crate::exec::{StateRead, Writes};
use crate::ExecError;

/// A `BTreeMap` state. Ordered, so scans are deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemState {
    pub fn new(map: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        MemState { map }
    }

    /// Applies a block's writes (`None` deletes).
    pub fn apply(&mut self, writes: &Writes) {
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.map.insert(k.clone(), v.clone());
                }
                None => {
                    self.map.remove(k);
                }
            }
        }
    }

    /// [`MemState::apply`], keeping each written key's old value (`None`
    /// where there was none), in the writes' order: what
    /// [`MemState::undo`] needs to put the state back.
    pub fn apply_undoable(&mut self, writes: &Writes) -> Undo {
        let olds = writes
            .iter()
            .map(|(k, v)| match v {
                Some(v) => self.map.insert(k.clone(), v.clone()),
                None => self.map.remove(k),
            })
            .collect();
        Undo { olds }
    }

    /// Takes back `writes` applied by [`MemState::apply_undoable`], which
    /// gave `undo`: the state is again what it was before them.
    ///
    /// # Panics
    /// When `undo` is not from these writes (it holds another count).
    pub fn undo(&mut self, writes: &Writes, undo: Undo) {
        assert_eq!(
            writes.len(),
            undo.olds.len(),
            "an undo is for the writes that gave it"
        );
        for (k, old) in writes.keys().zip(undo.olds) {
            match old {
                Some(v) => {
                    self.map.insert(k.clone(), v);
                }
                None => {
                    self.map.remove(k);
                }
            }
        }
    }

    pub fn map(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.map
    }

    /// The accumulator recomputed from scratch over every pair; an auditor's
    /// check that the incremental one did not drift.
    pub fn accumulator(&self) -> StateAccumulator {
        let mut a = StateAccumulator::new();
        for (k, v) in &self.map {
            a.insert(k, v);
        }
        a
    }
}

/// What a block's writes replaced in a [`MemState`], to take them back.
#[derive(Debug)]
pub struct Undo {
    olds: Vec<Option<Vec<u8>>>,
}

impl Undo {
    /// Each written key's old value, in the writes' (key) order.
    pub fn olds(&self) -> &[Option<Vec<u8>>] {
        &self.olds
    }
}

impl StateRead for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        Ok(self.map.get(key).cloned())
    }
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
        aidledger_contracts::StoreRead::scan(&self.map, prefix, start_after, limit).map_err(|e| {
            ExecError::Storage {
                reason: e.to_string(),
            }
        })
    }
    /// A map in memory: reading again is cheaper than remembering.
    fn remember_reads(&self) -> bool {
        false
    }
}

/// A state with one block's writes over it that have not committed yet
/// (ADR 022): what a block proposed before its parent committed executes
/// on. `writes` are the parent's (`None` deletes); `base` is the state the
/// parent executed on. The parent's outcome is exact once it commits,
/// because the child's hash covers the parent's, so the child's outcome
/// is too.
pub struct Speculative<'a> {
    base: &'a dyn StateRead,
    writes: &'a Writes,
}

impl<'a> Speculative<'a> {
    pub fn new(base: &'a dyn StateRead, writes: &'a Writes) -> Self {
        Speculative { base, writes }
    }
}

impl StateRead for Speculative<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
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
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
        aidledger_contracts::store::scan_over(
            self.writes,
            prefix,
            start_after,
            limit,
            &mut |p, a, l| self.base.scan(p, a, l),
        )
    }

    fn remember_reads(&self) -> bool {
        self.base.remember_reads()
    }
}
