//! Reading state, from a store or from the replay's own memory.

use aidledger_execution::{ExecError, StateRead};
use aidledger_storage::{KeyValues, StateView, StorageError, Store, SCAN_LIMIT_MAX};

/// A store's failure as execution reports it.
fn exec_error(e: StorageError) -> ExecError {
    ExecError::Storage {
        reason: e.to_string(),
    }
}

/// Execution's read interface over a store's committed state.
pub struct StoreState<'a>(pub &'a dyn Store);

impl StateRead for StoreState<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        self.0.state_get(key).map_err(exec_error)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
        self.0
            .state_scan(prefix, start_after, limit)
            .map_err(exec_error)
    }
}

/// Execution's read interface over a store's [`Store::state_view`]: for
/// executing a block, many reads in a row while nothing commits. On
/// RocksDB its scans reuse one iterator instead of building one each.
pub struct StoreView<'a>(Box<dyn StateView + 'a>);

impl<'a> StoreView<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        StoreView(store.state_view())
    }
}

impl StateRead for StoreView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        self.0.get(key).map_err(exec_error)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
        self.0.scan(prefix, start_after, limit).map_err(exec_error)
    }
}

/// Execution's read interface over a point-in-time view of a RocksDB
/// store: every read sees the same moment.
pub struct ViewState<'a>(pub &'a aidledger_storage::PointInTime<'a>);

impl StateRead for ViewState<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        self.0.state_get(key).map_err(exec_error)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
        self.0
            .state_scan(prefix, start_after, limit)
            .map_err(exec_error)
    }
}

/// Every pair under `prefix`, in key order, page by page.
pub fn scan_all(state: &dyn StateRead, prefix: &[u8]) -> Result<KeyValues, ExecError> {
    let mut out: KeyValues = Vec::new();
    loop {
        let after = out.last().map(|(k, _)| k.clone());
        let page = state.scan(prefix, after.as_deref(), SCAN_LIMIT_MAX)?;
        // Stop on an empty page, not a short one: an implementation may
        // clamp the limit lower than asked.
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// Calls `f` on every pair under `prefix`, in key order, one page in
/// memory at a time.
pub(crate) fn for_each(
    state: &dyn StateRead,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), ExecError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = state.scan(prefix, after.as_deref(), SCAN_LIMIT_MAX)?;
        for (k, v) in &page {
            if !f(k, v) {
                return Ok(());
            }
        }
        match page.into_iter().last() {
            Some((k, _)) => after = Some(k),
            None => return Ok(()),
        }
    }
}
