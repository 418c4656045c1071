//! `aidledger node run`: one institution's node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aidledger_contracts::Genesis;
use aidledger_crypto::read_key_file;
use aidledger_network::{identity_from_seed, peer_id_of, NetworkConfig};
use aidledger_storage::{RocksStore, Store};
use anyhow::{bail, Context, Result};
use tokio::sync::{broadcast, mpsc};

use crate::api::{AppState, NodeInfo};
use crate::config::NodeConfig;
use crate::driver::{Driver, DriverMsg, DriverParts, Shared, Snapshot, DRIVER_CHANNEL};
use crate::metrics::Metrics;

pub struct RunOptions {
    pub log_json: bool,
    /// Vote at once even if the safety state is missing or behind this
    /// validator's own votes (`node run --accept-missing-safety-state`).
    pub accept_missing_safety_state: bool,
    /// This node has run on this chain before, whatever its home says
    /// (`node run --rejoin`): for a validator restored onto a new machine.
    pub rejoin: bool,
    /// Join from a peer's snapshot when the store holds no block
    /// (`node run --from-snapshot`, ADR 017 part 4).
    pub from_snapshot: bool,
}

/// The file in a node's home that records the chain (id and genesis hash)
/// it has run on. It survives a wiped `data/`, so a validator back on an
/// empty store knows it may have voted before and catches up first.
pub const RAN_MARKER: &str = "ran-on-chain";

/// What [`RAN_MARKER`] holds for a chain: its id and genesis hash.
pub fn ran_marker_text(genesis: &Genesis) -> String {
    format!("{} {}\n", genesis.chain_id, genesis.hash())
}

/// Largest genesis file accepted.
const GENESIS_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and validates a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > GENESIS_MAX_BYTES {
        bail!(
            "{} is larger than {GENESIS_MAX_BYTES} bytes",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let g: Genesis = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid genesis file", path.display()))?;
    g.validate()
        .with_context(|| format!("{} is not a valid genesis", path.display()))?;
    Ok(g)
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// `p` relative to the home, unless absolute.
pub(crate) fn rel(home: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

/// Reads the consortium's pre-shared network key: 64 hex characters, in a
/// file no one but its owner may read (as operator and node keys).
pub(crate) fn read_psk(path: &Path) -> Result<[u8; 32]> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading pre-shared key {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "pre-shared key {}: permissions {mode:o} let others read the consortium's network key; run chmod 600",
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading pre-shared key {}", path.display()))?;
    let mut psk = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut psk)
        .with_context(|| format!("{}: expected 64 hex characters", path.display()))?;
    Ok(psk)
}

/// Where a node's admin token lives, relative to its home.
pub const ADMIN_TOKEN_FILE: &str = "keys/admin.token";

/// The admin routes' bearer token: read from `HOME/keys/admin.token`, or
/// created there (32 random bytes in hex, mode 0600) on first use. A file
/// that group or others may read is refused, like key files.
pub(crate) fn admin_token(home: &Path) -> Result<String> {
    let path = home.join(ADMIN_TOKEN_FILE);
    if !path.exists() {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        use std::io::Write;
        o.open(&path)
            .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()))
            .with_context(|| format!("creating admin token {}", path.display()))?;
        return Ok(token);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .with_context(|| format!("reading admin token {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "admin token {}: permissions {mode:o} let others read it; run chmod 600",
                path.display()
            );
        }
    }
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("reading admin token {}", path.display()))?
        .trim()
        .to_string();
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "admin token {}: expected at least 32 printable characters",
            path.display()
        );
    }
    Ok(token)
}

pub fn run(home: &Path, opts: RunOptions) -> Result<()> {
    init_tracing(opts.log_json);
    let cfg = NodeConfig::load(home)?;
    let genesis = load_genesis(&rel(home, &cfg.node.genesis_file))?;
    let key = read_key_file(&rel(home, &cfg.node.key_file))?;
    let staged = crate::node_keys::read_staged(home, &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(home, cfg, genesis, key, staged, opts))
}

