//! The admission pool (ADR 016): signature verification for client and
//! gossip transactions on a bounded set of worker threads, off the driver's
//! task, fed by fair lanes with back-pressure.
//!
//! - One lane per client IP address and one per gossiping peer. Workers
//!   take one chunk (at most [`CHUNK_TXS`] transactions) from each lane in
//!   turn, so a flooding client delays another by at most one chunk per
//!   busy lane.
//! - A lane holds at most `lane_txs` transactions, the queue at most
//!   `queue_txs` and [`MAX_LANES`] lanes. A client request that does not fit
//!   is refused whole ([`Busy`], answered 503 with `Retry-After`); gossip
//!   that does not fit is dropped and counted (peers re-gossip what stays
//!   pending).
//! - On Linux the workers run at nice 10: when both are runnable, the
//!   process's consensus and commit work wins the CPU.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};

use aidledger_network::NetPeerId as PeerId;
use aidledger_node_core::{Admission, Screened, Verdict};
use tokio::sync::{mpsc, oneshot};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::driver::DriverMsg;
use crate::metrics::Metrics;

/// Most transactions one worker takes from one lane at a time. A chunk of
/// bad signatures costs one failed batch and then a single check each,
/// about 64 × 130 µs ≈ 8 ms here: the longest another lane waits per busy
/// lane ahead of it.
pub const CHUNK_TXS: usize = 64;
/// Peer lanes (gossip from consortium members, already admitted by
/// another member) are served first, but at most this many chunks in a
/// row while a client lane waits.
const PEER_STREAK_MAX: u32 = 4;
/// Most lanes (distinct clients and peers) queued at once.
pub const MAX_LANES: usize = 1024;
/// A gossip message counts as one transaction per this many bytes (its
/// transactions are not decoded until a worker takes it).
const GOSSIP_BYTES_PER_TX: usize = 256;
/// Most units of one peer's queued gossip a worker takes together, as one
/// signature batch: about one batch chunk (256 signatures), where the
/// batch equation's cost per signature has levelled off.
const GOSSIP_FOLLOW_UNITS: usize = 256;
/// The nice value of the workers (Linux).
const WORKER_NICE: i32 = 10;

/// The pool's metrics (`aidledger_admission_*`).
#[derive(Clone, Debug)]
pub struct PoolMetrics {
    pub busy: Counter,
    pub gossip_dropped: Counter,
    pub queue_txs: Gauge,
    /// Transactions per signature batch.
    pub batch_txs: Histogram,
}

impl PoolMetrics {
    pub fn of(m: &Metrics) -> PoolMetrics {
        PoolMetrics {
            busy: m.admission_busy.clone(),
            gossip_dropped: m.admission_gossip_dropped.clone(),
            queue_txs: m.admission_queue_txs.clone(),
            batch_txs: m.admission_batch_txs.clone(),
        }
    }
}

/// Where queued work came from: its lane.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Lane {
    Client(IpAddr),
    Peer(PeerId),
}

/// The queue is full for this request; nothing of it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The pool's bounds.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    pub threads: usize,
    pub queue_txs: usize,
    pub lane_txs: usize,
}

enum Work {
    Client {
        screened: Vec<Screened>,
        reply: oneshot::Sender<Vec<Verdict>>,
    },
    Gossip {
        batch: Vec<Vec<u8>>,
    },
}

struct Job {
    lane: Lane,
    units: usize,
    work: Work,
}

#[derive(Default)]
struct Queue {
    lanes: HashMap<Lane, (VecDeque<Job>, usize)>,
    /// Lanes with work, in the order workers serve them: peers' and
    /// clients'.
    peer_turn: VecDeque<Lane>,
    client_turn: VecDeque<Lane>,
    /// Peer chunks served in a row.
    peer_streak: u32,
    total: usize,
    closed: bool,
}

impl Queue {
    /// Whether `units` more fit, in total and in `lane`.
    fn fits(&self, lane: &Lane, units: usize, cfg: &PoolConfig) -> bool {
        let in_lane = self.lanes.get(lane).map_or(0, |l| l.1);
        let new_lane = !self.lanes.contains_key(lane);
        self.total + units <= cfg.queue_txs
            && in_lane + units <= cfg.lane_txs
            && !(new_lane && self.lanes.len() >= MAX_LANES)
    }

    fn push(&mut self, job: Job) {
        let lane = job.lane;
        self.total += job.units;
        if !self.lanes.contains_key(&lane) {
            self.turn_of(lane).push_back(lane);
        }
        let entry = self.lanes.entry(lane).or_default();
        entry.1 += job.units;
        entry.0.push_back(job);
    }

