//! The only crate that imports libp2p.
//!
//! A permissioned network for one consortium:
//!
//! * TCP, optionally wrapped in a pre-shared-key private network (pnet),
//!   then noise and yamux;
//! * gossipsub on two topics, transactions and consensus, each in a
//!   gossipsub behaviour of its own (its own protocol id, so its own
//!   streams and send queue to each peer: consensus never waits behind
//!   transaction gossip, which is shed first), with content-addressed
//!   message ids and an explicit maximum message size. Consensus payloads
//!   carry a per-publish counter so byte-identical resends arrive.
//!   Messages name their author but are not signed by gossipsub (ADR 009,
//!   amendment): every payload carries its own signature (transactions by
//!   their operators, consensus messages by their validators), each hop is
//!   an authenticated noise connection to an allow-listed member, and
//!   gossipsub's signature on every copy of every message was 4 % of a
//!   validator's CPU under load;
//! * versioned wire protocols (ADR 017, part 3): one topic per wire
//!   version a node speaks (`/aidledger/{chain}/txs/{v}`, `.../consensus/{v}`),
//!   publishing on the newest each peer is subscribed to, and sync ids
//!   `.../sync/{v}` offered newest first; identify announces the range
//!   (`aidledger/<release> wire=<min>-<max>`) and a member with no common
//!   version is disconnected. Nodes upgrade one at a time across a wire
//!   change;
//! * request-response for block sync; identify and ping;
//! * an allow-list: only peers whose keys are in the consortium's genesis
//!   may hold a connection. A connection from any other peer is closed as
//!   soon as the noise handshake reveals its key, so nothing it sends reaches
//!   the mempool or consensus. Gossip that names a non-member as its author
//!   is rejected too, and so is gossip without an author. The author is
//!   what the forwarding member says; what is authenticated is the member
//!   that forwarded it, and the payload's own signatures.
//!
//! The node talks to the network through a bounded command channel and two
//! bounded event channels: consensus and sync events apply backpressure;
//! transaction gossip is dropped and counted when the node is behind.

mod codec;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, identify, identity, noise, ping, pnet, tcp, yamux,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, Transport};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use aidledger_types::wire::{
    GOSSIP_MAX_BYTES, SYNC_REQUEST_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES, WIRE_MIN, WIRE_VERSION,
};
pub use libp2p::{Multiaddr as Addr, PeerId as NetPeerId};

/// Capacity of each channel between the network task and the node.
pub const CHANNEL_CAPACITY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network key: {0}")]
    Key(String),
    #[error("invalid address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("network task has stopped")]
    Stopped,
}

/// The two gossip topics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Topic {
    Txs,
    Consensus,
}

#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Chain id: part of every topic and protocol name, so two consortia on
    /// one host never mix.
    pub chain_id: String,
    pub listen: Multiaddr,
    /// Peers to dial, each with a `/p2p/<peer id>` suffix.
    pub bootstrap: Vec<Multiaddr>,
    /// Every peer allowed to connect (all consortium members but us).
    pub allowed: Vec<PeerId>,
    /// Optional pre-shared consortium key for a libp2p private network.
    pub psk: Option<[u8; 32]>,
    pub gossip_max_bytes: usize,
    /// How often to redial bootstrap peers that are not connected.
    pub redial_interval: Duration,
    /// How often each connection is pinged. A ping unanswered for three
    /// intervals closes the connection: a link that died without a FIN
    /// or RST (a cut cable, a partition, a paused peer) would otherwise
    /// keep looking connected, and messages queued on it would wait for
    /// TCP's backed-off retransmissions long after the link healed. Once
    /// closed, the redial loop reconnects within one redial interval of
    /// the link coming back.
    pub ping_interval: Duration,
    /// Where this run's consensus-publish counter starts. The node draws
    /// it at random, so a restarted node's frames never repeat the ids of
    /// its frames from before the restart (peers remember ids for 120 s).
    pub publish_seq_start: u64,
    /// Bounds on connections, enforced before any of them costs more
    /// than a socket.
    pub limits: PeerLimits,
    /// The wire versions this node speaks (ADR 017, part 3): normally
    /// [`WIRE_MIN`] to [`WIRE_VERSION`]. A test knob lowers `wire_max` to
    /// stand in for the previous release.
    pub wire_min: u32,
    pub wire_max: u32,
}

/// Connection bounds of the peer-to-peer side. Members are few, so the
/// defaults leave room for every member twice over; what they bound is
/// what strangers can make a node spend: handshakes in flight (before the
/// allow-list can tell who is calling) and sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Established connections, in and out together.
    pub max_connections: u32,
    /// Established connections with one peer (two dial each other at
    /// once now and then, so at least 2).
    pub max_per_peer: u32,
    /// Incoming connections still in their handshake.
    pub max_pending_incoming: u32,
    /// Outgoing dials still in their handshake.
    pub max_pending_outgoing: u32,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_connections: 256,
            max_per_peer: 2,
            max_pending_incoming: 32,
            max_pending_outgoing: 64,
        }
    }
}

