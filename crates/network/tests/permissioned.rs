#![allow(clippy::unwrap_used)]
//! Real libp2p networks on 127.0.0.1: members gossip and sync; a
//! non-member is refused; a wrong pre-shared key is refused; connections
//! that never finish their handshake are bounded.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aidledger_crypto::Keypair;
use aidledger_network::{
    identity_from_seed, loopback_addr, peer_id_of, spawn, with_peer, NetEvent, NetworkConfig,
    NetworkHandle, PeerLimits, Topic, WIRE_MIN, WIRE_VERSION,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

struct Node {
    handle: NetworkHandle,
    events: Receiver<NetEvent>,
    addr: Multiaddr,
}

fn seed(i: u8) -> [u8; 32] {
    [i; 32]
}

fn peer(i: u8) -> PeerId {
    peer_id_of(&Keypair::from_seed(seed(i)).public()).unwrap()
}

async fn start(i: u8, allowed: &[u8], bootstrap: Vec<Multiaddr>, psk: Option<[u8; 32]>) -> Node {
    start_with(i, allowed, bootstrap, psk, PeerLimits::default()).await
}

async fn start_with(
    i: u8,
    allowed: &[u8],
    bootstrap: Vec<Multiaddr>,
    psk: Option<[u8; 32]>,
    limits: PeerLimits,
) -> Node {
    start_full(i, allowed, bootstrap, psk, limits, (WIRE_MIN, WIRE_VERSION)).await
}

/// A node that speaks the wire versions `wire` (min, max).
async fn start_wire(i: u8, allowed: &[u8], bootstrap: Vec<Multiaddr>, wire: (u32, u32)) -> Node {
    start_full(i, allowed, bootstrap, None, PeerLimits::default(), wire).await
}

async fn start_full(
    i: u8,
    allowed: &[u8],
    bootstrap: Vec<Multiaddr>,
    psk: Option<[u8; 32]>,
    limits: PeerLimits,
    wire: (u32, u32),
) -> Node {
    let cfg = NetworkConfig {
        chain_id: "net-test".into(),
        listen: loopback_addr(0),
        bootstrap,
        allowed: allowed.iter().map(|&j| peer(j)).collect(),
        psk,
        gossip_max_bytes: 1 << 20,
        redial_interval: Duration::from_millis(200),
        ping_interval: Duration::from_secs(1),
        publish_seq_start: u64::from(i) << 32,
        limits,
        wire_min: wire.0,
        wire_max: wire.1,
    };
    let key = identity_from_seed(seed(i)).unwrap();
    assert_eq!(
        key.public().to_peer_id(),
        peer(i),
        "node key and peer id agree"
    );
    let (handle, mut events) = spawn(cfg, key).unwrap();
    let addr = loop {
        match timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(NetEvent::Listening(a))) => break a,
            Ok(Some(_)) => continue,
            other => panic!("no listen address: {other:?}"),
        }
    };
    Node {
        handle,
        events,
        addr: with_peer(addr, peer(i)),
    }
}

/// Waits for an event matching `f`, up to `secs` seconds.
async fn wait_for<T>(
    events: &mut Receiver<NetEvent>,
    secs: u64,
    mut f: impl FnMut(&NetEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(ev)) => {
                if let Some(t) = f(&ev) {
                    return Some(t);
                }
            }
            _ => return None,
        }
    }
}

/// Whether `who` connects (a `PeerConnected` event) within `secs`.
async fn connects(events: &mut Receiver<NetEvent>, who: PeerId, secs: u64) -> bool {
    wait_for(events, secs, |ev| match ev {
        NetEvent::PeerConnected(p) if *p == who => Some(()),
        _ => None,
    })
    .await
    .is_some()
}