/// Checks this node's key against the node registry at the tip (ADR 017)
/// and returns the registry. A registered key must run for its own
/// organisation; a removed one never runs again. An unregistered key may
/// start (a new organisation's node syncing before, or while, governance
/// registers it), but no peer admits it until then, so the operator is
/// told what to ask for.
fn check_registered(
    store: &RocksStore,
    me: &aidledger_types::PublicKey,
    org: &str,
    height: u64,
) -> Result<Vec<aidledger_contracts::NodeRecord>> {
    let state = aidledger_node_core::StoreState(store);
    let registry = aidledger_execution::read_nodes(&state)
        .map_err(|e| anyhow::anyhow!("reading the node registry at height {height}: {e}"))?;
    match registry.iter().find(|n| n.key == *me) {
        Some(n) if n.org.as_str() != org => bail!(
            "this node's key {me} belongs to {} in the node registry, but node.org in \
             config.toml is {org:?}",
            n.org
        ),
        Some(_) => {}
        None => {
            let retired = aidledger_execution::read_retired_node(&state, me)
                .map_err(|e| anyhow::anyhow!("reading the node registry: {e}"))?;
            if let Some(successor) = retired.as_ref().and_then(|r| r.successor) {
                bail!(
                    "this node's key {me} was replaced by {successor} at height {} and is refused \
                     by every peer; put that key's file in place (aidledger keys stage --home H \
                     --file FILE, then start again: the node moves to it by itself)",
                    retired.as_ref().map_or(0, |r| r.height)
                );
            }
            if let Some(r) = retired {
                bail!(
                    "this node's key {me} was removed from the consortium at height {} and is \
                     refused by every peer; generate a new node key (aidledger keys generate) \
                     and have governance register it (gov-propose add-node)",
                    r.height
                );
            }
            tracing::warn!(
                key = %me,
                height,
                "this node's key is not registered at this height: no peer admits it until \
                 governance registers it (aidledger tx gov-propose add-node --org {org} --node-key {me}); \
                 a node syncing toward that block starts anyway"
            );
        }
    }
    Ok(registry)
}

/// The network's configuration for this node, admitting `allowed`.
fn net_config(
    home: &Path,
    cfg: &NodeConfig,
    genesis: &Genesis,
    allowed: Vec<aidledger_network::NetPeerId>,
) -> Result<NetworkConfig> {
    let bootstrap = cfg
        .network
        .peers
        .iter()
        .map(|s| aidledger_network::parse_addr(s))
        .collect::<Result<Vec<_>, _>>()?;
    let psk = match &cfg.network.psk_file {
        Some(p) => Some(read_psk(&rel(home, p))?),
        None => None,
    };
    Ok(NetworkConfig {
        chain_id: genesis.chain_id.to_string(),
        listen: aidledger_network::parse_addr(&cfg.network.listen)?,
        bootstrap,
        allowed,
        psk,
        gossip_max_bytes: aidledger_network::GOSSIP_MAX_BYTES,
        redial_interval: std::time::Duration::from_millis(cfg.network.redial_interval_ms),
        ping_interval: std::time::Duration::from_millis(cfg.network.ping_interval_ms),
        // Random, so frames after a restart never repeat earlier ids.
        publish_seq_start: rand::random(),
        limits: aidledger_network::PeerLimits {
            max_connections: cfg.network.max_connections,
            max_per_peer: cfg.network.max_connections_per_peer,
            max_pending_incoming: cfg.network.max_pending_incoming,
            max_pending_outgoing: cfg.network.max_pending_outgoing,
        },
        wire_min: aidledger_network::WIRE_MIN,
        wire_max: crate::test_knobs::wire_max()?,
    })
}

/// How often the memory gauges are sampled.
const MEMORY_SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The `kB` fields named in `fields` (such as `VmRSS` or `VmHWM`) from
/// `/proc/<pid>/status`, or this process's with `pid` `None`, in bytes, in
/// the order asked; `None` if the file or any field cannot be read.
pub fn proc_status_bytes<const N: usize>(pid: Option<i32>, fields: [&str; N]) -> Option<[u64; N]> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |p| format!("/proc/{p}/status"),
    );
    let text = std::fs::read_to_string(path).ok()?;
    let mut out = [0u64; N];
    for (slot, name) in out.iter_mut().zip(fields) {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(':')))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        *slot = kb.saturating_mul(1024);
    }
    Some(out)
}

/// The process's resident set in bytes (VmRSS), or 0 if it cannot be read.
fn resident_bytes() -> u64 {
    proc_status_bytes(None, ["VmRSS"]).map_or(0, |[rss]| rss)
}

/// How long a starting node waits for a store another process still holds.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(20);

