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
    /// libp2p's own metrics (`aidledger_libp2p_*`), recorded by the
    /// network task from its swarm events.
    pub libp2p: std::sync::Arc<aidledger_network::Libp2pMetrics>,
    pub height: Gauge,
    pub next_due_seconds: Gauge,
    pub upgrade_missing_modules: Gauge,
    pub view: Gauge,
    pub view_changes: Counter,
    pub committed_txs: Counter,
    pub committed_blocks: Counter,
    pub rejected_txs: Counter,
    pub mempool_txs: Gauge,
    pub mempool_bytes: Gauge,
    /// The backlog bound (ADR 023): the limit for clients now, the commit
    /// rate it follows, and the clients' transactions it refused.
    pub mempool_backlog_txs: Gauge,
    pub commit_rate: Gauge,
    pub backlog_refused_txs: Counter,
    pub pipelined_proposals: Counter,
    pub peers: Gauge,
    pub admitted_txs: Counter,
    pub refused_txs: Counter,
    pub regossiped_txs: Counter,
    pub resent_txs: Counter,
    pub expired_txs: Counter,
    pub synced_blocks: Counter,
    pub sync_preverified_txs: Counter,
    /// The API server's refusals (node/src/http_server.rs).
    pub api_connections_refused: Counter,
    pub api_requests_shed: Counter,
    pub api_timeouts: Counter,
    pub api_rate_limited: Counter,
    pub api_header_timeouts: Counter,
    pub api_payload_too_large: Counter,
    /// The admission pool (node/src/admission.rs, ADR 016).
    pub admission_busy: Counter,
    pub admission_gossip_dropped: Counter,
    pub admission_queue_txs: Gauge,
    /// Memory (`observe_memory`): the process's resident set and the
    /// store's parts of it by RocksDB's accounting.
    pub resident_bytes: Gauge,
    pub store_memtable_bytes: Gauge,
    pub store_block_cache_bytes: Gauge,
    pub store_table_readers_bytes: Gauge,
    /// The network task's counters, brought up to date on every sync tick
    /// (monotonic: exported as counters, so `rate()` works).
    pub net_gossip_in: Counter,
    /// Consensus messages that reached the driver, before any check: with
    /// `committed_blocks`, the messages per block each node receives
    /// (issue 18's P7).
    pub consensus_messages_in: Counter,
    pub net_gossip_rejected: Counter,
    pub net_tx_gossip_dropped: Counter,
    pub net_publish_failed: Counter,
    pub net_denied_connections: Counter,
    pub net_ping_failures: Counter,
    pub net_limited_connections: Counter,
    pub net_wire_previous_in: Counter,
    pub net_wire_current_in: Counter,
    pub net_wire_refused: Counter,
    pub net_refused_by_peer: Counter,
    pub phase_seconds: Family<PhaseLabel, Histogram>,
    pub block_txs: Histogram,
    pub admission_batch_txs: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aidledger");
        let m = Metrics {
            height: Gauge::default(),
            next_due_seconds: Gauge::default(),
            upgrade_missing_modules: Gauge::default(),
            view: Gauge::default(),
            view_changes: Counter::default(),
            committed_txs: Counter::default(),
            committed_blocks: Counter::default(),
            rejected_txs: Counter::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            mempool_backlog_txs: Gauge::default(),
            commit_rate: Gauge::default(),
            backlog_refused_txs: Counter::default(),
            pipelined_proposals: Counter::default(),
            peers: Gauge::default(),
            admitted_txs: Counter::default(),
            refused_txs: Counter::default(),
            regossiped_txs: Counter::default(),
            resent_txs: Counter::default(),
            expired_txs: Counter::default(),
            synced_blocks: Counter::default(),
            sync_preverified_txs: Counter::default(),
            api_connections_refused: Counter::default(),
            api_requests_shed: Counter::default(),
            api_timeouts: Counter::default(),
            api_rate_limited: Counter::default(),
            api_header_timeouts: Counter::default(),
            api_payload_too_large: Counter::default(),
            admission_busy: Counter::default(),
            admission_gossip_dropped: Counter::default(),
            admission_queue_txs: Gauge::default(),
            resident_bytes: Gauge::default(),
            store_memtable_bytes: Gauge::default(),
            store_block_cache_bytes: Gauge::default(),
            store_table_readers_bytes: Gauge::default(),
            net_gossip_in: Counter::default(),
            consensus_messages_in: Counter::default(),
            net_gossip_rejected: Counter::default(),
            net_tx_gossip_dropped: Counter::default(),
            net_publish_failed: Counter::default(),
            net_denied_connections: Counter::default(),
            net_ping_failures: Counter::default(),
            net_limited_connections: Counter::default(),
            net_wire_previous_in: Counter::default(),
            net_wire_current_in: Counter::default(),
            net_wire_refused: Counter::default(),
            net_refused_by_peer: Counter::default(),
            phase_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            block_txs: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            admission_batch_txs: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            registry: Registry::default(),
            libp2p: std::sync::Arc::new(aidledger_network::Libp2pMetrics::new(&mut registry)),
        };
        let gauges: [(&str, &str, &Gauge); 14] = [
            (
                "resident_bytes",
                "Resident memory of the node process (VmRSS), sampled every few seconds",
                &m.resident_bytes,
            ),
            (
                "store_memtable_bytes",
                "RocksDB memtables, active and immutable, all column families",
                &m.store_memtable_bytes,
            ),
            (
                "store_block_cache_bytes",
                "RocksDB block cache in use, index and filter blocks included",
                &m.store_block_cache_bytes,
            ),
            (
                "store_table_readers_bytes",
                "RocksDB table readers' memory outside the block cache",
                &m.store_table_readers_bytes,
            ),
            (
                "admission_queue_txs",
                "Transactions queued for their signature check in the admission pool",
                &m.admission_queue_txs,
            ),
            ("height", "Last committed block height", &m.height),
            (
                "next_due_seconds",
                "When the next block is due with no transaction (Unix seconds, the state's gov/next-due)",
                &m.next_due_seconds,
            ),
            (
                "upgrade_missing_modules",
                "Module versions of the scheduled contract upgrade that this build does not carry (above 0, the node stops before the upgrade height)",
                &m.upgrade_missing_modules,
            ),
            ("view", "Current consensus view", &m.view),
            ("mempool_txs", "Transactions in the mempool", &m.mempool_txs),
            ("mempool_bytes", "Bytes in the mempool", &m.mempool_bytes),
            (
                "mempool_backlog_txs",
                "Pending transactions up to which the mempool takes clients' transactions: mempool.backlog_ms of the commit rate, at least mempool.backlog_min_txs",
                &m.mempool_backlog_txs,
            ),
            (
                "commit_rate",
                "Transactions committed per second over the last 10 s",
                &m.commit_rate,
            ),
            ("peers", "Connected consortium peers", &m.peers),
        ];
        for (name, help, g) in gauges {
            registry.register(name, help, g.clone());
        }
        let counters: [(&str, &str, &Counter); 33] = [
            (
                "net_gossip_in",
                "Gossip messages received from members",
                &m.net_gossip_in,
            ),
            (
                "consensus_messages_in",
                "Consensus messages received from members, before any check",
                &m.consensus_messages_in,
            ),
            (
                "net_gossip_rejected",
                "Gossip messages that failed validation",
                &m.net_gossip_rejected,
            ),
            (
                "net_tx_gossip_dropped",
                "Transaction gossip dropped because the node was busy",
                &m.net_tx_gossip_dropped,
            ),
            (
                "net_publish_failed",
                "Gossip publishes that failed",
                &m.net_publish_failed,
            ),
            (
                "net_denied_connections",
                "Connections refused: peer not in the consortium",
                &m.net_denied_connections,
            ),
            (
                "net_ping_failures",
                "Peer connections closed because a ping went unanswered",
                &m.net_ping_failures,
            ),
            (
                "net_limited_connections",
                "Peer connections refused, or dials not made, because a network.max_* \
                 connection limit was reached",
                &m.net_limited_connections,
            ),
            (
                "net_wire_previous_in",
                "Gossip and sync messages received in the previous wire version (members still on \
                 the previous release)",
                &m.net_wire_previous_in,
            ),
            (
                "net_wire_current_in",
                "Gossip and sync messages received in the current wire version",
                &m.net_wire_current_in,
            ),
            (
                "net_wire_refused",
                "Members disconnected because they speak no wire version this node speaks",
                &m.net_wire_refused,
            ),
            (
                "net_refused_by_peer",
                "Connections this node dialled that the other side closed before confirming them (its allow-list refuses this node)",
                &m.net_refused_by_peer,
            ),
            (
                "api_header_timeouts",
                "API connections closed because the request head did not arrive within api.header_timeout_ms",
                &m.api_header_timeouts,
            ),
            (
                "api_payload_too_large",
                "API requests answered 413: a body over the route's limit (api.body_max_bytes, or 16 MiB for batches)",
                &m.api_payload_too_large,
            ),
            (
                "admission_busy",
                "Client submissions answered 503 busy: the admission pool's queue or the client's lane was full",
                &m.admission_busy,
            ),
            (
                "admission_gossip_dropped",
                "Transaction gossip dropped: the admission pool's queue or the peer's lane was full",
                &m.admission_gossip_dropped,
            ),
            ("view_changes", "View changes seen", &m.view_changes),
            (
                "committed_txs",
                "Transactions in committed blocks",
                &m.committed_txs,
            ),
            ("committed_blocks", "Committed blocks", &m.committed_blocks),
            (
                "rejected_txs",
                "Committed transactions whose receipt is a rejection",
                &m.rejected_txs,
            ),
            (
                "admitted_txs",
                "Transactions admitted to the mempool",
                &m.admitted_txs,
            ),
            (
                "refused_txs",
                "Transactions refused at admission",
                &m.refused_txs,
            ),
            (
                "regossiped_txs",
                "Long-pending transactions gossiped again",
                &m.regossiped_txs,
            ),
            (
                "backlog_refused_txs",
                "Clients' transactions refused because the mempool held its backlog (also in refused_txs)",
                &m.backlog_refused_txs,
            ),
            (
                "pipelined_proposals",
                "Blocks this node proposed before their parent committed (ADR 022)",
                &m.pipelined_proposals,
            ),
            (
                "resent_txs",
                "Transactions refused at admission because their nonce is already used",
                &m.resent_txs,
            ),
            (
                "expired_txs",
                "Pending transactions dropped after waiting too long behind a nonce gap",
                &m.expired_txs,
            ),
            (
                "synced_blocks",
                "Blocks committed through catch-up",
                &m.synced_blocks,
            ),
            (
                "sync_preverified_txs",
                "Transactions of synced blocks whose signatures were verified ahead, on a second thread",
                &m.sync_preverified_txs,
            ),
            (
                "api_connections_refused",
                "API connections closed on accept: the connection cap was reached",
                &m.api_connections_refused,
            ),
            (
                "api_requests_shed",
                "API requests answered 503 busy: the request limit was reached",
                &m.api_requests_shed,
            ),
            (
                "api_timeouts",
                "API requests cut off by the request timeout",
                &m.api_timeouts,
            ),
            (
                "api_rate_limited",
                "API write requests answered 429: the client's rate limit was reached",
                &m.api_rate_limited,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
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
        registry.register(
            "admission_batch_txs",
            "Transactions per signature batch of the admission pool: a client's chunks taken together, or a peer's gossip taken together",
            m.admission_batch_txs.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Sets the memory gauges from the store's accounting and the
    /// process's resident set (0 where /proc cannot be read).
    pub fn observe_memory(&self, store: &aidledger_storage::StoreMemory, resident: u64) {
        self.resident_bytes.set(resident as i64);
        self.store_memtable_bytes.set(store.memtable_bytes as i64);
        self.store_block_cache_bytes
            .set(store.block_cache_bytes as i64);
        self.store_table_readers_bytes
            .set(store.table_readers_bytes as i64);
    }

    /// Brings the network counters up to the network task's: each rises
    /// by what the task counted since the last call.
    pub fn observe_network(&self, s: &aidledger_network::NetStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let g = |x: &std::sync::atomic::AtomicU64| x.load(Relaxed);
        catch_up(&self.net_gossip_in, g(&s.gossip_in));
        catch_up(&self.net_gossip_rejected, g(&s.gossip_rejected));
        catch_up(&self.net_tx_gossip_dropped, g(&s.tx_gossip_dropped));
        catch_up(&self.net_publish_failed, g(&s.publish_failed));
        catch_up(&self.net_denied_connections, g(&s.denied_connections));
        catch_up(&self.net_ping_failures, g(&s.ping_failures));
        catch_up(&self.net_limited_connections, g(&s.limited_connections));
        catch_up(&self.net_wire_previous_in, g(&s.wire_previous_in));
        catch_up(&self.net_wire_current_in, g(&s.wire_current_in));
        catch_up(&self.net_wire_refused, g(&s.wire_refused));
        catch_up(&self.net_refused_by_peer, g(&s.refused_by_peer));
    }

    /// The metrics in the Prometheus text format (0.0.4), for scrapers and
    /// tools that do not ask for OpenMetrics (curl, `promtool check
    /// metrics`): the same samples, with each counter's HELP and TYPE under
    /// its sample name (`_total`), and no `# EOF`.
    pub fn render_text(&self) -> String {
        openmetrics_to_text(&self.render())
    }

    /// The metrics in OpenMetrics 1.0.
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

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4.
fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        // The text format has no end marker and no units (libp2p's
        // metrics declare some; the unit is in their names too).
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let head = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match head {
            Some(p) => {
                let rest = &line[p.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Raises `c` to `total` (never lowers it).
fn catch_up(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric has help text and a type, and monotonic counts are
    /// counters (`_total`), as `promtool check metrics` wants.
    #[test]
    fn every_metric_has_help_and_counts_are_counters() {
        let m = Metrics::new();
        m.net_gossip_in.inc();
        m.observe_phase("round", 0.1);
        let text = m.render();
        let mut types = std::collections::BTreeMap::new();
        let mut helps = std::collections::BTreeSet::new();
        for l in text.lines() {
            let w: Vec<&str> = l.splitn(4, ' ').collect();
            match w.as_slice() {
                ["#", "TYPE", name, kind] => {
                    types.insert(name.to_string(), kind.to_string());
                }
                ["#", "HELP", name, help] if !help.trim().is_empty() => {
                    helps.insert(name.to_string());
                }
                _ => {}
            }
        }
        assert!(types.len() >= 30, "{text}");
        for (name, kind) in &types {
            assert!(helps.contains(name), "{name} has no help text");
            if name.starts_with("aidledger_net_") {
                assert_eq!(kind, "counter", "{name}");
            }
        }
        assert!(text.contains("aidledger_net_gossip_in_total 1"), "{text}");

        // The text format: counters' HELP and TYPE under the `_total` name,
        // every sample kept, no EOF marker.
        let plain = m.render_text();
        assert!(plain.contains("# TYPE aidledger_net_gossip_in_total counter\n"));
        assert!(plain.contains("# HELP aidledger_view_changes_total View changes seen"));
        assert!(plain.contains("# TYPE aidledger_height gauge\n"));
        assert!(!plain.contains("# EOF"));
        assert!(!plain.contains("# UNIT"));
        // libp2p's own metrics are there, with help text (checked above).
        assert!(
            types.keys().any(|n| n.starts_with("aidledger_libp2p_")),
            "{text}"
        );
        let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples(&plain), samples(&text));
    }

    #[test]
    fn network_counters_follow_the_task_and_never_go_down() {
        let c = Counter::default();
        catch_up(&c, 5);
        catch_up(&c, 3);
        catch_up(&c, 9);
        assert_eq!(c.get(), 9);
    }
}