/// Bytes in front of every consensus gossip payload: a per-publish
/// counter, outside the signed message. Gossipsub names a message by the
/// hash of its bytes and drops a repeat for two minutes, and PBFT's
/// retransmissions (view-change resends, replies to stragglers, new-view
/// resends) are byte-identical: without the counter a resend was dropped
/// by every peer, and a healed partition could stand still for two
/// minutes (issue 13). Receivers strip it; a payload too short to hold it
/// is rejected.
pub const CONSENSUS_FRAME_BYTES: usize = 8;

/// What the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    Gossip {
        topic: Topic,
        /// The member that authored the message.
        author: PeerId,
        data: Vec<u8>,
    },
    SyncRequest {
        peer: PeerId,
        data: Vec<u8>,
        reply: ReplyToken,
    },
    SyncResponse {
        peer: PeerId,
        request: u64,
        data: Vec<u8>,
    },
    SyncFailed {
        peer: PeerId,
        request: u64,
        reason: String,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// The network is listening on this address (with port 0 in the
    /// config, this says which port the OS chose).
    Listening(Multiaddr),
}

/// An inbound sync request's reply slot. Dropping it without replying
/// tells the requester the request failed.
#[derive(Debug)]
pub struct ReplyToken(ResponseChannel<Vec<u8>>);

#[derive(Debug)]
enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        id: u64,
    },
    Reply {
        token: ReplyToken,
        data: Vec<u8>,
    },
    SetBlocked {
        peer: PeerId,
        blocked: bool,
    },
    SetMembers(Vec<PeerId>),
    /// Stop; the sender is told once the swarm, its listeners and its
    /// connections are gone.
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

/// libp2p's own metrics (connections, their durations and errors,
/// gossipsub, identify and ping events), registered once in the node's
/// registry and kept across network restarts, as [`NetStats`] is.
pub struct Libp2pMetrics(libp2p::metrics::Metrics);

impl Libp2pMetrics {
    /// Registers libp2p's metrics under `libp2p_` in `registry`.
    pub fn new(registry: &mut libp2p::metrics::Registry) -> Libp2pMetrics {
        Libp2pMetrics(libp2p::metrics::Metrics::new(registry))
    }
}

impl std::fmt::Debug for Libp2pMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Libp2pMetrics")
    }
}

/// Counters the node exports as metrics.
#[derive(Debug, Default)]
pub struct NetStats {
    /// libp2p's own metrics, when the node exports them.
    pub libp2p: Option<Arc<Libp2pMetrics>>,
    pub gossip_in: AtomicU64,
    pub gossip_rejected: AtomicU64,
    pub tx_gossip_dropped: AtomicU64,
    pub publish_failed: AtomicU64,
    pub denied_connections: AtomicU64,
    /// Connections refused, or dials not made, because a
    /// [`PeerLimits`] bound was reached (also counted in
    /// `denied_connections` when incoming).
    pub limited_connections: AtomicU64,
    /// Connections closed because a ping went unanswered.
    pub ping_failures: AtomicU64,
    /// Gossip messages and sync messages received in the previous wire
    /// version (from, or for, members still on the previous release), and
    /// in the current one.
    pub wire_previous_in: AtomicU64,
    pub wire_current_in: AtomicU64,
    /// Members disconnected because they speak no wire version this node
    /// speaks.
    pub wire_refused: AtomicU64,
    /// Connections this node dialled that the other side closed before
    /// confirming them (its allow-list refused this node: not, or no
    /// longer, in its node registry).
    pub refused_by_peer: AtomicU64,
}

/// The node's handle on the network task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    peers: Arc<Mutex<BTreeSet<PeerId>>>,
    next_request: Arc<AtomicU64>,
    pub stats: Arc<NetStats>,
    local_peer_id: PeerId,
    /// `local_peer_id` in base58, formatted once: the node publishes its
    /// status after every event, and the encoding is not free.
    local_peer_text: Arc<str>,
}

