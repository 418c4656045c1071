//! What the node-core tests over a real store share: a core's parts for
//! the first validator of the development consortium, and the time.

use std::sync::Arc;

use aidledger_audit::synth::SynthChain;
use aidledger_mempool::MempoolConfig;
use aidledger_node_core::{ConsensusSettings, CoreParts, Mutants, NoTelemetry, Now, StoreState};
use aidledger_storage::Store;

/// Monotonic `ms`, and a wall clock that far past a fixed origin.
pub fn now(ms: u64) -> Now {
    Now {
        wall_ms: 1_700_000_000_000 + ms,
        mono_ms: ms,
    }
}

/// The parts of a core for the first validator of `c`'s consortium over
/// `c`'s store and tip, with its peers from the node registry. Tests
/// override what they are about with struct-update syntax.
pub fn parts(c: &SynthChain) -> CoreParts {
    let store: Arc<dyn Store> = c.store.clone();
    let key = c.validator_keys.values().next().unwrap().clone();
    let members = aidledger_execution::read_nodes(&StoreState(store.as_ref()))
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .filter(|k| *k != key.public())
        .collect();
    CoreParts {
        chain_id: c.genesis.chain_id.clone(),
        consensus: ConsensusSettings {
            max_block_txs: 1_000,
            max_block_bytes: 4 << 20,
            block_interval_ms: 200,
            empty_block_interval_ms: 1_000,
            round_timeout_ms: 2_000,
            max_clock_drift_ms: 5_000,
            sync_batch: 16,
            pipeline: false,
        },
        mempool: MempoolConfig::default(),
        gossip_max_bytes: 1 << 20,
        sync_response_max_bytes: 8 << 20,
        key,
        next_key: None,
        store,
        members,
        parent: c.parent.clone(),
        acc: c.acc.clone(),
        accept_missing_safety_state: true,
        ran_before: false,
        restored: false,
        telemetry: Box::new(NoTelemetry),
        mutants: Mutants::default(),
        module_ceiling: Vec::new(),
    }
}
