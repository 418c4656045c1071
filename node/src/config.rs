//! A node's configuration: one TOML file per home, overridable by
//! environment variables and flags.

use std::path::{Path, PathBuf};

use aidledger_mempool::MempoolConfig;
use aidledger_node_core::ConsensusSettings;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Largest config file accepted.
const CONFIG_MAX_BYTES: u64 = 256 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub network: NetworkSection,
    pub api: ApiSection,
    #[serde(default)]
    pub consensus: ConsensusSection,
    #[serde(default)]
    pub mempool: MempoolSection,
    #[serde(default)]
    pub admission: AdmissionSection,
    #[serde(default)]
    pub snapshot: SnapshotSection,
}

/// State snapshots this node takes and serves to joiners (ADR 017 part 4).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSection {
    /// Take a snapshot after each committed height divisible by this; 0
    /// takes none (the node then serves none).
    #[serde(default = "default_snapshot_interval")]
    pub interval_blocks: u64,
    /// How many snapshots to keep; older ones are deleted.
    #[serde(default = "default_snapshot_keep")]
    pub keep: usize,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        SnapshotSection {
            interval_blocks: default_snapshot_interval(),
            keep: default_snapshot_keep(),
        }
    }
}

fn default_snapshot_interval() -> u64 {
    10_000
}

fn default_snapshot_keep() -> usize {
    2
}

/// The admission pool (ADR 016): signature checks off the consensus task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSection {
    /// Worker threads for signature checks; 0 means half the cores, at
    /// least one.
    #[serde(default)]
    pub verify_threads: usize,
    /// Most transactions queued for their signature check, all lanes.
    #[serde(default = "default_queue_txs")]
    pub queue_txs: usize,
    /// Most transactions queued from one client address or one peer; a
    /// request that does not fit is answered 503 busy.
    #[serde(default = "default_lane_txs")]
    pub lane_txs: usize,
}

impl Default for AdmissionSection {
    fn default() -> Self {
        AdmissionSection {
            verify_threads: 0,
            queue_txs: default_queue_txs(),
            lane_txs: default_lane_txs(),
        }
    }
}

impl AdmissionSection {
    /// The worker count: `verify_threads`, or half the cores.
    pub fn threads(&self) -> usize {
        if self.verify_threads > 0 {
            return self.verify_threads;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cores / 2).max(1)
    }
}

fn default_queue_txs() -> usize {
    65_536
}
fn default_lane_txs() -> usize {
    4_096
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The organisation that runs this node.
    pub org: String,
    /// The node key (consensus and network identity), relative to the home.
    pub key_file: PathBuf,
    /// The RocksDB directory, relative to the home.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The genesis file, relative to the home.
    #[serde(default = "default_genesis")]
    pub genesis_file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// libp2p listen address, e.g. `/ip4/127.0.0.1/tcp/26601`.
    pub listen: String,
    /// Peers to dial: multiaddrs with a `/p2p/<peer id>` suffix.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Optional file holding the consortium's pre-shared key (64 hex chars).
    #[serde(default)]
    pub psk_file: Option<PathBuf>,
    #[serde(default = "default_redial_ms")]
    pub redial_interval_ms: u64,
    /// How often each peer connection is pinged; three unanswered
    /// intervals close it, and the redial loop reconnects once the link
    /// is back. Detects links that died silently (a partition).
    #[serde(default = "default_ping_ms")]
    pub ping_interval_ms: u64,
    /// Most established peer connections, in and out together.
    #[serde(default = "default_p2p_max_connections")]
    pub max_connections: u32,
    /// Most established connections with one peer.
    #[serde(default = "default_p2p_max_per_peer")]
    pub max_connections_per_peer: u32,
    /// Most incoming connections still in their handshake (before the
    /// allow-list can tell a member from a stranger).
    #[serde(default = "default_p2p_max_pending_incoming")]
    pub max_pending_incoming: u32,
    /// Most outgoing dials still in their handshake.
    #[serde(default = "default_p2p_max_pending_outgoing")]
    pub max_pending_outgoing: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// HTTP listen address. Loopback by default; exposing it is a decision.
    pub listen: String,
    /// Largest request body accepted.
    #[serde(default = "default_body_max")]
    pub body_max_bytes: usize,
    /// Enables `POST /v1/admin/*` (fault drills: isolate the node from
    /// its peers). Off unless set; `testnet init` turns it on.
    #[serde(default)]
    pub admin: bool,
    /// Most API connections open at once (also at most a quarter of the
    /// process's open-file limit, which RocksDB and libp2p share).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most requests handled at once; more get 503 `busy` at once.
    /// `/health` and `/metrics` do not count.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// A client that has not sent its whole request head within this is
    /// cut off.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// A request body must arrive within this.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// A request must be answered within this, or it gets 503 `timeout`.
    /// A submission waits for its commit at most 120 s of it.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Write requests (every `POST`: submit, batch submit, admin) one
    /// client address may make per second on average; more get 429
    /// `rate-limited` with `Retry-After`.
    #[serde(default = "default_write_rate")]
    pub write_rate_per_client: u32,
    /// How many write requests one client address may make at once after
    /// a quiet spell.
    #[serde(default = "default_write_burst")]
    pub write_burst_per_client: u32,
}