impl NetworkHandle {
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), NetError> {
        self.commands
            .send(Command::Publish { topic, data })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Publishes without waiting; returns false if the queue is full.
    pub fn try_publish(&self, topic: Topic, data: Vec<u8>) -> bool {
        self.commands
            .try_send(Command::Publish { topic, data })
            .is_ok()
    }

    /// Sends a sync request; the answer arrives as `SyncResponse` or
    /// `SyncFailed` with the returned id.
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<u64, NetError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.commands
            .send(Command::Request { peer, data, id })
            .await
            .map_err(|_| NetError::Stopped)?;
        Ok(id)
    }

    pub async fn reply(&self, token: ReplyToken, data: Vec<u8>) -> Result<(), NetError> {
        self.commands
            .send(Command::Reply { token, data })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Blocks or unblocks a member at the application layer (used by fault
    /// drills to partition a node without touching the host's firewall).
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), NetError> {
        self.commands
            .send(Command::SetBlocked { peer, blocked })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Replaces the allow-list (the node registry changed, ADR 017): new
    /// members are admitted, and the connections of members no longer
    /// listed are closed at once and refused from then on.
    pub async fn set_members(&self, members: Vec<PeerId>) -> Result<(), NetError> {
        self.commands
            .send(Command::SetMembers(members))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Stops the network task and returns once its swarm is dropped: its
    /// listen address is free again (a node changing its identity binds it
    /// at once, ADR 017) and its connections are closed.
    pub async fn shutdown(&self) {
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// The peer id this network runs under.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// [`NetworkHandle::local_peer_id`] as text.
    pub fn local_peer_text(&self) -> &str {
        &self.local_peer_text
    }

    /// How many peers are connected now, without copying their ids.
    pub fn connected_peer_count(&self) -> usize {
        self.peers.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.peers
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The libp2p identity for a node key seed (the node's ed25519 consensus
/// key doubles as its network identity, so genesis fixes both).
pub fn identity_from_seed(seed: [u8; 32]) -> Result<identity::Keypair, NetError> {
    let mut seed = seed;
    identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|e| NetError::Key(e.to_string()))
}

/// The peer id that belongs to an ed25519 node key.
pub fn peer_id_of(key: &aidledger_types::PublicKey) -> Result<PeerId, NetError> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(&key.0)
        .map_err(|e| NetError::Key(e.to_string()))?;
    Ok(identity::PublicKey::from(pk).to_peer_id())
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Transaction gossip.
    gossip: gossipsub::Behaviour,
    /// Consensus gossip: a gossipsub of its own (its own protocol id, so
    /// its own streams and send queue to each peer). Consensus never waits
    /// behind transaction gossip: when a peer's transaction queue is full,
    /// transactions are shed, and consensus messages still go out.
    cons: gossipsub::Behaviour,
    sync: request_response::Behaviour<codec::SyncCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn topic_name(chain: &str, t: Topic, version: u32) -> String {
    match t {
        Topic::Txs => format!("/aidledger/{chain}/txs/{version}"),
        Topic::Consensus => format!("/aidledger/{chain}/consensus/{version}"),
    }
}

/// One gossip topic per wire version this node speaks, oldest first.
#[derive(Clone)]
struct VersionedTopic {
    version: u32,
    topic: IdentTopic,
    hash: gossipsub::TopicHash,
}

fn versioned_topics(chain: &str, t: Topic, min: u32, max: u32) -> Vec<VersionedTopic> {
    (min..=max)
        .map(|version| {
            let topic = IdentTopic::new(topic_name(chain, t, version));
            VersionedTopic {
                version,
                hash: topic.hash(),
                topic,
            }
        })
        .collect()
}

/// Where to publish so that every member gets the message in a version it
/// speaks: the newest of our topics each subscribed peer is on. With every
/// member upgraded that is the newest topic alone; while some are on the
/// previous release, both (the receivers drop the second copy).
fn publish_targets(gossip: &gossipsub::Behaviour, topics: &[VersionedTopic]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for (_, subscribed) in gossip.all_peers() {
        if let Some(i) = topics.iter().rposition(|t| subscribed.contains(&&t.hash)) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    if out.is_empty() {
        out.push(topics.len() - 1);
    }
    out
}

fn build_transport(
    key: &identity::Keypair,
    psk: Option<[u8; 32]>,
    dead_link: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NetError> {
    let noise = noise::Config::new(key).map_err(|e| NetError::Transport(e.to_string()))?;
    // TCP_USER_TIMEOUT: a connection whose sent data stays unacknowledged
    // this long is aborted by the kernel. Without it a link that died
    // silently (a partition) keeps its connection "open" for as long as
    // TCP's backed-off retransmissions last: closing it gracefully waits
    // on the same dead link, the swarm still counts the peer as
    // connected, so nothing redials, and after the link heals the
    // messages wait for the next retransmission (51 s after a 60 s split
    // in the namespace drill). The pings every `ping_interval` make sure
    // there is always data in flight to time out.
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true)).map(
        move |stream: tcp::tokio::TcpStream, _| {
            if let Err(e) = socket2::SockRef::from(&stream.0).set_tcp_user_timeout(Some(dead_link))
            {
                tracing::warn!(error = %e, "cannot set TCP_USER_TIMEOUT");
            }
            stream
        },
    );
    let mut yamux_cfg = yamux::Config::default();
    yamux_cfg.set_max_num_streams(256);
    Ok(match psk {
        Some(psk) => {
            let psk = pnet::PreSharedKey::new(psk);
            tcp.and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket))
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux_cfg)
                .timeout(Duration::from_secs(20))
                .boxed()
        }
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux_cfg)
            .timeout(Duration::from_secs(20))
            .boxed(),
    })
}

/// Messages one connection may buffer for transaction gossip before
/// further ones are dropped (shed first under load).
const TX_QUEUE_LEN: usize = 2_000;
/// The same for consensus gossip, which has its own streams.
const CONSENSUS_QUEUE_LEN: usize = 5_000;

/// Most message ids in one IHAVE or IWANT per topic. 200 ids of 32
/// bytes, with their framing, take about 7 KB, so the IHAVEs for a
/// behaviour's two topics (this wire version's and the previous one's)
/// stay within the 16 KiB of control messages that gossipsub accepts in
/// one RPC by default.
const IHAVE_IDS_MAX: usize = 200;

/// The gossipsub configuration shared by the two behaviours, with the
/// protocol id prefix that keeps their streams apart.
fn gossip_config(
    max: usize,
    protocol: &'static str,
    queue_len: usize,
) -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .protocol_id_prefix(protocol)
        .connection_handler_queue_len(queue_len)
        .max_transmit_size(max)
        // Author and sequence number are checked when present; there is
        // no gossipsub signature to check (see the crate docs).
        .validation_mode(gossipsub::ValidationMode::Permissive)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        // A consortium is small: keep every member in the mesh.
        .mesh_n_low(1)
        .mesh_n(8)
        .mesh_n_high(16)
        .mesh_outbound_min(0)
        // libp2p's defaults send IHAVEs of up to 5,000 message ids
        // (about 170 KB) but accept control messages of only 16 KiB in
        // one RPC, and a member that receives more drops the whole
        // inbound stream, with the messages on it. IHAVEs go to peers
        // outside the mesh: after a reconnect, or from a node of another
        // release. Ours name at most IHAVE_IDS_MAX ids, and we accept
        // control messages up to the RPC size limit, so a node of an
        // older release (which does not bound its IHAVEs) cannot make us
        // drop its stream (ADR 009 amendment).
        .max_control_messages_sent(IHAVE_IDS_MAX)
        .max_control_message_size(max)
        .flood_publish(true)
        .duplicate_cache_time(Duration::from_secs(120))
        // The topic is part of the id: the same bytes published on two
        // versions' topics are two messages (ADR 017, part 3).
        .message_id_fn(|m: &gossipsub::Message| {
            let mut h = Sha256::new();
            h.update(m.topic.as_str().as_bytes());
            h.update([0u8]);
            h.update(&m.data);
            MessageId::from(h.finalize().to_vec())
        })
        .build()
        .map_err(|e| NetError::Transport(e.to_string()))
}