async fn run_async(
    home: &Path,
    cfg: NodeConfig,
    genesis: Genesis,
    key: aidledger_crypto::Keypair,
    staged: Option<aidledger_crypto::Keypair>,
    opts: RunOptions,
) -> Result<()> {
    let data = rel(home, &cfg.node.data_dir);
    std::fs::create_dir_all(&data)?;
    // A restart (`testnet up` after a stop, systemd's Restart=) can start
    // this process while the previous one is still stopping: a node
    // closes its store before it says "stopped cleanly", but a stop may
    // take seconds (the API's connections drain, the admission queue
    // empties). Wait for the store's lock, bounded and said. A second
    // node on the same home meets the same wait, then the error naming
    // the lock.
    let store = Arc::new(
        RocksStore::open_waiting(&data, STORE_LOCK_WAIT, |e| {
            tracing::warn!(
                error = %e,
                wait_s = STORE_LOCK_WAIT.as_secs(),
                "the store is held by another process; waiting for it to be released"
            )
        })
        .with_context(|| format!("opening {}", data.display()))?,
    );
    let (mut parent, mut acc) = aidledger_node_core::open_chain(store.as_ref(), &genesis)?;
    if let Some(h) = store.snapshot_installing()? {
        if !opts.from_snapshot {
            bail!(
                "{} holds an unfinished snapshot install at height {h}: start with                  --from-snapshot to join again, or empty the data directory to replay from                  genesis",
                data.display()
            );
        }
    }
    if opts.from_snapshot {
        if parent.height > 0 {
            tracing::info!(
                height = parent.height,
                base = store.base()?,
                "the store already holds blocks: --from-snapshot has nothing to do"
            );
        } else {
            let me = key.public();
            let mut allowed = Vec::new();
            for (_, k) in genesis.network_keys() {
                if k != me {
                    allowed.push(peer_id_of(&k)?);
                }
            }
            let net_cfg = net_config(home, &cfg, &genesis, allowed)?;
            tracing::info!("joining from a snapshot: asking peers what they offer");
            let started = tokio::time::Instant::now();
            let joined =
                crate::join::join(store.as_ref(), &genesis, net_cfg, key.secret_seed(), me)
                    .await
                    .context("joining from a snapshot")?;
            tracing::info!(
                height = joined.head.height,
                state_root = %joined.head.state_root.short(),
                chunks = joined.chunks,
                pairs = joined.pairs,
                agreeing_peers = joined.peers,
                secs = format!("{:.1}", started.elapsed().as_secs_f64()),
                "joined from a snapshot: history starts here (a pruned node); following the chain                  from the next height"
            );
            (parent, acc) = aidledger_node_core::open_chain(store.as_ref(), &genesis)?;
        }
    }
    let marker = home.join(RAN_MARKER);
    let this_chain = ran_marker_text(&genesis);
    let ran_before = opts.rejoin || std::fs::read_to_string(&marker).is_ok_and(|m| m == this_chain);
    if !ran_before {
        std::fs::write(&marker, &this_chain)
            .with_context(|| format!("writing {}", marker.display()))?;
    }
    let restored_marker =
        crate::backup::read_restored_marker(home, genesis.chain_id.as_str(), &genesis.hash())?;
    if let (Some(path), true) = (&restored_marker, opts.accept_missing_safety_state) {
        tracing::warn!(
            marker = %path.display(),
            "restored from a backup, but --accept-missing-safety-state votes at once"
        );
    }
    tracing::info!(
        chain = %genesis.chain_id,
        org = %cfg.node.org,
        height = parent.height,
        state_root = %parent.state_root.short(),
        "opened chain"
    );

    // A node-key replacement (ADR 017): the staged key may already be
    // registered as this key's successor, or have replaced it.
    let (mut key, mut staged) = (key, staged);
    let choice = aidledger_node_core::choose_keys(
        &aidledger_node_core::StoreState(store.as_ref()),
        &key.public(),
        staged.as_ref().map(|k| k.public()).as_ref(),
    )?;
    if choice.promote {
        if let Some(next) = staged.take() {
            crate::node_keys::promote_staged(home, &cfg, &key)?;
            key = next;
        }
    }
    if let Some(s) = &staged {
        if choice.network == s.public() {
            tracing::warn!(
                old = %key.public(),
                new = %s.public(),
                "a replacement of this node's key is pending: the network identity is the staged \
                 key's; the old key signs until the replacement's height"
            );
        } else {
            tracing::info!(
                staged = %s.public(),
                "a replacement key is staged; governance has not registered it for this node yet \
                 (aidledger tx gov-propose replace-node-key --old-key {} --new-key {} --at-height H)",
                key.public(),
                s.public()
            );
        }
    }
    let me = key.public();
    let registry = check_registered(store.as_ref(), &me, &cfg.node.org, parent.height)?;
    let own = |k: &aidledger_types::PublicKey| {
        *k == me || staged.as_ref().is_some_and(|s| s.public() == *k)
    };
    // Every other registered node, by key and peer id: the allow-list,
    // and the core's peers in this order. The core follows the registry
    // from here on (`Effect::Members`).
    let mut members = Vec::new();
    for n in registry {
        if !own(&n.key) {
            members.push((n.key, peer_id_of(&n.key)?));
        }
    }
    let network_key = match &staged {
        Some(s) if s.public() == choice.network => s.secret_seed(),
        _ => key.secret_seed(),
    };
    let net_cfg = net_config(
        home,
        &cfg,
        &genesis,
        members.iter().map(|(_, p)| *p).collect(),
    )?;
    let shared = Arc::new(Shared {
        snapshot: RwLock::new(Snapshot::default()),
        commits: broadcast::channel(1024).0,
        metrics: Metrics::new(),
        stopping: tokio::sync::watch::channel(false).0,
    });
    let memory_task = {
        let (shared, store) = (shared.clone(), store.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MEMORY_SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let (store, shared) = (store.clone(), shared.clone());
                // RocksDB's properties take its mutex; off the runtime.
                let sampled = tokio::task::spawn_blocking(move || {
                    shared
                        .metrics
                        .observe_memory(&store.memory(), resident_bytes());
                })
                .await;
                if sampled.is_err() {
                    return;
                }
            }
        })
    };
    let stats = aidledger_network::NetStats {
        libp2p: Some(shared.metrics.libp2p.clone()),
        ..Default::default()
    };
    let (net, net_rx) = aidledger_network::spawn_with_stats(
        net_cfg.clone(),
        identity_from_seed(network_key)?,
        Arc::new(stats),
    )?;
    let (driver_tx, driver_rx) = mpsc::channel(DRIVER_CHANNEL);
    let is_validator = parent.validator_set.index_of(&me).is_some();
    let info = Arc::new(NodeInfo {
        chain_id: genesis.chain_id.to_string(),
        org: aidledger_types::OrgId::new(cfg.node.org.clone())?,
        node_key: me,
        genesis_hash: genesis.hash(),
        admin_token: if cfg.api.admin {
            let token = admin_token(home)?;
            tracing::warn!(
                token_file = %home.join(ADMIN_TOKEN_FILE).display(),
                "the admin API is on (api.admin = true): POST /v1/admin/* can cut this node off \
                 from its peers; callers need the token file's content as a bearer token"
            );
            Some(token)
        } else {
            None
        },
    });
    let admission = Arc::new(aidledger_node_core::Admission::new(
        genesis.chain_id.clone(),
        store.clone(),
        cfg.mempool.nonce_window,
        aidledger_network::GOSSIP_MAX_BYTES,
        &aidledger_node_core::Mutants::default(),
    ));
    let pool_cfg = crate::admission::PoolConfig {
        threads: cfg.admission.threads(),
        queue_txs: cfg.admission.queue_txs,
        lane_txs: cfg.admission.lane_txs,
    };
    let pool = crate::admission::AdmissionPool::start(
        admission,
        pool_cfg,
        driver_tx.clone(),
        Some(crate::admission::PoolMetrics::of(&shared.metrics)),
    )
    .context("starting the admission pool")?;
    let pool_stop = pool.stop_on_drop();
    tracing::info!(
        threads = pool_cfg.threads,
        queue_txs = pool_cfg.queue_txs,
        lane_txs = pool_cfg.lane_txs,
        "admission pool started"
    );
    let driver = Driver::new(DriverParts {
        chain_id: genesis.chain_id.clone(),
        cfg: cfg.clone(),
        home: home.to_path_buf(),
        key,
        staged,
        store: store.clone(),
        net: net.clone(),
        net_cfg,
        members,
        parent,
        acc,
        shared: shared.clone(),
        accept_missing_safety_state: opts.accept_missing_safety_state,
        ran_before,
        restored_marker,
        pool: pool.clone(),
    })?;
    // The control socket, for `aidledger backup` on the running node. A
    // home path too long for a Unix socket only loses hot backups.
    let control_task = match crate::backup::serve_control(home, store.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no control socket: aidledger backup cannot reach this node while it runs");
            None
        }
    };
    let driver_task = tokio::spawn(driver.run(driver_rx, net_rx));

    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", cfg.api.listen))?;
    tracing::info!(api = %cfg.api.listen, validator = is_validator, "serving the HTTP API");
    let counters = crate::http_server::Counters::of(&shared.metrics);
    let app = crate::api::router(
        AppState {
            store: store.clone(),
            driver: driver_tx.clone(),
            pool: pool.clone(),
            shared: shared.clone(),
            info,
            explore: Default::default(),
        },
        cfg.api.body_max_bytes,
    );
    let stop_rx = shared.stopping.subscribe();
    crate::http_server::raise_open_file_limit();
    let limits = crate::http_server::Limits {
        max_connections: crate::http_server::connection_cap(cfg.api.max_connections),
        max_requests: cfg.api.max_requests,
        header_timeout: Duration::from_millis(cfg.api.header_timeout_ms),
        body_timeout: Duration::from_millis(cfg.api.body_timeout_ms),
        request_timeout: Duration::from_millis(cfg.api.request_timeout_ms),
        write_rate_per_client: cfg.api.write_rate_per_client,
        write_burst_per_client: cfg.api.write_burst_per_client,
    };
    tracing::info!(
        max_connections = limits.max_connections,
        open_file_limit = ?crate::http_server::open_file_limit(),
        "API limits"
    );
    let api_task = tokio::spawn(crate::http_server::serve(
        listener, app, limits, counters, stop_rx,
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut driver_task = driver_task;
    let driver_result = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); None }
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        r = &mut driver_task => Some(r),
    };
    shared.stopping.send_replace(true);
    let result = match driver_result {
        Some(r) => r.context("driver task panicked")?,
        None => {
            let _ = driver_tx.send(DriverMsg::Shutdown).await;
            driver_task.await.context("driver task panicked")?
        }
    };
    if let Some(t) = control_task {
        t.abort();
        let _ = t.await;
        let _ = std::fs::remove_file(home.join(crate::backup::CONTROL_SOCKET));
    }
    memory_task.abort();
    let _ = memory_task.await;
    pool.close();
    net.shutdown().await;
    let _ = api_task.await;
    // The API has answered its last request; the admission workers finish
    // what is queued and stop (the guard closes and joins the pool). Then
    // nothing holds the store but this task.
    let _ = tokio::task::spawn_blocking(move || drop(pool_stop)).await;
    drop(pool);
    close_store(store).await;
    match &result {
        Ok(()) => tracing::info!("stopped cleanly"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "stopped on a fatal error"),
    }
    result
}

