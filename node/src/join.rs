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
/// How often a chunk is asked for (over all peers) before the join fails.
const CHUNK_ATTEMPTS: usize = 40;

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

    async fn wait_for_peers(&mut self) -> Result<()> {
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
        // A moment for the other members to connect too.
        let settle = Instant::now() + Duration::from_secs(2);
        while let Ok(Some(ev)) = tokio::time::timeout(
            settle.saturating_duration_since(Instant::now()),
            self.rx.recv(),
        )
        .await
        {
            self.note(ev, None);
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

async fn run(
    j: &mut Joiner,
    store: &RocksStore,
    genesis: &Genesis,
    me: PublicKey,
) -> Result<Joined> {
    let chain_id = &genesis.chain_id;
    j.wait_for_peers().await?;

    // Offers.
    let mut offers: BTreeMap<u64, Vec<PeerId>> = BTreeMap::new();
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
                offers.entry(h).or_default().push(*p);
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
    // The highest height whose snapshot checks: a peer offering a height
    // nobody else has, with nothing behind it, only costs a try.
    let mut anchored = None;
    'heights: for (&h, offered_by) in offers.iter().rev() {
        tracing::info!(
            height = h,
            peers = offered_by.len(),
            "snapshot join: trying the highest snapshot offered"
        );
        for p in offered_by {
            match anchor(j, *p, chain_id, &genesis.validators, h).await {
                Ok(a) => {
                    anchored = Some((h, offered_by.clone(), *p, a));
                    break 'heights;
                }
                Err(e) => {
                    tracing::warn!(peer = %p, height = h, error = %format!("{e:#}"), "snapshot join: refused a peer's snapshot");
                }
            }
        }
    }
    let Some((height, mut sources, source, (history, changes, manifest))) = anchored else {
        bail!("no snapshot that peers offered checks against this chain's genesis");
    };
    let set = history.at(height);
    if set.index_of(&me).is_some() {
        bail!(
            "this node's key is a validator at height {height}: validators keep all history \
             and join by replaying from genesis (start without --from-snapshot)"
        );
    }

    // f + 1 peers name the same block at the height. A different block
    // counts only with a certificate from the set in force there: that
    // would be two certified blocks at one height, and the join stops.
    let f = (set.len().saturating_sub(1)) / 3;
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
            Ok(()) => bail!(
                "two certified blocks at height {height}: {hash} from {source} and {} from \
                 {p}. Refusing to join; report this to the consortium",
                block.hash()
            ),
            Err(e) => tracing::warn!(
                peer = %p,
                error = %e,
                "snapshot join: a peer names another block at the height without a valid \
                 certificate; ignored"
            ),
        }
    }
    if agree < f + 1 {
        bail!(
            "only {agree} peers name block {height} {hash}; f + 1 = {} must (connect to more \
             members, or wait and start again)",
            f + 1
        );
    }

    // The chunks.
    store.snapshot_begin(genesis.hash(), codec::encode(genesis), height)?;
    let total = manifest.chunks.len();
    let mut pairs = 0u64;
    let started = Instant::now();
    for index in 0..total {
        let chunk = fetch_chunk(j, &manifest, &mut sources, index as u32).await?;
        pairs += chunk.pairs.len() as u64;
        store.snapshot_put_chunk(height, &chunk.pairs)?;
        if (index + 1) % 16 == 0 || index + 1 == total {
            tracing::info!(
                height,
                chunk = index + 1,
                of = total,
                secs = format!("{:.1}", started.elapsed().as_secs_f64()),
                "snapshot join: chunks fetched and checked"
            );
        }
    }
    let kept: Vec<SetChange> = changes
        .into_iter()
        .filter(|c| c.header.height <= height)
        .collect();
    let head = store.snapshot_finish(&manifest, &kept)?;
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

/// One chunk, checked, from any source; a source that sends a bad chunk is
/// dropped.
async fn fetch_chunk(
    j: &mut Joiner,
    manifest: &SnapshotManifest,
    sources: &mut Vec<PeerId>,
    index: u32,
) -> Result<SnapshotChunk> {
    let height = manifest.height();
    for attempt in 0..CHUNK_ATTEMPTS {
        if sources.is_empty() {
            bail!("every peer offering the snapshot at {height} sent a bad chunk or left");
        }
        let p = sources[(index as usize + attempt) % sources.len()];
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
            // Busy, or gone: a moment, then the next source.
            None => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    bail!("chunk {index} of the snapshot at {height}: no peer sent it after {CHUNK_ATTEMPTS} attempts")
}
