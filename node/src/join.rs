//! Joining from a snapshot (`node run --from-snapshot`, ADR 017 part 4).
//!
//! A node whose store holds no block, and which holds the genesis, asks its
//! peers which snapshots they offer and takes the highest height `S`. It
//! trusts nothing a peer says until it has checked it:
//!
//! 1. the validator-set changes from genesis, each certified by a quorum
//!    of the set before it ([`SetHistory::follow`]), lead to the set in
//!    force at `S`, and that set certified block `S`
//!    ([`SetHistory::verify_manifest`]);
//! 2. the manifest's partial accumulators sum to block `S`'s state root;
//! 3. at least f + 1 peers (all of them, if fewer answer) name the same
//!    block at `S`, which bounds the long-range risk of an old set's keys
//!    stolen later;
//! 4. each chunk, fetched from any peer offering `S`, hashes to its
//!    partial inside its key range (a peer that sends a bad one is not
//!    asked again);
//! 5. the store recomputes the whole state's accumulator before it writes
//!    the head ([`aidledger_storage::Store::snapshot_finish`]).
//!
//! The joiner runs its own short-lived network with the genesis members
//! admitted, before the node proper starts; the node then follows from
//! `S + 1` by ordinary sync.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

use aidledger_contracts::Genesis;
use aidledger_crypto::SetHistory;
use aidledger_network::{NetEvent, NetPeerId as PeerId, NetworkConfig, NetworkHandle};
use aidledger_storage::{Head, RocksStore, Store};
use aidledger_types::snapshot::{SetChange, SnapshotChunk, SnapshotManifest, SET_CHANGES_MAX};
use aidledger_types::wire::{
    SetChangesResponse, SnapshotChunkResponse, SnapshotManifestResponse, SnapshotOffersResponse,
    SyncRequest, SyncResponse, SYNC_RESPONSE_MAX_BYTES,
};
use aidledger_types::{codec, PublicKey};
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

/// How long to wait for the first peer.
const PEER_WAIT: Duration = Duration::from_secs(120);
/// How long one request may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a chunk is asked for (over all peers) before the height is
/// given up.
const CHUNK_ATTEMPTS: usize = 40;
/// An answer slower than this drops its source.
const SLOW: Duration = Duration::from_secs(20);
/// How long to wait for f + 1 peers before going on with fewer.
const PEERS_WANTED_WAIT: Duration = Duration::from_secs(15);

struct Joiner {
    net: NetworkHandle,
    rx: mpsc::Receiver<NetEvent>,
    connected: BTreeSet<PeerId>,
}

impl Joiner {
    /// Handles one network event while waiting; returns a response or
    /// failure for `request`.
    fn note(&mut self, ev: NetEvent, request: Option<u64>) -> Option<Option<Vec<u8>>> {
        match ev {
            NetEvent::PeerConnected(p) => {
                self.connected.insert(p);
            }
            NetEvent::PeerDisconnected(p) => {
                self.connected.remove(&p);
            }
            NetEvent::SyncResponse {
                request: r, data, ..
            } if Some(r) == request => return Some(Some(data)),
            NetEvent::SyncFailed {
                request: r, reason, ..
            } if Some(r) == request => {
                tracing::debug!(%reason, "snapshot join: a request failed");
                return Some(None);
            }
            // Gossip and peers' own requests wait for the node proper;
            // a dropped reply token fails the request at the asker.
            _ => {}
        }
        None
    }

