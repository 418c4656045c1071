//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// propose (build and execute our own block), validate (check and
    /// execute a peer's block), persist (the atomic commit write), round
    /// (from entering a height to committing it).
    pub phase: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub view: Gauge,
    pub view_changes: Counter,
    pub committed_txs: Counter,
    pub committed_blocks: Counter,
    pub rejected_txs: Counter,
    pub mempool_txs: Gauge,
    pub mempool_bytes: Gauge,
    pub peers: Gauge,
    pub admitted_txs: Counter,
    pub refused_txs: Counter,
    pub synced_blocks: Counter,
    pub phase_seconds: Family<PhaseLabel, Histogram>,
    pub block_txs: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aidledger");
        let m = Metrics {
            height: Gauge::default(),
            view: Gauge::default(),
            view_changes: Counter::default(),
            committed_txs: Counter::default(),
            committed_blocks: Counter::default(),
            rejected_txs: Counter::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            peers: Gauge::default(),
            admitted_txs: Counter::default(),
            refused_txs: Counter::default(),
            synced_blocks: Counter::default(),
            phase_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            block_txs: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register("height", "Last committed block height", m.height.clone());
        registry.register("view", "Current consensus view", m.view.clone());
        registry.register("view_changes", "View changes seen", m.view_changes.clone());
        registry.register(
            "committed_txs",
            "Transactions in committed blocks",
            m.committed_txs.clone(),
        );
        registry.register(
            "committed_blocks",
            "Committed blocks",
            m.committed_blocks.clone(),
        );
        registry.register(
            "rejected_txs",
            "Committed transactions whose receipt is a rejection",
            m.rejected_txs.clone(),
        );
        registry.register(
            "mempool_txs",
            "Transactions in the mempool",
            m.mempool_txs.clone(),
        );
        registry.register(
            "mempool_bytes",
            "Bytes in the mempool",
            m.mempool_bytes.clone(),
        );
        registry.register("peers", "Connected consortium peers", m.peers.clone());
        registry.register(
            "admitted_txs",
            "Transactions admitted to the mempool",
            m.admitted_txs.clone(),
        );
        registry.register(
            "refused_txs",
            "Transactions refused at admission",
            m.refused_txs.clone(),
        );
        registry.register(
            "synced_blocks",
            "Blocks committed through catch-up",
            m.synced_blocks.clone(),
        );
        registry.register(
            "phase_seconds",
            "Latency of each phase of a block's life",
            m.phase_seconds.clone(),
        );
        registry.register(
            "block_txs",
            "Transactions per committed block",
            m.block_txs.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn observe_phase(&self, phase: &'static str, seconds: f64) {
        self.phase_seconds
            .get_or_create(&PhaseLabel { phase })
            .observe(seconds);
    }
}