    fn turn_of(&mut self, lane: Lane) -> &mut VecDeque<Lane> {
        match lane {
            Lane::Peer(_) => &mut self.peer_turn,
            Lane::Client(_) => &mut self.client_turn,
        }
    }

    /// The next job: peer lanes first (but a client lane at least every
    /// [`PEER_STREAK_MAX`] + 1 chunks), round robin within each kind.
    fn pop(&mut self) -> Option<Job> {
        let peer_first = !self.peer_turn.is_empty()
            && (self.client_turn.is_empty() || self.peer_streak < PEER_STREAK_MAX);
        let lane = if peer_first {
            self.peer_streak += 1;
            self.peer_turn.pop_front()?
        } else {
            self.peer_streak = 0;
            self.client_turn.pop_front()?
        };
        let (jobs, units) = self.lanes.get_mut(&lane)?;
        let job = jobs.pop_front()?;
        *units -= job.units;
        self.total -= job.units;
        if jobs.is_empty() {
            self.lanes.remove(&lane);
        } else {
            self.turn_of(lane).push_back(lane);
        }
        Some(job)
    }

    /// [`Queue::pop`], and for a client's chunk also the chunks queued
    /// behind it in the same lane while together they stay within
    /// [`CHUNK_TXS`]. They are verified as one batch: a client that sends
    /// many small requests (an office submitting as it goes, the bench's
    /// submitters of a few dozen each) costs what one request of their sum
    /// would, as the batch's fixed cost is shared. The lane gets no more in
    /// its turn than one full chunk, so fairness between lanes is as
    /// before, and a bad signature among them costs only that lane.
    ///
    /// A peer's gossip is taken together the same way, up to
    /// [`GOSSIP_FOLLOW_UNITS`]: when the workers fall behind, a peer's
    /// messages queue up one per publication (about 50 ms of its clients'
    /// transactions, a few dozen at moderate load), and each verified
    /// alone pays a small batch's higher cost per signature.
    fn pop_with_followers(&mut self) -> Option<Vec<Job>> {
        let first = self.pop()?;
        let lane = first.lane;
        let mut units = first.units;
        // A lane's jobs are all of its kind: a peer's are gossip, a
        // client's are its requests.
        let limit = match lane {
            Lane::Peer(_) => GOSSIP_FOLLOW_UNITS,
            Lane::Client(_) => CHUNK_TXS,
        };
        let mut jobs = vec![first];
        while let Some((queued, lane_units)) = self.lanes.get_mut(&lane) {
            let next_fits = queued.front().is_some_and(|j| units + j.units <= limit);
            if !next_fits {
                break;
            }
            let Some(job) = queued.pop_front() else {
                break;
            };
            *lane_units -= job.units;
            self.total -= job.units;
            units += job.units;
            let emptied = queued.is_empty();
            jobs.push(job);
            if emptied {
                self.lanes.remove(&lane);
                self.turn_of(lane).retain(|l| *l != lane);
                break;
            }
        }
        Some(jobs)
    }
}

struct Inner {
    cfg: PoolConfig,
    queue: Mutex<Queue>,
    ready: Condvar,
    admission: Arc<Admission>,
    driver: mpsc::Sender<DriverMsg>,
    metrics: Option<PoolMetrics>,
}