    /// Waits for a first peer (up to [`PEER_WAIT`]), then for `want` peers
    /// (up to [`PEERS_WANTED_WAIT`] more), then a moment for the rest.
    async fn wait_for_peers(&mut self, want: usize) -> Result<()> {
        let deadline = Instant::now() + PEER_WAIT;
        while self.connected.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(ev)) => {
                    self.note(ev, None);
                }
                Ok(None) => bail!("the network stopped"),
                Err(_) => bail!(
                    "no peer connected within {} s: check network.peers in config.toml, and \
                     that governance registered this node's key (gov-propose add-node)",
                    PEER_WAIT.as_secs()
                ),
            }
        }
        let wanted = Instant::now() + PEERS_WANTED_WAIT;
        let mut settle = Instant::now() + Duration::from_secs(2);
        loop {
            let until = if self.connected.len() < want {
                wanted
            } else {
                settle.min(wanted)
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(ev)) => {
                    let before = self.connected.len();
                    self.note(ev, None);
                    if before < want && self.connected.len() >= want {
                        settle = Instant::now() + Duration::from_secs(2);
                    }
                }
                Ok(None) => bail!("the network stopped"),
                Err(_) => break,
            }
        }
        if self.connected.len() < want {
            tracing::warn!(
                connected = self.connected.len(),
                want,
                "snapshot join: fewer peers than f + 1 connected; going on with these"
            );
        }
        Ok(())
    }

    /// Sends `req` to `peer` and decodes the answer as `T`; `None` when the
    /// peer fails, times out or answers something else.
    async fn ask<T: Serialize + DeserializeOwned>(
        &mut self,
        peer: PeerId,
        req: &SyncRequest,
    ) -> Option<T> {
        let id = self.net.request(peer, codec::encode(req)).await.ok()?;
        let deadline = Instant::now() + ASK_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = tokio::time::timeout(left, self.rx.recv()).await.ok()??;
            if let Some(answer) = self.note(ev, Some(id)) {
                let bytes = answer?;
                return codec::decode_with_limit(&bytes, SYNC_RESPONSE_MAX_BYTES).ok();
            }
        }
    }
}

/// What the join did, for the log and the caller.
pub struct Joined {
    pub head: Head,
    pub chunks: usize,
    pub pairs: u64,
    pub peers: usize,
}

/// Joins `store` (which must hold no block) from a snapshot, over a network
/// started with `net_cfg` under `network_key`. `me` is this node's key: a
/// validator at the snapshot's height is refused (validators keep all
/// history).
pub async fn join(
    store: &RocksStore,
    genesis: &Genesis,
    net_cfg: NetworkConfig,
    network_key: [u8; 32],
    me: PublicKey,
) -> Result<Joined> {
    let (net, rx) =
        aidledger_network::spawn(net_cfg, aidledger_network::identity_from_seed(network_key)?)?;
    let mut j = Joiner {
        net: net.clone(),
        rx,
        connected: BTreeSet::new(),
    };
    let out = run(&mut j, store, genesis, me).await;
    net.shutdown().await;
    out
}

/// Why one height's attempt ended: try the next height, or stop the join.
enum Attempt {
    Next(anyhow::Error),
    Fatal(anyhow::Error),
}

async fn run(
    j: &mut Joiner,
    store: &RocksStore,
    genesis: &Genesis,
    me: PublicKey,
) -> Result<Joined> {
    let genesis_f = genesis.validators.len().saturating_sub(1) / 3;
    j.wait_for_peers(genesis_f + 1).await?;

    // Offers, each height once per peer.
    let mut offers: BTreeMap<u64, BTreeSet<PeerId>> = BTreeMap::new();
    let peers: Vec<PeerId> = j.connected.iter().copied().collect();
    for p in &peers {
        if let Some(o) = j
            .ask::<SnapshotOffersResponse>(*p, &SyncRequest::SnapshotOffers)
            .await
        {
            for h in o
                .heights
                .into_iter()
                .take(aidledger_types::wire::SNAPSHOT_OFFERS_MAX)
            {
                offers.entry(h).or_default().insert(*p);
            }
        }
    }
    if offers.is_empty() {
        bail!(
            "none of the {} connected peers offers a snapshot yet (they take one every \
             snapshot.interval_blocks heights). Wait and start again, or start without \
             --from-snapshot to replay from genesis",
            peers.len()
        );
    }
    // Heights several peers offer first, highest first; then the rest. A
    // height only one peer offers (a liar's, or a checkpoint that landed
    // a block late) is tried last, and a height that fails in any way
    // (nothing checks, a source stalls or sends bad chunks) costs a try,
    // not the join.
    let mut candidates: Vec<(u64, Vec<PeerId>)> = offers
        .into_iter()
        .map(|(h, ps)| (h, ps.into_iter().collect()))
        .collect();
    candidates.sort_by_key(|(h, ps)| (std::cmp::Reverse(ps.len() >= 2), std::cmp::Reverse(*h)));
    let mut failed = Vec::new();
    for (height, offered_by) in candidates {
        tracing::info!(
            height,
            peers = offered_by.len(),
            "snapshot join: trying a snapshot"
        );
        match try_height(j, store, genesis, me, &peers, height, offered_by).await {
            Ok(joined) => return Ok(joined),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Next(e)) => {
                tracing::warn!(height, error = %format!("{e:#}"), "snapshot join: giving up on this height");
                failed.push(format!("{height}: {e:#}"));
            }
        }
    }
    bail!(
        "no snapshot offered could be joined ({}). Start again later, or without \
         --from-snapshot to replay from genesis",
        failed.join("; ")
    )
}