/// Hands a swarm event, and the protocol events inside it, to libp2p's
/// recorders.
fn record(m: &libp2p::metrics::Metrics, ev: &SwarmEvent<BehaviourEvent>) {
    use libp2p::metrics::Recorder;
    m.record(ev);
    match ev {
        SwarmEvent::Behaviour(BehaviourEvent::Gossip(e) | BehaviourEvent::Cons(e)) => m.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => m.record(e),
        _ => {}
    }
}

/// Starts the network task on the current tokio runtime.
///
/// Returns the handle and the event receiver.
pub fn spawn(
    config: NetworkConfig,
    key: identity::Keypair,
) -> Result<(NetworkHandle, mpsc::Receiver<NetEvent>), NetError> {
    spawn_with_stats(config, key, Arc::new(NetStats::default()))
}

/// As [`spawn`], counting into `stats`: a network started again under a
/// new identity (ADR 017) goes on counting where the old one stopped.
pub fn spawn_with_stats(
    config: NetworkConfig,
    key: identity::Keypair,
    stats: Arc<NetStats>,
) -> Result<(NetworkHandle, mpsc::Receiver<NetEvent>), NetError> {
    let local_peer_id = key.public().to_peer_id();
    let max = config.gossip_max_bytes.min(GOSSIP_MAX_BYTES);
    let gossip_cfg = gossip_config(max, "/aidledger/meshsub", TX_QUEUE_LEN)?;
    let cons_cfg = gossip_config(max, "/aidledger/consensus-meshsub", CONSENSUS_QUEUE_LEN)?;

    let transport = build_transport(&key, config.psk, config.ping_interval.saturating_mul(3))?;
    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for p in &config.allowed {
        allow.allow_peer(*p);
    }
    let gossip = gossipsub::Behaviour::new(MessageAuthenticity::Author(local_peer_id), gossip_cfg)
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let cons = gossipsub::Behaviour::new(MessageAuthenticity::Author(local_peer_id), cons_cfg)
        .map_err(|e| NetError::Transport(e.to_string()))?;
    if config.wire_min == 0 || config.wire_min > config.wire_max || config.wire_max > WIRE_VERSION {
        return Err(NetError::Transport(format!(
            "wire versions {}-{} are not within 1-{WIRE_VERSION}",
            config.wire_min, config.wire_max
        )));
    }
    // Newest first: a stream negotiates the first one both ends speak.
    let mut sync_protocols = Vec::new();
    for v in (config.wire_min..=config.wire_max).rev() {
        let p = StreamProtocol::try_from_owned(format!("/aidledger/{}/sync/{v}", config.chain_id))
            .map_err(|e| NetError::Transport(e.to_string()))?;
        sync_protocols.push((p, ProtocolSupport::Full));
    }
    let sync = request_response::Behaviour::with_codec(
        codec::SyncCodec::new(stats.clone()),
        sync_protocols,
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(32),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(
            format!("/aidledger/{}/{}", config.chain_id, config.wire_max),
            key.public(),
        )
        .with_agent_version(aidledger_types::wire::agent_string(
            env!("CARGO_PKG_VERSION"),
            config.wire_min,
            config.wire_max,
        )),
    );
    let ping = ping::Behaviour::new(
        ping::Config::new()
            .with_interval(config.ping_interval)
            .with_timeout(config.ping_interval.saturating_mul(3)),
    );
    let l = config.limits;
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(l.max_connections))
            .with_max_established_per_peer(Some(l.max_per_peer))
            .with_max_pending_incoming(Some(l.max_pending_incoming))
            .with_max_pending_outgoing(Some(l.max_pending_outgoing)),
    );
    let behaviour = Behaviour {
        limits,
        allow,
        gossip,
        cons,
        sync,
        identify,
        ping,
    };
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();

    let txs_topics = versioned_topics(
        &config.chain_id,
        Topic::Txs,
        config.wire_min,
        config.wire_max,
    );
    let cons_topics = versioned_topics(
        &config.chain_id,
        Topic::Consensus,
        config.wire_min,
        config.wire_max,
    );
    for t in &txs_topics {
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&t.topic)
            .map_err(|e| NetError::Transport(e.to_string()))?;
    }
    for t in &cons_topics {
        swarm
            .behaviour_mut()
            .cons
            .subscribe(&t.topic)
            .map_err(|e| NetError::Transport(e.to_string()))?;
    }
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| NetError::Address {
            addr: config.listen.to_string(),
            reason: e.to_string(),
        })?;

    let (cmd_tx, cmd_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let handle = NetworkHandle {
        commands: cmd_tx,
        peers: Arc::new(Mutex::new(BTreeSet::new())),
        next_request: Arc::new(AtomicU64::new(1)),
        stats,
        local_peer_id,
        local_peer_text: local_peer_id.to_string().into(),
    };
    let config_seq_start = config.publish_seq_start;
    let task = Task {
        swarm,
        config,
        txs_topics,
        cons_topics,
        events: ev_tx,
        peers: handle.peers.clone(),
        stats: handle.stats.clone(),
        pending: Default::default(),
        blocked: BTreeSet::new(),
        publish_seq: config_seq_start,
        confirmed: BTreeSet::new(),
        refusals: BTreeMap::new(),
    };
    tokio::spawn(task.run(cmd_rx));
    Ok((handle, ev_rx))
}