/// The pool; cloning shares it. Dropping the last clone does not stop the
/// workers: [`AdmissionPool::close`] does, and [`AdmissionPool::join`]
/// waits for them.
#[derive(Clone)]
pub struct AdmissionPool {
    inner: Arc<Inner>,
    /// The workers, until [`AdmissionPool::join`] takes them.
    workers: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl AdmissionPool {
    /// Starts `cfg.threads` workers. Gossip verdicts go to `driver` as
    /// [`DriverMsg::Gossiped`].
    pub fn start(
        admission: Arc<Admission>,
        cfg: PoolConfig,
        driver: mpsc::Sender<DriverMsg>,
        metrics: Option<PoolMetrics>,
    ) -> std::io::Result<AdmissionPool> {
        let inner = Arc::new(Inner {
            cfg,
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            admission,
            driver,
            metrics,
        });
        let mut workers = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let shared = inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("admission-{i}"))
                .spawn(move || worker(&shared));
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => {
                    // The workers already started must not outlive the
                    // failed start: they hold the store.
                    let pool = AdmissionPool {
                        inner,
                        workers: Arc::new(Mutex::new(workers)),
                    };
                    pool.close();
                    pool.join();
                    return Err(e);
                }
            }
        }
        Ok(AdmissionPool {
            inner,
            workers: Arc::new(Mutex::new(workers)),
        })
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.inner.admission
    }

    /// Queues a client's screened transactions for their signature check,
    /// in chunks, all or nothing. The receivers answer one verdict per
    /// transaction of their chunk, in order; chunks are in order.
    pub fn submit(
        &self,
        lane: Lane,
        screened: Vec<Screened>,
    ) -> Result<Vec<oneshot::Receiver<Vec<Verdict>>>, Busy> {
        let mut chunks: Vec<Vec<Screened>> = Vec::new();
        let mut it = screened.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(CHUNK_TXS).collect());
        }
        let units: usize = chunks.iter().map(Vec::len).sum();
        let mut q = self.lock();
        if q.closed || !q.fits(&lane, units, &self.inner.cfg) {
            drop(q);
            self.count_busy();
            return Err(Busy);
        }
        let mut out = Vec::with_capacity(chunks.len());
        for screened in chunks {
            let (reply, rx) = oneshot::channel();
            out.push(rx);
            q.push(Job {
                lane,
                units: screened.len(),
                work: Work::Client { screened, reply },
            });
        }
        self.set_depth(q.total);
        drop(q);
        self.inner.ready.notify_all();
        Ok(out)
    }

    /// Queues a batch of transaction gossip messages from `peer`; false
    /// (and counted) if it does not fit.
    pub fn gossip(&self, peer: PeerId, batch: Vec<Vec<u8>>) -> bool {
        let bytes: usize = batch.iter().map(Vec::len).sum();
        let units = (bytes / GOSSIP_BYTES_PER_TX).max(1);
        let lane = Lane::Peer(peer);
        let mut q = self.lock();
        if q.closed || !q.fits(&lane, units, &self.inner.cfg) {
            drop(q);
            if let Some(m) = &self.inner.metrics {
                m.gossip_dropped.inc();
            }
            return false;
        }
        q.push(Job {
            lane,
            units,
            work: Work::Gossip { batch },
        });
        self.set_depth(q.total);
        drop(q);
        self.inner.ready.notify_one();
        true
    }

    /// Whether `lane` holds at least half its bound: the API then refuses
    /// the client's next request before reading its body.
    pub fn lane_half_full(&self, lane: Lane) -> bool {
        let q = self.lock();
        q.closed || q.lanes.get(&lane).map_or(0, |l| l.1) * 2 >= self.inner.cfg.lane_txs
    }

    /// Transactions queued now.
    pub fn depth(&self) -> usize {
        self.lock().total
    }

    /// Stops the workers once the queue is empty; new work is refused.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.ready.notify_all();
    }

    /// Waits, after [`AdmissionPool::close`], for every worker to finish
    /// the queue and stop; later calls return at once. Blocking: from the
    /// runtime, call it on a blocking thread.
    ///
    /// A node's shutdown needs it: the workers hold the store, and a
    /// worker still running when the process exits would close RocksDB
    /// while its static state is torn down (a crash after "stopped
    /// cleanly", and the store's lock held until then).
    pub fn join(&self) {
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for w in workers {
            if w.join().is_err() {
                tracing::error!("an admission worker panicked");
            }
        }
    }

    /// A guard that closes the pool and waits for its workers when
    /// dropped: see [`StopOnDrop`].
    pub fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a client request refused busy.
    pub fn count_busy(&self) {
        if let Some(m) = &self.inner.metrics {
            m.busy.inc();
        }
    }

    fn set_depth(&self, total: usize) {
        if let Some(m) = &self.inner.metrics {
            m.queue_txs.set(total as i64);
        }
    }
}

/// Closes the pool and joins its workers when dropped (blocking). A node
/// holds one from the pool's start, so that a start failing after it (the
/// API's port in use, say) leaves no worker holding the store; its
/// shutdown drops the guard on a blocking thread to the same end.
pub struct StopOnDrop(AdmissionPool);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.close();
        self.0.join();
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), WORKER_NICE) {
            tracing::debug!(error = %e, "could not lower the admission worker's priority");
        }
    }
}