async fn try_height(
    j: &mut Joiner,
    store: &RocksStore,
    genesis: &Genesis,
    me: PublicKey,
    peers: &[PeerId],
    height: u64,
    offered_by: Vec<PeerId>,
) -> std::result::Result<Joined, Attempt> {
    let chain_id = &genesis.chain_id;
    let next = |e: anyhow::Error| Attempt::Next(e);
    let mut anchored = None;
    for p in &offered_by {
        match anchor(j, *p, chain_id, &genesis.validators, height).await {
            Ok(a) => {
                anchored = Some((*p, a));
                break;
            }
            Err(e) => {
                tracing::warn!(peer = %p, height, error = %format!("{e:#}"), "snapshot join: refused a peer's snapshot");
            }
        }
    }
    let Some((source, (history, changes, manifest))) = anchored else {
        return Err(next(anyhow::anyhow!(
            "no peer's snapshot at this height checks"
        )));
    };
    let set = history.at(height);
    if set.index_of(&me).is_some() || history.at(height.saturating_add(1)).index_of(&me).is_some() {
        return Err(Attempt::Fatal(anyhow::anyhow!(
            "this node's key is a validator at height {height}: validators keep all history \
             and join by replaying from genesis (start without --from-snapshot)"
        )));
    }
    // Block S names the next set when it is the last of its set: the
    // changes kept (and served to later joiners) must include that one.
    let header = &manifest.block.header;
    if header.next_validator_set_hash != header.validator_set_hash
        && !changes
            .iter()
            .any(|c| c.header.height == height && c.header.hash() == manifest.block.hash())
    {
        return Err(next(anyhow::anyhow!(
            "block {height} changes the validator set, but the peer's set changes stop before it"
        )));
    }

    // f + 1 peers name the same block at the height, with f taken from
    // the larger of the genesis set and the set at S, so a source that
    // forged a chain of changes to a small set cannot lower it. A
    // different block counts only with a certificate from the set in
    // force there: that would be two certified blocks at one height, and
    // the join stops.
    let n = set.len().max(genesis.validators.len());
    let f = n.saturating_sub(1) / 3;
    let hash = manifest.block.hash();
    let mut agree = 1usize;
    for p in peers.iter().filter(|p| **p != source) {
        let resp: Option<SyncResponse> = j
            .ask(
                *p,
                &SyncRequest::Blocks {
                    from: height,
                    max: 1,
                },
            )
            .await;
        let Some((block, cert)) = resp.and_then(|r| r.blocks.into_iter().next()) else {
            continue;
        };
        if block.height() != height {
            continue;
        }
        if block.hash() == hash {
            agree += 1;
            continue;
        }
        match aidledger_crypto::verify_certificate(&cert, chain_id, set, height, &block.hash()) {
            Ok(()) => {
                return Err(Attempt::Fatal(anyhow::anyhow!(
                    "two certified blocks at height {height}: {hash} from {source} and {} from \
                     {p}. Refusing to join; report this to the consortium",
                    block.hash()
                )))
            }
            Err(e) => tracing::warn!(
                peer = %p,
                error = %e,
                "snapshot join: a peer names another block at the height without a valid \
                 certificate; ignored"
            ),
        }
    }
    if agree < f + 1 {
        return Err(next(anyhow::anyhow!(
            "only {agree} peers name block {height} {hash}; f + 1 = {} must (connect to more \
             members, or wait and start again)",
            f + 1
        )));
    }

    // Sources: the peers offering this height whose manifest is the one
    // anchored. A peer cut differently (another build, or a liar) is not
    // asked for chunks, so no honest peer is blamed for its chunks not
    // matching someone else's manifest.
    let mut sources = vec![source];
    for p in offered_by.iter().filter(|p| **p != source) {
        let resp: Option<SnapshotManifestResponse> =
            j.ask(*p, &SyncRequest::SnapshotManifest { height }).await;
        if resp.and_then(|r| r.manifest).as_ref() == Some(&manifest) {
            sources.push(*p);
        }
    }

    // The chunks.
    store
        .snapshot_begin(genesis.hash(), codec::encode(genesis), height)
        .map_err(|e| Attempt::Fatal(e.into()))?;
    let total = manifest.chunks.len();
    let mut pairs = 0u64;
    let started = Instant::now();
    for index in 0..total {
        let chunk = fetch_chunk(j, &manifest, &mut sources, index as u32)
            .await
            .map_err(next)?;
        pairs += chunk.pairs.len() as u64;
        store
            .snapshot_put_chunk(height, &chunk.pairs)
            .map_err(|e| Attempt::Fatal(e.into()))?;
        if (index + 1) % 16 == 0 || index + 1 == total {
            tracing::info!(
                height,
                chunk = index + 1,
                of = total,
                sources = sources.len(),
                secs = format!("{:.1}", started.elapsed().as_secs_f64()),
                "snapshot join: chunks fetched and checked"
            );
        }
    }
    let kept: Vec<SetChange> = changes
        .into_iter()
        .filter(|c| c.header.height <= height)
        .collect();
    let head = store
        .snapshot_finish(&manifest, &kept)
        .map_err(|e| next(e.into()))?;
    Ok(Joined {
        head,
        chunks: total,
        pairs,
        peers: agree,
    })
}