fn default_write_rate() -> u32 {
    200
}
fn default_write_burst() -> u32 {
    400
}

fn default_max_connections() -> usize {
    1024
}
fn default_max_requests() -> usize {
    256
}
fn default_header_timeout_ms() -> u64 {
    30_000
}
fn default_body_timeout_ms() -> u64 {
    30_000
}
fn default_request_timeout_ms() -> u64 {
    150_000
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    /// Propose once this many transactions are pending...
    pub max_block_txs: usize,
    pub max_block_bytes: usize,
    /// ...or once this long has passed since this node proposed the last
    /// block (since its commit when another node proposed it), and never
    /// before that block committed here.
    pub block_interval_ms: u64,
    /// With nothing to include, propose an empty block this often anyway:
    /// block time drives date conditions and entitlement periods.
    #[serde(default = "default_empty_block_ms")]
    pub empty_block_interval_ms: u64,
    /// Base round timeout before a view change; doubles per failed view.
    pub round_timeout_ms: u64,
    /// How far a block's timestamp may be ahead of this node's clock.
    pub max_clock_drift_ms: u64,
    /// Blocks per sync request.
    pub sync_batch: u64,
    /// Pipelining (ADR 022): the leader proposes, and validators check and
    /// prepare, the next block while the one before it is still being
    /// agreed. Validators with and without it agree with each other.
    /// New configs (`init`, `testnet init`) say `true`; a config without
    /// the key, written by a build from before pipelining, keeps one
    /// block in flight, so a rolling upgrade never has an upgraded leader
    /// propose blocks the validators still on the earlier build refuse
    /// (the operator guide's "Upgrading to the first build with
    /// pipelining").
    #[serde(default)]
    pub pipeline: bool,
}