/// Publishes transaction gossip until the other side sees it: gossipsub
/// needs a heartbeat or two after a connection before the mesh carries
/// messages.
async fn publish_until_seen(
    from: &NetworkHandle,
    to: &mut Receiver<NetEvent>,
    data: &[u8],
) -> bool {
    publish_on_until_seen(from, to, Topic::Txs, data).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_gossip_and_sync() {
    let mut a = start(1, &[2], vec![], None).await;
    let mut b = start(2, &[1], vec![a.addr.clone()], None).await;
    assert!(publish_until_seen(&b.handle, &mut a.events, b"hello-a").await);
    assert!(publish_until_seen(&a.handle, &mut b.events, b"hello-b").await);

    // Sync: b asks a, a answers, b gets the answer under its request id.
    let id = b
        .handle
        .request(peer(1), b"blocks 1..10".to_vec())
        .await
        .unwrap();
    let mut token = None;
    wait_for(&mut a.events, 10, |ev| match ev {
        NetEvent::SyncRequest { peer: p, data, .. } if *p == peer(2) && data == b"blocks 1..10" => {
            Some(())
        }
        _ => None,
    })
    .await
    .expect("request arrives");
    // wait_for consumed the event by reference; ask again to get the token.
    let id2 = b.handle.request(peer(1), b"again".to_vec()).await.unwrap();
    while token.is_none() {
        match timeout(Duration::from_secs(10), a.events.recv()).await {
            Ok(Some(NetEvent::SyncRequest { data, reply, .. })) if data == b"again" => {
                token = Some(reply)
            }
            Ok(Some(_)) => {}
            other => panic!("no second request: {other:?}"),
        }
    }
    a.handle
        .reply(token.unwrap(), b"here are blocks".to_vec())
        .await
        .unwrap();
    // b learns the answer to the second request, and that the first failed
    // (its reply token was dropped unanswered); in either order.
    let (mut answered, mut failed) = (None, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while answered.is_none() || !failed {
        match tokio::time::timeout_at(deadline, b.events.recv()).await {
            Ok(Some(NetEvent::SyncResponse { request, data, .. })) if request == id2 => {
                answered = Some(data)
            }
            Ok(Some(NetEvent::SyncFailed { request, .. })) if request == id => failed = true,
            Ok(Some(_)) => {}
            other => panic!("answered {answered:?}, failed {failed}: {other:?}"),
        }
    }
    assert_eq!(answered.as_deref(), Some(&b"here are blocks"[..]));
    // Both speak the current wire version: nothing went over the previous
    // one (publishing picks the newest topic every peer is on).
    for n in [&a, &b] {
        assert_eq!(n.handle.stats.wire_previous_in.load(Relaxed), 0);
        assert!(n.handle.stats.wire_current_in.load(Relaxed) > 0);
    }
}

/// Answers the next sync request that reaches `n` with `data`; returns
/// the request's bytes.
async fn answer_next(n: &mut Node, data: Vec<u8>) -> Vec<u8> {
    loop {
        match timeout(Duration::from_secs(20), n.events.recv()).await {
            Ok(Some(NetEvent::SyncRequest {
                data: req, reply, ..
            })) => {
                n.handle.reply(reply, data).await.unwrap();
                return req;
            }
            Ok(Some(_)) => {}
            other => panic!("no sync request: {other:?}"),
        }
    }
}

async fn response_to(n: &mut Node, id: u64) -> Vec<u8> {
    loop {
        match timeout(Duration::from_secs(20), n.events.recv()).await {
            Ok(Some(NetEvent::SyncResponse { request, data, .. })) if request == id => return data,
            Ok(Some(NetEvent::SyncFailed {
                request, reason, ..
            })) if request == id => {
                panic!("sync request failed: {reason}")
            }
            Ok(Some(_)) => {}
            other => panic!("no sync response: {other:?}"),
        }
    }
}

/// A rolling upgrade across a wire change (ADR 017, part 3): a node on the
/// previous release (wire version 1 only) and nodes on this one (1 and 2)
/// gossip both ways, and sync both ways, each side reading the blocks
/// response in its own version (the codec re-encodes it on `sync/1`
/// streams). A node that speaks no common version is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_the_previous_and_the_current_wire_version_gossip_and_sync() {
    use aidledger_types::codec;
    use aidledger_types::wire::{SyncRequest, SyncResponse, SyncResponseV1};
    let mut old = start_wire(1, &[2, 3], vec![], (1, 1)).await;
    let mut new = start_wire(2, &[1, 3], vec![old.addr.clone()], (WIRE_MIN, WIRE_VERSION)).await;
    assert!(publish_until_seen(&new.handle, &mut old.events, b"to-the-old-node").await);
    assert!(publish_until_seen(&old.handle, &mut new.events, b"to-the-new-node").await);
    assert!(new.handle.stats.wire_previous_in.load(Relaxed) > 0);

    let ask = codec::encode(&SyncRequest::Blocks { from: 1, max: 8 });
    let answer = codec::encode(&SyncResponse {
        head: 42,
        base: 1,
        blocks: Vec::new(),
    });
    // The new node asks the old one: the request goes out as sync/1, the
    // old node's core answers in its own (newest) format, its codec sends
    // it as version 1, and the new node's codec reads it back as 2.
    let id = new.handle.request(peer(1), ask.clone()).await.unwrap();
    assert_eq!(answer_next(&mut old, answer.clone()).await, ask);
    let got: SyncResponse = codec::decode(&response_to(&mut new, id).await).unwrap();
    assert_eq!((got.head, got.base, got.blocks.len()), (42, 1, 0));
    // And the other way round.
    let id = old.handle.request(peer(2), ask.clone()).await.unwrap();
    assert_eq!(answer_next(&mut new, answer.clone()).await, ask);
    let got: SyncResponse = codec::decode(&response_to(&mut old, id).await).unwrap();
    assert_eq!(got.head, 42);
    // What version 1 looks like on the wire is the previous release's
    // format exactly.
    let v1 = aidledger_types::wire::sync_response_to_v1(&answer).unwrap();
    let parsed: SyncResponseV1 = codec::decode(&v1).unwrap();
    assert_eq!(parsed.head, 42);
    assert!(codec::decode::<SyncResponse>(&v1).is_err());

    // A node that speaks only a version the old node does not is
    // disconnected once identify tells them apart.
    let _far = start_wire(3, &[1, 2], vec![old.addr.clone()], (2, 2)).await;
    let refused = || {
        old.handle.stats.wire_refused.load(Relaxed) + _far.handle.stats.wire_refused.load(Relaxed)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refused() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused() > 0,
        "no node refused a peer with no common wire version"
    );
    drop(new);
}

/// PBFT retransmits byte-identical messages (view-change and new-view
/// resends, replies to stragglers). Gossipsub names a message by the hash
/// of its bytes and drops repeats for two minutes, so each consensus
/// publish carries a counter of its own: every resend arrives, and the
/// receiver gets the payload without the counter.
/// Publishes on `topic` until the other side sees it, each round with its
/// own suffix (a repeat would be a duplicate).
async fn publish_on_until_seen(
    from: &NetworkHandle,
    to: &mut Receiver<NetEvent>,
    topic: Topic,
    data: &[u8],
) -> bool {
    for round in 0..40u32 {
        let mut d = data.to_vec();
        d.extend_from_slice(&round.to_le_bytes());
        from.publish(topic, d).await.unwrap();
        let seen = wait_for(to, 1, |ev| match ev {
            NetEvent::Gossip {
                data: got,
                topic: t,
                ..
            } if *t == topic && got.starts_with(data) => Some(()),
            _ => None,
        })
        .await;
        if seen.is_some() {
            return true;
        }
    }
    false
}

/// A member with no link to a message's publisher still gets it, through
/// a member that has it: transaction and consensus gossip alike. Three
/// members in a line, 1 - 2 - 3: 1 and 3 are members to each other, but
/// neither has the other's address (ADR 009, the change tried without
/// forwarding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_a_member_with_no_link_to_its_publisher() {
    let a = start(1, &[2, 3], vec![], None).await;
    let mut b = start(2, &[1, 3], vec![a.addr.clone()], None).await;
    let mut c = start(3, &[1, 2], vec![b.addr.clone()], None).await;
    // Both links are up before anything is published.
    assert!(publish_until_seen(&a.handle, &mut b.events, b"warm-up-ab").await);
    assert!(publish_until_seen(&c.handle, &mut b.events, b"warm-up-cb").await);
    assert!(
        publish_until_seen(&a.handle, &mut c.events, b"tx batch from 1").await,
        "transaction gossip from 1 never reached 3 through 2"
    );
    assert!(
        publish_on_until_seen(&a.handle, &mut c.events, Topic::Consensus, b"vote from 1").await,
        "consensus gossip from 1 never reached 3 through 2"
    );
    // 1 and 3 were never connected: what 3 got came through 2.
    assert!(!a.handle.connected_peers().contains(&peer(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_consensus_message_arrives_every_time() {
    let mut a = start(1, &[2], vec![], None).await;
    let b = start(2, &[1], vec![a.addr.clone()], None).await;
    // Wait for the mesh to carry messages at all.
    assert!(publish_until_seen(&b.handle, &mut a.events, b"warm-up").await);
    let view_change = b"the same signed view change".to_vec();
    for _ in 0..3 {
        b.handle
            .publish(Topic::Consensus, view_change.clone())
            .await
            .unwrap();
    }
    let mut got = 0;
    while got < 3 {
        let seen = wait_for(&mut a.events, 10, |ev| match ev {
            NetEvent::Gossip {
                data,
                topic: Topic::Consensus,
                ..
            } => Some(data.clone()),
            _ => None,
        })
        .await;
        match seen {
            Some(data) => {
                assert_eq!(data, view_change, "the payload, without the counter");
                got += 1;
            }
            None => panic!("only {got} of 3 identical consensus messages arrived"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_is_refused_and_its_gossip_never_arrives() {
    // Nodes 1 and 2 are members; node 9 is not, but knows their addresses
    // and allows them itself.
    let mut a = start(1, &[2], vec![], None).await;
    let mut b = start(2, &[1], vec![a.addr.clone()], None).await;
    let outsider = start(9, &[1, 2], vec![a.addr.clone(), b.addr.clone()], None).await;
    assert!(publish_until_seen(&b.handle, &mut a.events, b"member").await);
    for _ in 0..10 {
        outsider
            .handle
            .publish(Topic::Txs, b"intruder".to_vec())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = wait_for(&mut a.events, 3, |ev| match ev {
        NetEvent::Gossip { data, .. } if data.starts_with(b"intruder") => Some(()),
        NetEvent::PeerConnected(p) if *p == peer(9) => Some(()),
        _ => None,
    })
    .await;
    assert!(got.is_none(), "non-member reached a member");
    assert!(!a.handle.connected_peers().contains(&peer(9)));
    assert!(outsider.handle.connected_peers().is_empty());
    assert!(
        a.handle
            .stats
            .denied_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let _ = b.events.try_recv();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pre_shared_key_is_refused() {
    let mut a = start(1, &[2, 3], vec![], Some([7; 32])).await;
    let mut b = start(2, &[1], vec![a.addr.clone()], Some([7; 32])).await;
    let c = start(3, &[1], vec![a.addr.clone()], Some([8; 32])).await;
    assert!(publish_until_seen(&b.handle, &mut a.events, b"same-psk").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!a.handle.connected_peers().contains(&peer(3)));
    assert!(c.handle.connected_peers().is_empty());
    let _ = b.events.try_recv();
}

/// Strangers that open TCP connections and never finish the handshake
/// hold at most `max_pending_incoming` of them; the rest are closed at
/// once and counted, and a member still connects and gossips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_never_finish_are_bounded() {
    use std::sync::atomic::Ordering::Relaxed;
    let limits = PeerLimits {
        max_pending_incoming: 4,
        ..PeerLimits::default()
    };
    let mut a = start_with(1, &[2], vec![], None, limits).await;
    let port = a
        .addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    // Twenty silent connections: each holds a handshake slot until the
    // handshake times out.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let limited = || a.handle.stats.limited_connections.load(Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while limited() < 16 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        limited() >= 16,
        "{} of 20 silent connections refused, expected at least 16",
        limited()
    );
    // The refused ones are closed: reading them ends.
    let mut closed = 0;
    for s in &mut silent {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 16, "{closed} of 20 closed");
    // Once the silent ones are gone, a member connects and gossips.
    drop(silent);
    let b = start(2, &[1], vec![a.addr.clone()], None).await;
    assert!(publish_until_seen(&b.handle, &mut a.events, b"member").await);
}

/// The allow-list follows the node registry (ADR 017): a node refused at
/// first is admitted once `set_members` lists it, its gossip arrives, and
/// when a later `set_members` leaves it out its connection is closed and
/// its redials are refused again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_members_admits_a_new_member_and_closes_a_removed_ones_connection() {
    let mut a = start(1, &[2], vec![], None).await;
    let b = start(2, &[1], vec![a.addr.clone()], None).await;
    // Node 3 knows node 1 and redials it every 200 ms.
    let c = start(3, &[1], vec![a.addr.clone()], None).await;
    let refused = connects(&mut a.events, peer(3), 3).await;
    assert!(!refused, "node 3 connected before it was a member");
    let denied = |n: &Node| {
        n.handle
            .stats
            .denied_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(denied(&a) > 0, "node 3's dials were not refused");

    a.handle.set_members(vec![peer(2), peer(3)]).await.unwrap();
    let admitted = connects(&mut a.events, peer(3), 10).await;
    assert!(admitted, "node 3 was not admitted");
    assert!(publish_until_seen(&c.handle, &mut a.events, b"from-3").await);

    a.handle.set_members(vec![peer(2)]).await.unwrap();
    let closed = wait_for(&mut a.events, 10, |ev| match ev {
        NetEvent::PeerDisconnected(p) if *p == peer(3) => Some(()),
        _ => None,
    })
    .await;
    assert!(closed.is_some(), "node 3's connection stayed open");
    let before = denied(&a);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !a.handle.connected_peers().contains(&peer(3)),
        "node 3 is connected again"
    );
    assert!(denied(&a) > before, "node 3's redials were not refused");
    // Node 2, still a member, was never disturbed.
    assert!(a.handle.connected_peers().contains(&peer(2)));
    let _ = b;
}

/// A member that refuses this node completes the transport handshake and
/// closes the connection at once. The refused node never counts it as a
/// peer, not even for that instant (it is a peer once it answers on the
/// connection), says so in a counter, and backs its redials off instead
/// of costing the member a handshake every interval; once admitted, it
/// connects within the longest back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_member_is_never_a_peer_and_its_redials_back_off() {
    let a = start(1, &[2], vec![], None).await;
    // Node 9 allows node 1 and redials it (every 200 ms without back-off).
    let mut outsider = start(9, &[1], vec![a.addr.clone()], None).await;
    let counted = wait_for(&mut outsider.events, 4, |ev| match ev {
        NetEvent::PeerConnected(p) => Some(*p),
        _ => None,
    })
    .await;
    assert_eq!(counted, None, "a member that refused node 9 was its peer");
    assert!(outsider.handle.connected_peers().is_empty());
    let refused = outsider.handle.stats.refused_by_peer.load(Relaxed);
    let denied = a.handle.stats.denied_connections.load(Relaxed);
    assert!(
        refused >= 1 && denied >= 1,
        "refused {refused}, denied {denied}"
    );
    // Without back-off, 4 s of 200 ms redials are 20 handshakes; with it
    // (200, 400, 800, 1600, 1600 ms...) at most 6.
    assert!(
        denied <= 8,
        "{denied} handshakes refused in 4 s: no back-off"
    );

    a.handle.set_members(vec![peer(2), peer(9)]).await.unwrap();
    let admitted = connects(&mut outsider.events, peer(1), 10).await;
    assert!(admitted, "node 9 did not connect once admitted");
    assert_eq!(outsider.handle.connected_peers(), vec![peer(1)]);
}

async fn listening(events: &mut Receiver<NetEvent>) -> Option<()> {
    wait_for(events, 10, |ev| match ev {
        NetEvent::Listening(_) => Some(()),
        _ => None,
    })
    .await
}

/// A node-key replacement (ADR 017): `shutdown` returns once the swarm and
/// its listener are gone, so the node starts again at once under a new
/// identity on the same address, and a member that admits the new key
/// sees it connect. Its stats go on counting in the same counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_under_a_new_identity_on_the_same_address() {
    let mut member = start(1, &[2, 3], vec![], None).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = NetworkConfig {
        chain_id: "net-test".into(),
        listen: loopback_addr(port),
        bootstrap: vec![member.addr.clone()],
        allowed: vec![peer(1)],
        psk: None,
        gossip_max_bytes: 1 << 20,
        redial_interval: Duration::from_millis(200),
        ping_interval: Duration::from_secs(1),
        publish_seq_start: 7,
        limits: PeerLimits::default(),
        wire_min: WIRE_MIN,
        wire_max: WIRE_VERSION,
    };
    let (old, mut old_events) = spawn(cfg.clone(), identity_from_seed(seed(2)).unwrap()).unwrap();
    listening(&mut old_events)
        .await
        .expect("the old identity listens");
    assert!(
        connects(&mut member.events, peer(2), 10).await,
        "the old identity connects"
    );
    let stats = old.stats.clone();
    // Its events are never read: shutdown must not wait on them.
    timeout(Duration::from_secs(10), old.shutdown())
        .await
        .expect("shutdown returns");
    let (new, mut new_events) = aidledger_network::spawn_with_stats(
        cfg,
        identity_from_seed(seed(3)).unwrap(),
        stats.clone(),
    )
    .unwrap();
    listening(&mut new_events)
        .await
        .expect("the new identity listens on the same address");
    assert_eq!(new.local_peer_id(), peer(3));
    // The status page's text follows the identity the handle runs under.
    assert_eq!(new.local_peer_text(), peer(3).to_string());
    assert!(std::sync::Arc::ptr_eq(&new.stats, &stats));
    assert!(
        connects(&mut member.events, peer(3), 10).await,
        "the new identity connects"
    );
    drop(old_events);
}