/// The set changes and the manifest from `peer`, both checked.
async fn anchor(
    j: &mut Joiner,
    peer: PeerId,
    chain_id: &aidledger_types::ChainId,
    genesis_set: &aidledger_types::ValidatorSet,
    height: u64,
) -> Result<(SetHistory, Vec<SetChange>, SnapshotManifest)> {
    let mut history = SetHistory::genesis(genesis_set.clone());
    let mut changes: Vec<SetChange> = Vec::new();
    loop {
        let after = history.last_change();
        if after >= height {
            break;
        }
        let resp: SetChangesResponse = j
            .ask(peer, &SyncRequest::SetChanges { after })
            .await
            .context("no answer to the set changes request")?;
        let n = resp.changes.len();
        history.follow(chain_id, &resp.changes)?;
        changes.extend(resp.changes);
        if n < SET_CHANGES_MAX {
            break;
        }
    }
    let resp: SnapshotManifestResponse = j
        .ask(peer, &SyncRequest::SnapshotManifest { height })
        .await
        .context("no answer to the manifest request")?;
    let manifest = resp.manifest.context("the peer no longer serves it")?;
    anyhow::ensure!(
        manifest.height() == height,
        "it sent the manifest of height {}",
        manifest.height()
    );
    manifest.check()?;
    history.verify_manifest(chain_id, &manifest)?;
    Ok((history, changes, manifest))
}

/// One chunk, checked, from any source. A source that sends a bad chunk,
/// or takes longer than [`SLOW`] to answer, is not asked again; one that
/// answers "busy" is asked again after the others.
async fn fetch_chunk(
    j: &mut Joiner,
    manifest: &SnapshotManifest,
    sources: &mut Vec<PeerId>,
    index: u32,
) -> Result<SnapshotChunk> {
    let height = manifest.height();
    for attempt in 0..CHUNK_ATTEMPTS {
        if sources.is_empty() {
            bail!("every peer serving the snapshot at {height} sent a bad chunk, stalled or left");
        }
        let p = sources[(index as usize + attempt) % sources.len()];
        let asked = Instant::now();
        let resp: Option<SnapshotChunkResponse> = j
            .ask(p, &SyncRequest::SnapshotChunk { height, index })
            .await;
        match resp.and_then(|r| r.chunk) {
            Some(c) => match manifest.check_chunk(&c) {
                Ok(()) => return Ok(c),
                Err(e) => {
                    tracing::warn!(peer = %p, index, error = %e, "snapshot join: a bad chunk; not asking that peer again");
                    sources.retain(|s| *s != p);
                }
            },
            None if asked.elapsed() >= SLOW => {
                tracing::warn!(peer = %p, index, "snapshot join: a peer stalled; not asking it again");
                sources.retain(|s| *s != p);
            }
            // Busy: a moment, then the next source.
            None => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    bail!("chunk {index} of the snapshot at {height}: no peer sent it after {CHUNK_ATTEMPTS} attempts")
}