impl Default for ConsensusSection {
    /// The node core's defaults.
    fn default() -> Self {
        let d = ConsensusSettings::default();
        ConsensusSection {
            max_block_txs: d.max_block_txs,
            max_block_bytes: d.max_block_bytes,
            block_interval_ms: d.block_interval_ms,
            empty_block_interval_ms: d.empty_block_interval_ms,
            round_timeout_ms: d.round_timeout_ms,
            max_clock_drift_ms: d.max_clock_drift_ms,
            sync_batch: d.sync_batch,
            pipeline: d.pipeline,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MempoolSection {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_per_sender: usize,
    pub nonce_window: u64,
    /// How long a transaction that cannot run yet, because an earlier
    /// nonce of its signer is missing, waits before it is dropped.
    #[serde(default = "default_gap_ttl_ms")]
    pub gap_ttl_ms: u64,
    /// Clients' transactions are taken while fewer are pending than the
    /// chain has committed in this many ms at its rate over the last 10 s
    /// (ADR 023); past it they are answered 503 `mempool-full`.
    #[serde(default = "default_backlog_ms")]
    pub backlog_ms: u64,
    /// ... and always while fewer than this many are pending, so a quiet
    /// chain takes a burst big enough to fill its blocks.
    #[serde(default = "default_backlog_min_txs")]
    pub backlog_min_txs: usize,
}

impl Default for MempoolSection {
    /// The mempool's defaults.
    fn default() -> Self {
        let d = MempoolConfig::default();
        MempoolSection {
            max_txs: d.max_txs,
            max_bytes: d.max_bytes,
            max_per_sender: d.max_per_sender,
            nonce_window: d.nonce_window,
            gap_ttl_ms: d.gap_ttl_ms,
            backlog_ms: d.backlog_ms,
            backlog_min_txs: d.backlog_min_txs,
        }
    }
}

impl ConsensusSection {
    /// What the node core is run with.
    pub fn settings(&self) -> ConsensusSettings {
        ConsensusSettings {
            max_block_txs: self.max_block_txs,
            max_block_bytes: self.max_block_bytes,
            block_interval_ms: self.block_interval_ms,
            empty_block_interval_ms: self.empty_block_interval_ms,
            round_timeout_ms: self.round_timeout_ms,
            max_clock_drift_ms: self.max_clock_drift_ms,
            sync_batch: self.sync_batch,
            pipeline: self.pipeline,
        }
    }
}

impl MempoolSection {
    /// What the mempool is built with.
    pub fn config(&self) -> MempoolConfig {
        MempoolConfig {
            max_txs: self.max_txs,
            max_bytes: self.max_bytes,
            max_per_sender: self.max_per_sender,
            nonce_window: self.nonce_window,
            gap_ttl_ms: self.gap_ttl_ms,
            backlog_ms: self.backlog_ms,
            backlog_min_txs: self.backlog_min_txs,
        }
    }
}

fn default_gap_ttl_ms() -> u64 {
    MempoolConfig::default().gap_ttl_ms
}
fn default_backlog_ms() -> u64 {
    MempoolConfig::default().backlog_ms
}
fn default_backlog_min_txs() -> usize {
    MempoolConfig::default().backlog_min_txs
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_genesis() -> PathBuf {
    PathBuf::from("genesis.json")
}
fn default_empty_block_ms() -> u64 {
    ConsensusSettings::default().empty_block_interval_ms
}
fn default_redial_ms() -> u64 {
    1000
}
fn default_ping_ms() -> u64 {
    1000
}
fn default_p2p_max_connections() -> u32 {
    aidledger_network::PeerLimits::default().max_connections
}
fn default_p2p_max_per_peer() -> u32 {
    aidledger_network::PeerLimits::default().max_per_peer
}
fn default_p2p_max_pending_incoming() -> u32 {
    aidledger_network::PeerLimits::default().max_pending_incoming
}
fn default_p2p_max_pending_outgoing() -> u32 {
    aidledger_network::PeerLimits::default().max_pending_outgoing
}
fn default_body_max() -> usize {
    256 * 1024
}

impl NodeConfig {
    pub fn path(home: &Path) -> PathBuf {
        home.join("config.toml")
    }

    /// Reads and checks `HOME/config.toml`, then applies environment
    /// overrides (`AIDLEDGER_API_LISTEN`, `AIDLEDGER_P2P_LISTEN`,
    /// `AIDLEDGER_P2P_PEERS`).
    pub fn load(home: &Path) -> Result<NodeConfig> {
        let path = Self::path(home);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!(
                "no config at {}: run `aidledger init` first",
                path.display()
            )
        })?;
        if meta.len() > CONFIG_MAX_BYTES {
            bail!("{} is larger than {CONFIG_MAX_BYTES} bytes", path.display());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut cfg: NodeConfig =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        if let Ok(v) = std::env::var("AIDLEDGER_API_LISTEN") {
            cfg.api.listen = v;
        }
        if let Ok(v) = std::env::var("AIDLEDGER_P2P_LISTEN") {
            cfg.network.listen = v;
        }
        if let Ok(v) = std::env::var("AIDLEDGER_P2P_PEERS") {
            // Comma-separated multiaddrs; replaces the file's list (the
            // namespace drills give each node its namespace's addresses).
            cfg.network.peers = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
        }
        cfg.check()
            .with_context(|| format!("invalid config {}", path.display()))?;
        Ok(cfg)
    }

    /// Range checks with a reason for each.
    pub fn check(&self) -> Result<()> {
        let c = &self.consensus;
        if !(1..=aidledger_types::block::BLOCK_MAX_TXS).contains(&c.max_block_txs) {
            bail!(
                "consensus.max_block_txs must be 1 to {}",
                aidledger_types::block::BLOCK_MAX_TXS
            );
        }
        // A block must hold the largest transaction, or a runnable one could
        // never be proposed and would keep the leader proposing empty blocks.
        let min_block = 2 * aidledger_types::tx::TX_MAX_BYTES;
        if !(min_block..=aidledger_types::block::BLOCK_MAX_BYTES).contains(&c.max_block_bytes) {
            bail!(
                "consensus.max_block_bytes must be {min_block} (two of the largest transactions) to {}",
                aidledger_types::block::BLOCK_MAX_BYTES
            );
        }
        if !(10..=60_000).contains(&c.block_interval_ms) {
            bail!("consensus.block_interval_ms must be 10 to 60000");
        }
        if !(100..=600_000).contains(&c.round_timeout_ms) {
            bail!("consensus.round_timeout_ms must be 100 to 600000");
        }
        if c.empty_block_interval_ms < c.block_interval_ms
            || c.empty_block_interval_ms >= c.round_timeout_ms
        {
            bail!(
                "consensus.empty_block_interval_ms must be at least block_interval_ms and below round_timeout_ms"
            );
        }
        if !(100..=3_600_000).contains(&c.max_clock_drift_ms) {
            bail!("consensus.max_clock_drift_ms must be 100 to 3600000");
        }
        if !(1..=1000).contains(&c.sync_batch) {
            bail!("consensus.sync_batch must be 1 to 1000");
        }
        let m = &self.mempool;
        if m.max_txs == 0 || m.max_txs > 10_000_000 {
            bail!("mempool.max_txs must be 1 to 10000000");
        }
        if m.max_bytes < 1024 * 1024 || m.max_bytes > 16 * 1024 * 1024 * 1024 {
            bail!("mempool.max_bytes must be 1 MiB to 16 GiB");
        }
        if m.max_per_sender == 0 || m.nonce_window == 0 {
            bail!("mempool.max_per_sender and mempool.nonce_window must be positive");
        }
        if m.gap_ttl_ms < 1000 || m.gap_ttl_ms > 3_600_000 {
            bail!("mempool.gap_ttl_ms must be 1000 to 3600000 (1 s to 1 h)");
        }
        if !(1_000..=600_000).contains(&m.backlog_ms) {
            bail!("mempool.backlog_ms must be 1000 to 600000 (1 s to 10 min)");
        }
        if !(self.consensus.max_block_txs..=m.max_txs).contains(&m.backlog_min_txs) {
            bail!(
                "mempool.backlog_min_txs must be consensus.max_block_txs ({}) to mempool.max_txs \
                 ({}): fewer could not fill a block",
                self.consensus.max_block_txs,
                m.max_txs
            );
        }
        if self.api.body_max_bytes < 1024 || self.api.body_max_bytes > 64 * 1024 * 1024 {
            bail!("api.body_max_bytes must be 1 KiB to 64 MiB");
        }
        if !(16..=65_536).contains(&self.api.max_connections) {
            bail!("api.max_connections must be 16 to 65536");
        }
        if !(1..=65_536).contains(&self.api.max_requests) {
            bail!("api.max_requests must be 1 to 65536");
        }
        if !(100..=600_000).contains(&self.api.header_timeout_ms)
            || !(100..=600_000).contains(&self.api.body_timeout_ms)
        {
            bail!("api.header_timeout_ms and api.body_timeout_ms must be 100 to 600000");
        }
        if !(1_000..=600_000).contains(&self.api.request_timeout_ms) {
            bail!("api.request_timeout_ms must be 1000 to 600000");
        }
        if !(1..=1_000_000).contains(&self.api.write_rate_per_client)
            || !(1..=1_000_000).contains(&self.api.write_burst_per_client)
        {
            bail!("api.write_rate_per_client and api.write_burst_per_client must be 1 to 1000000");
        }
        let a = &self.admission;
        if a.verify_threads > 64 {
            bail!("admission.verify_threads must be 0 (half the cores) to 64");
        }
        if self.snapshot.interval_blocks != 0 && self.snapshot.interval_blocks < 10 {
            bail!("snapshot.interval_blocks must be 0 (no snapshots) or at least 10");
        }
        if !(1..=16).contains(&self.snapshot.keep) {
            bail!("snapshot.keep must be 1 to 16");
        }
        if !(2_000..=10_000_000).contains(&a.queue_txs) {
            bail!("admission.queue_txs must be 2000 to 10000000");
        }
        // A lane must hold a whole batch request, or such a request could
        // never be admitted.
        if !(2_000..=a.queue_txs).contains(&a.lane_txs) {
            bail!(
                "admission.lane_txs must be 2000 (one full batch request) to admission.queue_txs"
            );
        }
        if self.network.redial_interval_ms < 50 || self.network.redial_interval_ms > 600_000 {
            bail!("network.redial_interval_ms must be 50 to 600000");
        }
        if !(100..=60_000).contains(&self.network.ping_interval_ms) {
            bail!("network.ping_interval_ms must be 100 to 60000");
        }
        let n = &self.network;
        if !(8..=10_000).contains(&n.max_connections) {
            bail!("network.max_connections must be 8 to 10000");
        }
        if !(2..=16).contains(&n.max_connections_per_peer) {
            bail!("network.max_connections_per_peer must be 2 to 16");
        }
        if !(1..=10_000).contains(&n.max_pending_incoming)
            || !(1..=10_000).contains(&n.max_pending_outgoing)
        {
            bail!(
                "network.max_pending_incoming and network.max_pending_outgoing must be 1 to 10000"
            );
        }
        if self.network.peers.len() > 1000 {
            bail!("network.peers has more than 1000 entries");
        }
        self.api
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("api.listen {:?} is not host:port", self.api.listen))?;
        Ok(())
    }

    pub fn write(&self, home: &Path) -> Result<()> {
        let text = toml::to_string_pretty(self)?;
        std::fs::write(Self::path(home), text)
            .with_context(|| format!("writing {}", Self::path(home).display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeConfig {
        NodeConfig {
            node: NodeSection {
                org: "state-bank".into(),
                key_file: "keys/node.json".into(),
                data_dir: "data".into(),
                genesis_file: "genesis.json".into(),
            },
            network: NetworkSection {
                listen: "/ip4/127.0.0.1/tcp/1".into(),
                peers: vec![],
                psk_file: None,
                redial_interval_ms: 1000,
                ping_interval_ms: default_ping_ms(),
                max_connections: default_p2p_max_connections(),
                max_connections_per_peer: default_p2p_max_per_peer(),
                max_pending_incoming: default_p2p_max_pending_incoming(),
                max_pending_outgoing: default_p2p_max_pending_outgoing(),
            },
            api: ApiSection {
                listen: "127.0.0.1:2".into(),
                body_max_bytes: 1 << 20,
                admin: false,
                max_connections: default_max_connections(),
                max_requests: default_max_requests(),
                header_timeout_ms: default_header_timeout_ms(),
                body_timeout_ms: default_body_timeout_ms(),
                request_timeout_ms: default_request_timeout_ms(),
                write_rate_per_client: default_write_rate(),
                write_burst_per_client: default_write_burst(),
            },
            consensus: ConsensusSection::default(),
            mempool: MempoolSection::default(),
            admission: AdmissionSection::default(),
            snapshot: SnapshotSection::default(),
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let c = sample();
        c.write(dir.path()).unwrap();
        assert_eq!(NodeConfig::load(dir.path()).unwrap(), c);

        let mut bad = sample();
        bad.consensus.max_block_txs = 0;
        assert!(bad.check().is_err());
        let mut bad = sample();
        bad.api.listen = "nowhere".into();
        assert!(bad.check().is_err());
        for ms in [0, 99, 60_001] {
            let mut bad = sample();
            bad.network.ping_interval_ms = ms;
            let e = bad.check().unwrap_err();
            assert!(format!("{e:#}").contains("ping_interval_ms"), "{e:#}");
        }
        type Set = fn(&mut NodeConfig);
        let limits: [(&str, Set); 17] = [
            ("request_timeout_ms", |c| c.api.request_timeout_ms = 999),
            ("request_timeout_ms", |c| c.api.request_timeout_ms = 600_001),
            ("verify_threads", |c| c.admission.verify_threads = 65),
            ("queue_txs", |c| c.admission.queue_txs = 1_999),
            ("queue_txs", |c| c.admission.queue_txs = 10_000_001),
            // A lane must hold one whole batch request.
            ("lane_txs", |c| c.admission.lane_txs = 1_999),
            ("lane_txs", |c| {
                c.admission.queue_txs = 10_000;
                c.admission.lane_txs = 10_001;
            }),
            ("max_connections", |c| c.network.max_connections = 7),
            ("max_connections", |c| c.network.max_connections = 10_001),
            ("max_connections_per_peer", |c| {
                c.network.max_connections_per_peer = 1
            }),
            ("max_connections_per_peer", |c| {
                c.network.max_connections_per_peer = 17
            }),
            ("max_pending_incoming", |c| {
                c.network.max_pending_incoming = 0
            }),
            ("max_pending_outgoing", |c| {
                c.network.max_pending_outgoing = 10_001
            }),
            ("backlog_ms", |c| c.mempool.backlog_ms = 999),
            ("backlog_ms", |c| c.mempool.backlog_ms = 600_001),
            // A floor below one block could never fill one.
            ("backlog_min_txs", |c| {
                c.mempool.backlog_min_txs = c.consensus.max_block_txs - 1
            }),
            ("backlog_min_txs", |c| {
                c.mempool.backlog_min_txs = c.mempool.max_txs + 1
            }),
        ];
        for (name, set) in limits {
            let mut bad = sample();
            set(&mut bad);
            let e = bad.check().unwrap_err();
            assert!(format!("{e:#}").contains(name), "{name}: {e:#}");
        }
        // Without an [admission] section, or with part of one, the
        // defaults apply.
        let text = toml::to_string(&sample()).unwrap();
        let without: String = {
            let at = text.find("[admission]").unwrap();
            text[..at].to_string()
        };
        let c: NodeConfig = toml::from_str(&without).unwrap();
        assert_eq!(c.admission, AdmissionSection::default());
        let c: NodeConfig =
            toml::from_str(&format!("{without}\n[admission]\nverify_threads = 3\n")).unwrap();
        assert_eq!((c.admission.threads(), c.admission.lane_txs), (3, 4096));
        assert!(AdmissionSection::default().threads() >= 1);
        // A [mempool] section written before the backlog bound (ADR 023)
        // still loads, with its defaults.
        let old: String = text
            .lines()
            .filter(|l| !l.starts_with("backlog_"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(old, text.trim_end());
        let c: NodeConfig = toml::from_str(&old).unwrap();
        assert_eq!(
            (c.mempool.backlog_ms, c.mempool.backlog_min_txs),
            (5_000, 10_000)
        );
        c.check().unwrap();
        // A new config turns pipelining on and says so; one written before
        // the key existed keeps one block in flight (a rolling upgrade
        // from an earlier build must not pipeline before all run it).
        assert!(sample().consensus.pipeline);
        assert!(text.contains("pipeline = true"), "{text}");
        let old: String = text
            .lines()
            .filter(|l| !l.starts_with("pipeline"))
            .collect::<Vec<_>>()
            .join("\n");
        let c: NodeConfig = toml::from_str(&old).unwrap();
        assert!(!c.consensus.pipeline);
        assert!(!c.consensus.settings().pipeline);
        let e =
            toml::from_str::<NodeConfig>(&text.replace("pipeline = true", "pipeline = \"yes\""))
                .unwrap_err();
        assert!(e.to_string().contains("pipeline"), "{e}");

        std::fs::write(NodeConfig::path(dir.path()), "[node]\nunknown = 1\n").unwrap();
        let e = NodeConfig::load(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("invalid config"), "{e:#}");
    }
}