struct Task {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    txs_topics: Vec<VersionedTopic>,
    cons_topics: Vec<VersionedTopic>,
    events: mpsc::Sender<NetEvent>,
    peers: Arc<Mutex<BTreeSet<PeerId>>>,
    stats: Arc<NetStats>,
    /// Outstanding sync requests: libp2p's id to ours. Bounded by the
    /// request timeout and max concurrent streams.
    pending: std::collections::BTreeMap<OutboundRequestId, u64>,
    blocked: BTreeSet<PeerId>,
    /// The next consensus publish's frame counter.
    publish_seq: u64,
    /// Peers counted as connected: an open connection the other side has
    /// confirmed by answering on it (identify or ping). A member whose
    /// allow-list refuses this node completes the transport handshake and
    /// then closes the connection at once; until confirmed, a connection
    /// is not a peer, so such a member is never reported, even briefly.
    confirmed: BTreeSet<PeerId>,
    /// Bootstrap peers that closed this node's last connections before
    /// confirming them, and when to dial them next (bounded by the
    /// bootstrap list).
    refusals: BTreeMap<PeerId, Refusal>,
}

/// A bootstrap peer refusing this node: how many connections in a row it
/// closed unconfirmed, and the earliest next dial.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    streak: u32,
    next_dial: tokio::time::Instant,
}