/// Closes the store before the node says it stopped: RocksDB flushes
/// nothing more and releases its lock here, not when the process exits.
/// Every task and thread that read it has ended by now; should one still
/// hold it, the store closes when that one ends, before the runtime is
/// gone, and the log says so.
async fn close_store(store: Arc<RocksStore>) {
    match Arc::try_unwrap(store) {
        // Closing waits for RocksDB's background work: off the runtime.
        Ok(store) => {
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
            tracing::info!("store closed");
        }
        Err(store) => tracing::warn!(
            holders = Arc::strong_count(&store) - 1,
            "the store is still held at shutdown; it closes when its last holder ends"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{proc_status_bytes, read_psk};
    use std::os::unix::fs::PermissionsExt;

    /// The status fields are read whole, by name: this process's peak and
    /// current resident set, the same through its pid; a field that is
    /// only a prefix of one, or absent, or a process that is gone, reads
    /// as nothing.
    #[test]
    fn proc_status_fields_are_read_by_their_whole_name() {
        let [hwm, rss] = proc_status_bytes(None, ["VmHWM", "VmRSS"]).unwrap();
        assert!(rss > 1024 * 1024 && hwm >= rss, "{hwm} {rss}");
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(proc_status_bytes(Some(pid), ["VmHWM"]).unwrap()[0] >= hwm);
        assert_eq!(proc_status_bytes(None, ["VmRS"]), None);
        assert_eq!(proc_status_bytes(None, ["NoSuchField"]), None);
        assert_eq!(proc_status_bytes(Some(i32::MAX), ["VmRSS"]), None);
    }

    /// A pre-shared key readable by others is refused, like a key file.
    #[test]
    fn a_pre_shared_key_file_others_can_read_is_refused() {
        let dir = std::env::temp_dir().join(format!("aidledger-psk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("consortium.psk");
        std::fs::write(&p, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_psk(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_psk(&p).unwrap(), [0xab; 32]);
        std::fs::write(&p, "not hex").unwrap();
        assert!(read_psk(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