fn worker(inner: &Inner) {
    lower_priority();
    loop {
        let jobs = {
            let mut q = inner
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if let Some(jobs) = q.pop_with_followers() {
                    if let Some(m) = &inner.metrics {
                        m.queue_txs.set(q.total as i64);
                    }
                    break jobs;
                }
                if q.closed {
                    return;
                }
                q = inner
                    .ready
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let mut clients: Vec<(usize, oneshot::Sender<Vec<Verdict>>)> = Vec::new();
        let mut screened_all: Vec<Screened> = Vec::new();
        let mut gossip = None;
        for job in jobs {
            match job.work {
                Work::Client { screened, reply } => {
                    clients.push((screened.len(), reply));
                    screened_all.extend(screened);
                }
                Work::Gossip { batch } => gossip.get_or_insert_with(Vec::new).extend(batch),
            }
        }
        if !clients.is_empty() {
            // One batch for the lane's chunks; each client gets its own
            // verdicts, in order. A client may have gone; its verdicts are
            // then unread, and nothing was admitted yet.
            if let Some(m) = &inner.metrics {
                m.batch_txs.observe(screened_all.len() as f64);
            }
            let mut verdicts = inner.admission.verify(screened_all).into_iter();
            for (n, reply) in clients {
                let _ = reply.send(verdicts.by_ref().take(n).collect());
            }
        }
        if let Some(batch) = gossip {
            let verdicts = inner.admission.gossip(batch);
            if let Some(m) = &inner.metrics {
                m.batch_txs.observe(verdicts.len() as f64);
            }
            if verdicts.is_empty() {
                continue;
            }
            // Blocks while the driver's channel is full: back-pressure
            // that fills the lanes instead of a queue in the driver.
            if inner
                .driver
                .blocking_send(DriverMsg::Gossiped(verdicts))
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool whose guard is dropped (a node's start failing after the
    /// pool began) leaves no worker holding the store: the store is closed
    /// once the caller lets go of it, and opens again at once.
    #[test]
    fn a_dropped_stop_guard_leaves_no_worker_holding_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = Arc::new(aidledger_storage::RocksStore::open(&path).expect("open"));
        let weak = Arc::downgrade(&store);
        let (driver, _rx) = mpsc::channel(16);
        let admission = Arc::new(Admission::new(
            aidledger_types::ChainId::new("stop-test").expect("chain id"),
            store,
            64,
            1 << 20,
            &aidledger_node_core::Mutants::default(),
        ));
        let pool = AdmissionPool::start(
            admission,
            PoolConfig {
                threads: 3,
                ..cfg()
            },
            driver,
            None,
        )
        .expect("pool");
        let guard = pool.stop_on_drop();
        drop(pool);
        drop(guard);
        assert!(
            weak.upgrade().is_none(),
            "an admission worker still holds the store"
        );
        aidledger_storage::RocksStore::open(&path).expect("the store opens again");
    }

    fn cfg() -> PoolConfig {
        PoolConfig {
            threads: 1,
            queue_txs: 1000,
            lane_txs: 400,
        }
    }

    fn job(lane: Lane, units: usize) -> Job {
        Job {
            lane,
            units,
            work: Work::Gossip { batch: Vec::new() },
        }
    }

    fn client(n: u8) -> Lane {
        Lane::Client(IpAddr::from([127, 0, 0, n]))
    }

    fn client_job(lane: Lane, units: usize) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            lane,
            units,
            work: Work::Client {
                screened: Vec::new(),
                reply,
            },
        }
    }

    #[test]
    fn a_clients_small_chunks_are_taken_together_up_to_one_chunk() {
        let mut q = Queue::default();
        for units in [20, 20, 20, 10] {
            q.push(client_job(client(1), units));
        }
        q.push(client_job(client(2), 5));
        q.push(client_job(client(2), 5));
        let units = |jobs: &[Job]| jobs.iter().map(|j| j.units).collect::<Vec<_>>();
        // Client 1's first three together (60 ≤ 64; the fourth would make
        // 70), then client 2's turn, both of its chunks, then client 1's
        // last.
        let first = q.pop_with_followers().expect("work");
        assert_eq!(units(&first), vec![20, 20, 20]);
        assert!(first.iter().all(|j| j.lane == client(1)));
        assert_eq!(q.total, 20);
        let second = q.pop_with_followers().expect("work");
        assert_eq!(units(&second), vec![5, 5]);
        assert!(second.iter().all(|j| j.lane == client(2)));
        assert!(!q.client_turn.contains(&client(2)));
        let third = q.pop_with_followers().expect("work");
        assert_eq!(units(&third), vec![10]);
        assert!(q.pop_with_followers().is_none());
        assert_eq!(q.total, 0);
        assert!(q.lanes.is_empty() && q.client_turn.is_empty() && q.peer_turn.is_empty());
    }

    #[test]
    fn a_peers_gossip_is_taken_together_up_to_one_batch() {
        let units = |jobs: &[Job]| jobs.iter().map(|j| j.units).collect::<Vec<_>>();
        let (peer, other) = (Lane::Peer(PeerId::random()), Lane::Peer(PeerId::random()));
        let mut q = Queue::default();
        q.push(job(peer, 10));
        q.push(job(other, 10));
        q.push(job(peer, 10));
        q.push(job(peer, GOSSIP_FOLLOW_UNITS - 20));
        q.push(job(peer, 1));
        // The peer's first three fill the limit exactly; the other peer's
        // message is never mixed in, and what would pass the limit waits.
        let first = q.pop_with_followers().expect("work");
        assert!(first.iter().all(|j| j.lane == peer));
        assert_eq!(units(&first), vec![10, 10, GOSSIP_FOLLOW_UNITS - 20]);
        assert_eq!(units(&q.pop_with_followers().expect("work")), vec![10]);
        let last = q.pop_with_followers().expect("work");
        assert!(last.iter().all(|j| j.lane == peer));
        assert_eq!(units(&last), vec![1]);
        assert!(q.pop_with_followers().is_none());
        assert_eq!(q.total, 0);
        assert!(q.lanes.is_empty() && q.peer_turn.is_empty());
        // A full chunk is taken alone.
        q.push(client_job(client(1), CHUNK_TXS));
        q.push(client_job(client(1), 1));
        assert_eq!(q.pop_with_followers().expect("work").len(), 1);
        assert_eq!(q.pop_with_followers().expect("work").len(), 1);
        assert_eq!(q.total, 0);
    }

    #[test]
    fn lanes_are_served_in_turn() {
        let mut q = Queue::default();
        for _ in 0..3 {
            q.push(job(client(1), 100));
        }
        q.push(job(client(2), 10));
        q.push(job(client(3), 10));
        let order: Vec<Lane> = std::iter::from_fn(|| q.pop().map(|j| j.lane)).collect();
        assert_eq!(
            order,
            vec![client(1), client(2), client(3), client(1), client(1)]
        );
        assert_eq!(q.total, 0);
        assert!(q.lanes.is_empty() && q.client_turn.is_empty());
    }

    #[test]
    fn peers_go_first_but_never_starve_clients() {
        let peer = Lane::Peer(PeerId::random());
        let mut q = Queue::default();
        for _ in 0..10 {
            q.push(job(peer, 10));
        }
        q.push(job(client(1), 10));
        q.push(job(client(1), 10));
        let order: Vec<bool> = std::iter::from_fn(|| q.pop().map(|j| j.lane == peer)).collect();
        // Four peer chunks, a client chunk, four more, the other client
        // chunk, then the rest.
        assert_eq!(
            order,
            vec![true, true, true, true, false, true, true, true, true, false, true, true]
        );
    }

    #[test]
    fn a_full_lane_leaves_room_for_others() {
        let c = cfg();
        let mut q = Queue::default();
        assert!(q.fits(&client(1), 400, &c));
        q.push(job(client(1), 400));
        // The flooding lane is full; another client still fits.
        assert!(!q.fits(&client(1), 1, &c));
        assert!(q.fits(&client(2), 400, &c));
        q.push(job(client(2), 400));
        // The total bound.
        assert!(!q.fits(&client(3), 201, &c));
        assert!(q.fits(&client(3), 200, &c));
        // Too much for any lane at once.
        assert!(!Queue::default().fits(&client(4), 401, &c));
    }

    #[test]
    fn the_lane_count_is_bounded() {
        let c = PoolConfig {
            threads: 1,
            queue_txs: 1_000_000,
            lane_txs: 10,
        };
        let mut q = Queue::default();
        for i in 0..MAX_LANES {
            let lane = Lane::Client(IpAddr::from(std::net::Ipv6Addr::from(i as u128)));
            assert!(q.fits(&lane, 1, &c));
            q.push(job(lane, 1));
        }
        let one_more = Lane::Client(IpAddr::from(std::net::Ipv6Addr::from(u128::MAX)));
        assert!(!q.fits(&one_more, 1, &c));
        // An existing lane may still grow.
        let first = Lane::Client(IpAddr::from(std::net::Ipv6Addr::from(0u128)));
        assert!(q.fits(&first, 1, &c));
    }
}