/// The longest back-off of a refusing peer's redials, in redial
/// intervals (1, 2, 4, then 8 intervals between dials).
const REFUSED_BACKOFF_MAX_SHIFT: u32 = 3;

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut redial = tokio::time::interval(self.config.redial_interval);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown(done)) => break Some(done),
                    None => break None,
                    Some(cmd) => self.command(cmd),
                },
                ev = self.swarm.select_next_some() => {
                    if self.swarm_event(ev).await.is_err() {
                        break None;
                    }
                }
                _ = redial.tick() => self.redial(),
            }
        };
        drop(self);
        tracing::debug!("network task stopped");
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn redial(&mut self) {
        let connected: BTreeSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for addr in self.config.bootstrap.clone() {
            let Some(peer) = peer_of_addr(&addr) else {
                continue;
            };
            let backing_off = self
                .refusals
                .get(&peer)
                .is_some_and(|r| tokio::time::Instant::now() < r.next_dial);
            if peer == *self.swarm.local_peer_id()
                || connected.contains(&peer)
                || self.blocked.contains(&peer)
                || backing_off
            {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::trace!(%peer, error = %e, "dial failed");
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { topic, data } => {
                let data = match topic {
                    Topic::Txs => data,
                    Topic::Consensus => {
                        let seq = self.publish_seq;
                        self.publish_seq = seq.wrapping_add(1);
                        let mut framed = Vec::with_capacity(CONSENSUS_FRAME_BYTES + data.len());
                        framed.extend_from_slice(&seq.to_be_bytes());
                        framed.extend_from_slice(&data);
                        framed
                    }
                };
                let b = self.swarm.behaviour_mut();
                let (gossip, topics) = match topic {
                    Topic::Txs => (&mut b.gossip, &self.txs_topics),
                    Topic::Consensus => (&mut b.cons, &self.cons_topics),
                };
                let targets = publish_targets(gossip, topics);
                let last = targets.len() - 1;
                let mut data = Some(data);
                for (n, i) in targets.into_iter().enumerate() {
                    let bytes = if n == last {
                        data.take().unwrap_or_default()
                    } else {
                        data.clone().unwrap_or_default()
                    };
                    match gossip.publish(topics[i].topic.clone(), bytes) {
                        Ok(_) => {}
                        // No peers yet, or a duplicate of something already
                        // published: neither is an error for the node.
                        Err(gossipsub::PublishError::Duplicate)
                        | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                        Err(e) => {
                            self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "publish failed");
                        }
                    }
                }
            }
            Command::Request { peer, data, id } => {
                let rid = self.swarm.behaviour_mut().sync.send_request(&peer, data);
                self.pending.insert(rid, id);
            }
            Command::Reply { token, data } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(token.0, data)
                    .is_err()
                {
                    tracing::debug!("sync reply dropped: requester went away");
                }
            }
            Command::SetBlocked { peer, blocked } => {
                if blocked {
                    self.blocked.insert(peer);
                    self.swarm.behaviour_mut().allow.disallow_peer(peer);
                } else {
                    self.blocked.remove(&peer);
                    if self.config.allowed.contains(&peer) {
                        self.swarm.behaviour_mut().allow.allow_peer(peer);
                    }
                }
            }
            Command::SetMembers(members) => {
                let new: BTreeSet<PeerId> = members.into_iter().collect();
                let old: BTreeSet<PeerId> = self.config.allowed.iter().copied().collect();
                for p in new.difference(&old) {
                    if !self.blocked.contains(p) {
                        self.swarm.behaviour_mut().allow.allow_peer(*p);
                    }
                    tracing::info!(peer = %p, "member admitted");
                }
                for p in old.difference(&new) {
                    // Disallowing closes the peer's open connections too.
                    self.swarm.behaviour_mut().allow.disallow_peer(*p);
                    tracing::info!(peer = %p, "member removed; its connections are closed");
                }
                self.config.allowed = new.into_iter().collect();
            }
            Command::Shutdown(_) => {}
        }
    }

    /// Sends an event to the node. The returned future owns a sender
    /// clone rather than borrowing the task, whose swarm is not `Sync`.
    fn emit(&self, ev: NetEvent) -> impl std::future::Future<Output = Result<(), ()>> + Send {
        let events = self.events.clone();
        async move { events.send(ev).await.map_err(|_| ()) }
    }

    async fn swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) -> Result<(), ()> {
        if let Some(m) = &self.stats.libp2p {
            record(&m.0, &ev);
        }
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.emit(NetEvent::Listening(address)).await?;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => {
                tracing::debug!(peer = %peer_id, "connection open; a peer once it answers on it");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                endpoint,
                ..
            } => {
                if self.confirmed.remove(&peer_id) {
                    if let Ok(mut p) = self.peers.lock() {
                        p.remove(&peer_id);
                    }
                    tracing::info!(peer = %peer_id, "peer disconnected");
                    self.emit(NetEvent::PeerDisconnected(peer_id)).await?;
                } else if endpoint.is_dialer() {
                    self.refused(peer_id);
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                self.stats
                    .denied_connections
                    .fetch_add(1, Ordering::Relaxed);
                let limited = matches!(
                    &error,
                    libp2p::swarm::ListenError::Denied { cause }
                        if cause.downcast_ref::<connection_limits::Exceeded>().is_some()
                );
                if limited {
                    self.stats
                        .limited_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "incoming connection refused: a connection limit is reached");
                } else {
                    tracing::debug!(%error, "incoming connection refused");
                }
            }
            SwarmEvent::OutgoingConnectionError {
                error: libp2p::swarm::DialError::Denied { cause },
                ..
            } if cause
                .downcast_ref::<connection_limits::Exceeded>()
                .is_some() =>
            {
                self.stats
                    .limited_connections
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%cause, "dial not made: a connection limit is reached");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.on_gossip(Topic::Txs, propagation_source, message_id, message)
                    .await?
            }
            SwarmEvent::Behaviour(BehaviourEvent::Cons(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.on_gossip(Topic::Consensus, propagation_source, message_id, message)
                    .await?
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.sync_event(ev).await?,
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // The wire check may disconnect (a side effect): not a
                // match guard.
                let kept = self.check_wire(peer_id, &info.agent_version);
                if kept {
                    self.confirm(peer_id).await?;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            })) => self.confirm(peer).await?,
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) => {
                // libp2p's ping only reports a failure; closing the
                // connection is ours to do (see `ping_interval`).
                tracing::info!(%peer, %error, "ping failed; closing the connection");
                self.stats.ping_failures.fetch_add(1, Ordering::Relaxed);
                self.swarm.close_connection(connection);
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts a peer as connected once it has answered on an open
    /// connection (its identify, or a ping), and tells the node.
    async fn confirm(&mut self, peer: PeerId) -> Result<(), ()> {
        if !self.swarm.is_connected(&peer) || !self.confirmed.insert(peer) {
            return Ok(());
        }
        self.refusals.remove(&peer);
        if let Ok(mut p) = self.peers.lock() {
            p.insert(peer);
        }
        tracing::info!(%peer, "peer connected");
        self.emit(NetEvent::PeerConnected(peer)).await
    }

    /// A connection this node dialled was closed before the other side
    /// confirmed it: the member refuses this node (not, or no longer, in
    /// its registry; or no shared wire version). Said once per streak,
    /// and the redials of that peer back off (1, 2, 4, 8 redial
    /// intervals), so a refused node does not cost each member a
    /// handshake every interval.
    fn refused(&mut self, peer: PeerId) {
        self.stats.refused_by_peer.fetch_add(1, Ordering::Relaxed);
        let known = self
            .config
            .bootstrap
            .iter()
            .any(|a| peer_of_addr(a) == Some(peer));
        if !known {
            tracing::debug!(%peer, "connection closed before the peer confirmed it");
            return;
        }
        let streak = self.refusals.get(&peer).map_or(0, |r| r.streak) + 1;
        let wait =
            self.config.redial_interval * (1u32 << (streak - 1).min(REFUSED_BACKOFF_MAX_SHIFT));
        self.refusals.insert(
            peer,
            Refusal {
                streak,
                next_dial: tokio::time::Instant::now() + wait,
            },
        );
        if streak == 1 {
            tracing::info!(
                %peer,
                "the member closed this node's connection before confirming it: this node is \
                 not (or no longer) in its node registry, or they share no wire version; \
                 dialing it again, backing off"
            );
        } else {
            tracing::debug!(%peer, streak, ?wait, "refused again; backing off");
        }
    }

    /// Disconnects a member that speaks no wire version this node speaks
    /// (it announces its range in its identify agent string; one that
    /// announces none predates versioning and speaks version 1). Returns
    /// whether the member is kept.
    fn check_wire(&mut self, peer: PeerId, agent: &str) -> bool {
        let theirs = aidledger_types::wire::parse_agent_wire(agent).unwrap_or((1, 1));
        let ours = (self.config.wire_min, self.config.wire_max);
        if !aidledger_types::wire::ranges_overlap(ours, theirs) {
            self.stats.wire_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                %peer,
                agent,
                ours = format!("{}-{}", ours.0, ours.1),
                theirs = format!("{}-{}", theirs.0, theirs.1),
                "the member speaks no wire version this node speaks; disconnected. Upgrade the \
                 older of the two nodes (the operator guide's upgrades section)"
            );
            let _ = self.swarm.disconnect_peer_id(peer);
            return false;
        }
        true
    }

    /// A gossip message that arrived through the behaviour for `via`:
    /// accepted (and forwarded) only on that behaviour's own topics (one
    /// per wire version this node speaks), from an
    /// author and a forwarder that are members, and for consensus only
    /// with its frame counter.
    async fn on_gossip(
        &mut self,
        via: Topic,
        propagation_source: PeerId,
        message_id: MessageId,
        message: gossipsub::Message,
    ) -> Result<(), ()> {
        self.stats.gossip_in.fetch_add(1, Ordering::Relaxed);
        let topics = match via {
            Topic::Txs => &self.txs_topics,
            Topic::Consensus => &self.cons_topics,
        };
        let version = topics
            .iter()
            .find(|t| t.hash == message.topic)
            .map(|t| t.version);
        match version {
            Some(v) if v < WIRE_VERSION => &self.stats.wire_previous_in,
            _ => &self.stats.wire_current_in,
        }
        .fetch_add(1, Ordering::Relaxed);
        let author = message.source;
        let member = |p: &PeerId| self.config.allowed.contains(p);
        let framed = via != Topic::Consensus || message.data.len() >= CONSENSUS_FRAME_BYTES;
        let verdict = match author {
            Some(a) if version.is_some() && framed && member(&a) && member(&propagation_source) => {
                MessageAcceptance::Accept
            }
            _ => MessageAcceptance::Reject,
        };
        let accepted = verdict == MessageAcceptance::Accept;
        let b = self.swarm.behaviour_mut();
        let gossip = match via {
            Topic::Txs => &mut b.gossip,
            Topic::Consensus => &mut b.cons,
        };
        gossip.report_message_validation_result(&message_id, &propagation_source, verdict);
        let (true, Some(author)) = (accepted, author) else {
            self.stats.gossip_rejected.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let data = match via {
            Topic::Txs => message.data,
            Topic::Consensus => message.data[CONSENSUS_FRAME_BYTES..].to_vec(),
        };
        let ev = NetEvent::Gossip {
            topic: via,
            author,
            data,
        };
        match via {
            Topic::Consensus => self.emit(ev).await?,
            Topic::Txs => {
                if self.events.try_send(ev).is_err() {
                    self.stats.tx_gossip_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    async fn sync_event(
        &mut self,
        ev: request_response::Event<Vec<u8>, Vec<u8>>,
    ) -> Result<(), ()> {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.emit(NetEvent::SyncRequest {
                        peer,
                        data: request,
                        reply: ReplyToken(channel),
                    })
                    .await?
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(id) = self.pending.remove(&request_id) {
                        self.emit(NetEvent::SyncResponse {
                            peer,
                            request: id,
                            data: response,
                        })
                        .await?
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(id) = self.pending.remove(&request_id) {
                    self.emit(NetEvent::SyncFailed {
                        peer,
                        request: id,
                        reason: error.to_string(),
                    })
                    .await?
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The peer id in a `/p2p/<id>` suffix.
pub fn peer_of_addr(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Parses a multiaddr with a clear error.
pub fn parse_addr(s: &str) -> Result<Multiaddr, NetError> {
    s.parse()
        .map_err(|e: libp2p::multiaddr::Error| NetError::Address {
            addr: s.chars().take(200).collect(),
            reason: e.to_string(),
        })
}

/// A loopback listen address for a port.
pub fn loopback_addr(port: u16) -> Multiaddr {
    let mut a = Multiaddr::empty();
    a.push(libp2p::multiaddr::Protocol::Ip4(
        std::net::Ipv4Addr::LOCALHOST,
    ));
    a.push(libp2p::multiaddr::Protocol::Tcp(port));
    a
}

/// Appends `/p2p/<peer>` to an address.
pub fn with_peer(mut addr: Multiaddr, peer: PeerId) -> Multiaddr {
    addr.push(libp2p::multiaddr::Protocol::P2p(peer));
    addr
}

/// A short stable fingerprint of a pre-shared key, safe to log.
pub fn psk_fingerprint(psk: &[u8; 32]) -> String {
    pnet::PreSharedKey::new(*psk).fingerprint().to_string()
}

#[doc(hidden)]
pub fn hex_peer(p: &PeerId) -> String {
    hex::encode(p.to_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Bytes an id takes in an IHAVE: 32 bytes of SHA-256 and its
    /// protobuf tag and length.
    const ID_WIRE_BYTES: usize = 34;
    /// gossipsub's default limit on the control messages of one RPC, which
    /// older releases of this node still apply to what they receive.
    const DEFAULT_CONTROL_BYTES: usize = 16 * 1024;

    /// Our IHAVEs for both of a behaviour's topics fit what any member
    /// accepts, and we accept control messages up to the RPC size, so
    /// neither side drops the other's stream over gossip about ids.
    #[test]
    fn ihave_gossip_fits_what_every_member_accepts() {
        let c = gossip_config(GOSSIP_MAX_BYTES, "/test/meshsub", 100).unwrap();
        assert_eq!(c.max_control_messages_sent(), IHAVE_IDS_MAX);
        assert!(2 * c.max_control_messages_sent() * ID_WIRE_BYTES < DEFAULT_CONTROL_BYTES);
        assert_eq!(c.max_control_message_size(), GOSSIP_MAX_BYTES);
    }
}
