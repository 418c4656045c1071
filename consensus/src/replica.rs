//! The replica: state, dispatch and the normal case (PBFT §4.2-§4.3).

use std::collections::BTreeMap;

use aidledger_types::{Block, CommitCertificate, Hash, Signature, Timestamp};

use crate::config::Config;
use crate::io::{Input, Output, TimeoutKind};
use crate::message::{Envelope, Payload, SignedViewChange};
use crate::safety::{AheadVotes, SafetyState};
use crate::ConsensusError;

type Res = Result<(), ConsensusError>;

/// The last committed block, as far as the driver's storage knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommittedTip {
    /// 0 for genesis.
    pub height: u64,
    /// The block hash (the genesis hash at height 0).
    pub hash: Hash,
    /// The view of its commit certificate (0 at genesis).
    pub view: u64,
}

impl CommittedTip {
    pub fn genesis(genesis_hash: Hash) -> CommittedTip {
        CommittedTip {
            height: 0,
            hash: genesis_hash,
            view: 0,
        }
    }
}

/// What the driver said about a block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Validation {
    Pending,
    Valid,
}

/// Most messages buffered per future height from one sender: a pre-prepare,
/// a prepare and a commit in a couple of views, a view change and a new-view.
const FUTURE_PER_SENDER_MAX: usize = 8;

/// Most committed blocks from catch-up held for later heights.
pub(crate) const SYNC_BUFFER_MAX: u64 = 16;

/// Messages for one view at the height in flight (PBFT's log, §4.2).
#[derive(Default, Debug)]
pub(crate) struct Slot {
    pub(crate) pre_prepare: Option<(Hash, Signature)>,
    /// At most one entry per validator: the first vote counts.
    pub(crate) prepares: BTreeMap<u16, (Hash, Signature)>,
    /// Each voter's block, commit time and signature.
    pub(crate) commits: BTreeMap<u16, (Hash, Timestamp, Signature)>,
}

/// Pipelining (ADR 022): the pre-prepare accepted for the height after the
/// one in flight, in the current view, with its block and the driver's
/// verdict on it, executed on its parent: the block pre-prepared at the
/// height in flight, not committed yet.
#[derive(Debug)]
pub(crate) struct AheadSlot {
    pub(crate) view: u64,
    pub(crate) hash: Hash,
    pub(crate) pre_prepare_sig: Signature,
    /// Dropped when the driver refuses it: the pre-prepare stays buffered
    /// for the height itself, where the block is checked again on its
    /// committed parent.
    pub(crate) block: Option<Block>,
    pub(crate) validation: Option<Validation>,
    /// The driver refused it once: copies of it are not checked again
    /// ahead (each check executes the block), only at the height itself.
    pub(crate) refused: bool,
    /// This replica's prepare for it, once sent.
    pub(crate) my_prepare: Option<Signature>,
}

/// One PBFT replica. See the crate docs for the driver's contract.
pub struct Replica {
    pub(crate) cfg: Config,
    pub(crate) me: u16,
    pub(crate) vset_hash: Hash,
    pub(crate) tip: CommittedTip,
    /// The safety state; `dirty` when it differs from the last persisted one.
    pub(crate) s: SafetyState,
    pub(crate) dirty: bool,
    /// By view, for the height in flight.
    pub(crate) slots: BTreeMap<u64, Slot>,
    /// Candidate blocks for the height in flight, by hash.
    pub(crate) blocks: BTreeMap<Hash, Block>,
    pub(crate) validation: BTreeMap<Hash, Validation>,
    /// View changes for the height in flight: view -> sender -> message.
    pub(crate) view_changes: BTreeMap<u64, BTreeMap<u16, SignedViewChange>>,
    /// Verified messages for future heights, replayed on entering them.
    pub(crate) future: BTreeMap<u64, Vec<Envelope>>,
    /// Certified blocks from catch-up, by height, waiting for validation.
    pub(crate) synced: BTreeMap<u64, (Block, CommitCertificate)>,
    pub(crate) awaiting_proposal: Option<u64>,
    /// Pipelining: the next height's pre-prepare in the current view.
    pub(crate) ahead: Option<AheadSlot>,
    /// Pipelining: the view in which this primary asked for the next
    /// height's block.
    pub(crate) awaiting_ahead: Option<u64>,
    pub(crate) my_new_view: Option<Envelope>,
    /// This replica's own view changes at the height in flight, by view,
    /// to resend to stragglers (bounded by the view window).
    pub(crate) my_view_changes: BTreeMap<u64, Envelope>,
    /// When an old view change was last resent to each peer: resends are
    /// rate-limited, or two replicas that both left a view would keep
    /// answering each other's answers.
    pub(crate) last_resend_ms: BTreeMap<u16, u64>,
    /// When our new-view was last resent to each peer: rate-limited the
    /// same way (bounded by the validator count).
    pub(crate) last_new_view_resend_ms: BTreeMap<u16, u64>,
    /// Validators seen changing to a view beyond the window at this
    /// height (signature checked), and when each was last checked: f+1 of
    /// them make this replica join, however far ahead they are.
    pub(crate) far_views: BTreeMap<u16, u64>,
    /// When each missing prepared block was last asked for (this height).
    pub(crate) last_fetch_ms: BTreeMap<Hash, u64>,
    pub(crate) last_far_check_ms: BTreeMap<u16, u64>,
    /// When a sync was last requested from each peer. Per peer, so a
    /// byzantine peer that lures requests to itself cannot starve requests
    /// to correct ones. At most one entry per validator.
    pub(crate) last_sync_ms: BTreeMap<u16, u64>,
    pub(crate) now_ms: u64,
    pub(crate) out: Vec<Output>,
    last_rejection: Option<ConsensusError>,
    rejections: u64,
    /// With `wait_for_work`: the round timer of the current view has not
    /// been started, because nothing was to do yet.
    pub(crate) idle: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("height", &self.s.height)
            .field("view", &self.s.view)
            .field("active", &self.s.view_active)
            .finish()
    }
}

impl Replica {
    /// A replica starting right after `tip` (genesis: [`CommittedTip::genesis`]).
    pub fn new(cfg: Config, tip: CommittedTip) -> Result<Replica, ConsensusError> {
        let me = cfg.my_index()?;
        let vset_hash = cfg.validators.hash();
        Ok(Replica {
            cfg,
            me,
            vset_hash,
            tip,
            s: SafetyState::fresh(tip.height + 1, tip.view),
            dirty: true,
            slots: BTreeMap::new(),
            blocks: BTreeMap::new(),
            validation: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            future: BTreeMap::new(),
            synced: BTreeMap::new(),
            awaiting_proposal: None,
            ahead: None,
            awaiting_ahead: None,
            my_new_view: None,
            my_view_changes: BTreeMap::new(),
            last_resend_ms: BTreeMap::new(),
            last_new_view_resend_ms: BTreeMap::new(),
            far_views: BTreeMap::new(),
            last_fetch_ms: BTreeMap::new(),
            last_far_check_ms: BTreeMap::new(),
            last_sync_ms: BTreeMap::new(),
            now_ms: 0,
            out: Vec::new(),
            last_rejection: None,
            rejections: 0,
            idle: false,
        })
    }

    /// Rebuilds a replica after a crash from its last persisted safety state
    /// and the driver's committed tip. Messages it sent before the crash are
    /// never contradicted: its votes and view are in `safety`.
    pub fn restore(
        cfg: Config,
        safety: SafetyState,
        tip: CommittedTip,
    ) -> Result<Replica, ConsensusError> {
        let mut r = Replica::new(cfg, tip)?;
        if safety.height == tip.height + 1 {
            if safety.start_view > safety.view {
                return Err(ConsensusError::Restore {
                    reason: format!(
                        "start view {} above view {}",
                        safety.start_view, safety.view
                    ),
                });
            }
            r.s = safety;
            r.dirty = false;
        } else if safety.height == tip.height {
            // The state is about the tip's height, committed since: start
            // the next one fresh, keeping the votes this replica cast there
            // ahead (pipelining, ADR 022); it must never contradict them.
            if let Some(ahead) = safety.ahead {
                r.enter_with(tip.height + 1, tip.view.max(ahead.top_view()), Some(ahead));
            }
        } else if safety.height > tip.height + 1 {
            // The driver persists commits before the safety state of the
            // next height, so this means committed blocks were lost.
            return Err(ConsensusError::Restore {
                reason: format!(
                    "safety state is for height {} but the committed tip is {}",
                    safety.height, tip.height
                ),
            });
        }
        // Otherwise the state is about a height that has since committed:
        // start the next one fresh.
        Ok(r)
    }

    /// Handles one input at driver time `now_ms` and returns what to do, in
    /// order (see [`crate::io`] for the contract).
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.now_ms = now_ms;
        let result = match input {
            // §4.5.2 (timers) and §4.4 (a replica changing views keeps
            // sending its view change): (re)start from the safety state.
            Input::Start => {
                self.on_start();
                Ok(())
            }
            // §4.2-§4.4: every protocol message, checked and verified here.
            Input::Message(bytes) => self.on_message(&bytes),
            // §4.4/§4.5.2: the view-change timers.
            Input::Timeout { kind, view, height } => self.on_timeout(kind, view, height),
            // §4.2: the primary assigns the next sequence number to a request
            // (here: a block its driver built and executed).
            Input::ProposalReady { block } => self.on_proposal_ready(block),
            // §4.6: backups check the primary's non-deterministic choices
            // (timestamp, state root) before accepting its pre-prepare.
            Input::BlockValidated {
                height,
                block_hash,
                valid,
            } => self.on_block_validated(height, block_hash, valid),
            // §4.3 and TOCS §6.2: state transfer to a replica that fell behind.
            Input::Synced { block, certificate } => self.on_synced(block, certificate),
            // §4.5.1 retransmission, triggered by the link coming back
            // rather than by the next timeout.
            Input::PeerConnected { validator } => {
                self.on_peer_connected(validator);
                Ok(())
            }
            // §4.4: the new primary needs the block of the highest prepared
            // certificate to re-propose it.
            Input::BlockFetched { block } => self.on_block_fetched(block),
            // ADR 017: an idle first round learns there is work.
            Input::Work => {
                self.wake();
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(replica = self.me, height = self.s.height, view = self.s.view, error = %e, "input rejected");
            self.rejections += 1;
            self.last_rejection = Some(e);
        }
        self.flush_persist();
        std::mem::take(&mut self.out)
    }

    // ----- accessors -------------------------------------------------------

    pub fn index(&self) -> u16 {
        self.me
    }
    pub fn height(&self) -> u64 {
        self.s.height
    }
    pub fn view(&self) -> u64 {
        self.s.view
    }
    pub fn is_view_active(&self) -> bool {
        self.s.view_active
    }
    pub fn committed_tip(&self) -> CommittedTip {
        self.tip
    }
    pub fn safety_state(&self) -> &SafetyState {
        &self.s
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Why the last refused input was refused.
    pub fn last_rejection(&self) -> Option<&ConsensusError> {
        self.last_rejection.as_ref()
    }
    /// How many inputs were refused so far.
    pub fn rejections(&self) -> u64 {
        self.rejections
    }
    /// Clears [`Replica::last_rejection`].
    pub fn take_rejection(&mut self) -> Option<ConsensusError> {
        self.last_rejection.take()
    }

    // ----- output helpers --------------------------------------------------

    /// Emits the safety state if it changed. Called before every send, so
    /// persisting always precedes the messages that depend on it.
    pub(crate) fn flush_persist(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.out.push(Output::PersistSafetyState(self.s.clone()));
        }
    }
    pub(crate) fn broadcast(&mut self, env: Envelope) {
        self.flush_persist();
        self.out.push(Output::Broadcast(env));
    }
    pub(crate) fn send(&mut self, to: u16, env: Envelope) {
        self.flush_persist();
        self.out.push(Output::Send { to, message: env });
    }
    pub(crate) fn sign(&self, payload: Payload, block: Option<Block>) -> Envelope {
        Envelope::sign(&self.cfg.key, &self.cfg.chain_id, self.me, payload, block)
    }
    pub(crate) fn leader(&self, view: u64) -> u16 {
        self.cfg.validators.leader_index(view) as u16
    }
    pub(crate) fn f(&self) -> usize {
        self.cfg.validators.max_faulty()
    }
    pub(crate) fn schedule(&mut self, kind: TimeoutKind) {
        let k = self.s.view.saturating_sub(self.s.start_view);
        self.out.push(Output::ScheduleTimeout {
            kind,
            view: self.s.view,
            height: self.s.height,
            after_ms: self.cfg.timeout_ms(k),
        });
    }
    pub(crate) fn maybe_sync(&mut self, peer: u16) {
        if peer == self.me {
            return;
        }
        let due = self
            .last_sync_ms
            .get(&peer)
            .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.sync_retry_ms);
        if due && (peer as usize) < self.cfg.validators.len() {
            self.last_sync_ms.insert(peer, self.now_ms);
            self.out.push(Output::RequestSync {
                from_height: self.s.height,
                peer,
            });
        }
    }

    /// Starts the round timer of an idle first round: there is work now.
    pub(crate) fn wake(&mut self) {
        if self.idle && self.s.view_active {
            self.idle = false;
            self.schedule(TimeoutKind::Round);
        }
    }

    /// Whether the current round waits for work with no timer running.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    // ----- entering heights and views --------------------------------------

    /// A fresh safety state for `height` in `view`, with the votes this
    /// replica already cast there while it was the next height.
    fn enter_with(&mut self, height: u64, view: u64, ahead: Option<AheadVotes>) {
        self.s = SafetyState::fresh(height, view);
        if let Some(a) = ahead {
            self.s.pre_prepared = a.pre_prepared;
            self.s.prepare_vote = a.prepare_vote;
        }
        self.dirty = true;
    }

    /// §4.2: sequence numbers advance after a commit. The next height starts
    /// in the view of the certificate that committed this one, or, with
    /// pipelining, in the highest view this replica already voted at that
    /// height, if higher (docs/consensus.md, P5). The pre-prepare this
    /// replica accepted ahead, if it extends the block just committed,
    /// becomes the height's, with the driver's verdict.
    pub(crate) fn enter_height(&mut self, height: u64, view: u64) {
        let votes = self.s.ahead.take();
        let view = match votes {
            Some(a) if !self.cfg.bug_fall_below_ahead_votes => view.max(a.top_view()),
            _ => view,
        };
        let carried = self.ahead.take().filter(|a| {
            a.view == view
                && a.block
                    .as_ref()
                    .is_some_and(|b| b.header.parent_hash == self.tip.hash)
        });
        self.enter_with(height, view, votes);
        self.slots.clear();
        self.blocks.clear();
        self.validation.clear();
        self.view_changes.clear();
        self.awaiting_proposal = None;
        self.awaiting_ahead = None;
        self.my_new_view = None;
        self.my_view_changes.clear();
        self.far_views.clear();
        self.last_fetch_ms.clear();
        self.future.retain(|h, _| *h >= height);
        self.synced.retain(|h, _| *h >= height);
        let buffered = self.future.remove(&height).unwrap_or_default();
        if let Some(a) = carried {
            let slot = self.slots.entry(view).or_default();
            slot.pre_prepare = Some((a.hash, a.pre_prepare_sig));
            if let Some(sig) = a.my_prepare {
                slot.prepares.insert(self.me, (a.hash, sig));
            }
            if let Some(v) = a.validation.filter(|v| *v == Validation::Valid) {
                self.validation.insert(a.hash, v);
            }
            if let Some(b) = a.block {
                self.blocks.insert(a.hash, b);
            }
        }
        self.start_round();
        if self
            .slots
            .get(&view)
            .is_some_and(|s| s.pre_prepare.is_some())
        {
            // A pre-prepare carried over: there is work at this height.
            self.wake();
        }
        for env in buffered {
            if self.s.height != height {
                break;
            }
            if let Err(e) = self.dispatch(env) {
                tracing::trace!(error = %e, "buffered message refused");
            }
        }
    }

    /// Starts work in the current (active) view: the round timer, the
    /// primary's proposal request, and any pre-prepare already received.
    pub(crate) fn start_round(&mut self) {
        // A quiet chain: in the height's first view, nothing forces a view
        // change until there is work (ADR 017). After a view change at the
        // height (view above the start view) the timer always runs.
        if self.cfg.wait_for_work && self.s.view == self.s.start_view {
            self.idle = true;
        } else {
            self.idle = false;
            self.schedule(TimeoutKind::Round);
        }
        let view = self.s.view;
        if self.leader(view) == self.me && self.s.pre_prepared.map(|p| p.0) != Some(view) {
            self.awaiting_proposal = Some(view);
            self.out.push(Output::RequestProposal {
                height: self.s.height,
                view,
                parent_hash: self.tip.hash,
                now_ms: self.now_ms,
            });
        }
        if let Some((hash, _)) = self.slots.get(&view).and_then(|s| s.pre_prepare) {
            self.request_validation(hash);
        }
        self.resume_own_pre_prepare();
        self.progress();
    }

    /// A primary that restarted after pre-preparing in this view must not
    /// propose another block (that would be equivocation), and its block
    /// is not in the safety state. It resends the pre-prepare if it holds
    /// the block (it prepared it), or asks its peers for it by hash: any
    /// backup that accepted the pre-prepare has it. If none has, none
    /// voted for it, and the round timer moves the consortium on. Asked
    /// again whenever a peer connects (at a restart none is connected yet).
    pub(crate) fn resume_own_pre_prepare(&mut self) {
        let view = self.s.view;
        let Some((v, hash)) = self.s.pre_prepared else {
            return;
        };
        if v != view || self.leader(view) != self.me || !self.s.view_active {
            return;
        }
        if self.slots.get(&view).and_then(|s| s.pre_prepare).is_some() {
            return; // Sent by this incarnation.
        }
        match self.candidate_block(&hash).cloned() {
            Some(block) => self.resend_own_pre_prepare(block),
            None => {
                let from = (0..self.cfg.validators.len() as u16)
                    .filter(|i| *i != self.me)
                    .collect();
                self.out.push(Output::FetchBlock {
                    height: self.s.height,
                    hash,
                    from,
                });
            }
        }
    }

    /// Signs and sends again the pre-prepare this primary persisted for
    /// the current view (the same signed bytes: ed25519 is deterministic).
    pub(crate) fn resend_own_pre_prepare(&mut self, block: Block) {
        let view = self.s.view;
        let hash = block.hash();
        if self.s.pre_prepared != Some((view, hash)) || block.height() != self.s.height {
            return;
        }
        tracing::info!(
            replica = self.me,
            height = self.s.height,
            view,
            "resending this primary's pre-prepare after a restart"
        );
        // It validated this block before it pre-prepared it.
        let _ = self.send_own_pre_prepare(block);
    }

    /// Signs and broadcasts the pre-prepare for `block` in the current view
    /// (already recorded in `s.pre_prepared`), keeping the block as valid.
    pub(crate) fn send_own_pre_prepare(&mut self, block: Block) -> Result<(), ConsensusError> {
        let view = self.s.view;
        let hash = block.hash();
        self.validation.insert(hash, Validation::Valid);
        self.insert_block(block.clone())?;
        let env = self.sign(
            Payload::PrePrepare {
                view,
                height: self.s.height,
                block_hash: hash,
            },
            Some(block),
        );
        self.slots.entry(view).or_default().pre_prepare = Some((hash, env.signature));
        self.broadcast(env);
        Ok(())
    }

    fn on_start(&mut self) {
        if self.s.view_active {
            self.start_round();
        } else {
            // §4.4: still changing view; resend the (persisted) view change.
            self.send_view_change();
            self.schedule(TimeoutKind::ViewChange);
        }
    }

    // ----- messages --------------------------------------------------------

    fn on_message(&mut self, bytes: &[u8]) -> Res {
        let env = Envelope::decode(bytes, self.cfg.message_max_bytes)?;
        let n = self.cfg.validators.len();
        if env.from as usize >= n {
            return Err(ConsensusError::UnknownSender { from: env.from, n });
        }
        if env.from == self.me {
            return Err(ConsensusError::FromSelf { from: env.from });
        }
        let h = env.payload.height();
        let current = self.s.height;
        // Cheap window checks before the signature check.
        if h < current {
            return Err(ConsensusError::StaleHeight { got: h, current });
        }
        let v = env.payload.view();
        if v > self.s.view.saturating_add(self.cfg.view_window) && h == current {
            if matches!(env.payload, Payload::ViewChange(_)) {
                self.far_view_change(&env, v);
            }
            return Err(ConsensusError::ViewOutOfWindow {
                got: v,
                current: self.s.view,
            });
        }
        if h == current && self.is_duplicate(&env) {
            // The first vote of each sender counts; a repeat (network
            // duplicate or a byzantine second vote) changes nothing, so it
            // is not worth a signature check.
            return Err(ConsensusError::Ignored {
                reason: "duplicate",
            });
        }
        env.verify_signature(&self.cfg.chain_id, &self.cfg.validators)?;
        if h > current {
            // A signed message from a later height: the sender committed
            // blocks this replica has not. Sync when it is clearly ahead.
            let changing = matches!(env.payload, Payload::ViewChange(_) | Payload::NewView(_));
            if h >= current + 2 || changing {
                self.maybe_sync(env.from);
            }
            if h > current + self.cfg.height_window {
                return Err(ConsensusError::FutureHeight { got: h, current });
            }
            if h == current + 1 && self.cfg.pipeline {
                if let Payload::PrePrepare {
                    view, block_hash, ..
                } = env.payload
                {
                    // Pipelining: validated and prepared now, on its parent
                    // at this height; also buffered below for the height
                    // itself.
                    if let Err(e) = self.on_ahead_pre_prepare(
                        env.from,
                        view,
                        block_hash,
                        env.signature,
                        env.block.clone(),
                    ) {
                        tracing::trace!(error = %e, "pre-prepare ahead not taken");
                    }
                }
            }
            let cap = self.cfg.future_cap();
            let q = self.future.entry(h).or_default();
            if q.len() >= cap {
                return Err(ConsensusError::BufferFull {
                    what: "future-height messages",
                    limit: cap,
                });
            }
            if q.iter()
                .any(|e| e.signature == env.signature && e.from == env.from)
            {
                return Err(ConsensusError::Ignored {
                    reason: "duplicate",
                });
            }
            // A share per sender, so one byzantine replica cannot crowd out
            // the messages of the others.
            if q.iter().filter(|e| e.from == env.from).count() >= FUTURE_PER_SENDER_MAX {
                return Err(ConsensusError::BufferFull {
                    what: "future-height messages from one sender",
                    limit: FUTURE_PER_SENDER_MAX,
                });
            }
            q.push(env);
            return Ok(());
        }
        self.dispatch(env)
    }

    /// §4.5.2 beyond the view window: a view change for a view more than
    /// `view_window` ahead at this height is not buffered, but its
    /// signature is checked (at most once per sender per base timeout, so
    /// a flood costs one check per sender) and its view remembered. Once
    /// f+1 validators are known to be changing to views above this one,
    /// at least one of them is correct: join the lowest such view among
    /// the f+1 highest, as the in-window rule does. Without this, a
    /// replica that missed more than the window's views at one height
    /// (away while the others changed view many times) could only catch
    /// up through its own doubling timeouts.
    fn far_view_change(&mut self, env: &Envelope, v: u64) {
        let due = self
            .last_far_check_ms
            .get(&env.from)
            .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.timeout_base_ms);
        if !due {
            return;
        }
        self.last_far_check_ms.insert(env.from, self.now_ms);
        if env
            .verify_signature(&self.cfg.chain_id, &self.cfg.validators)
            .is_err()
        {
            return;
        }
        let w = self.far_views.entry(env.from).or_insert(0);
        *w = (*w).max(v);
        let mut above: Vec<u64> = self
            .far_views
            .iter()
            .filter(|(from, w)| **from != self.me && **w > self.s.view)
            .map(|(_, w)| *w)
            .collect();
        let f = self.f();
        if above.len() > f {
            above.sort_unstable_by(|a, b| b.cmp(a));
            let target = above[f];
            tracing::info!(
                height = self.s.height,
                from = self.s.view,
                to = target,
                "f+1 validators are changing to views beyond the window; joining"
            );
            self.start_view_change(target);
        }
    }

    /// A candidate block this replica holds (pre-prepared, re-proposed or
    /// prepared at the current height), for a peer that fetches it by hash.
    pub fn candidate_block(&self, hash: &Hash) -> Option<&Block> {
        self.blocks
            .get(hash)
            .or_else(|| self.s.prepared_block.as_ref().filter(|b| b.hash() == *hash))
            .or_else(|| {
                self.ahead
                    .as_ref()
                    .filter(|a| a.hash == *hash)
                    .and_then(|a| a.block.as_ref())
            })
    }

    /// The buffered messages for later heights, encoded, emptying the
    /// buffer. A host that replaces this replica (a new validator set)
    /// feeds them to the new one, which checks them against its own set:
    /// they were verified against this replica's set, which may not be
    /// the one that signs the next height.
    pub fn take_buffered(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.future)
            .into_values()
            .flatten()
            .map(|e| e.encode())
            .collect()
    }

    /// True if a message of this kind from this sender for this view is
    /// already logged at the height in flight.
    fn is_duplicate(&self, env: &Envelope) -> bool {
        let slot = |v: &u64| self.slots.get(v);
        match &env.payload {
            Payload::PrePrepare {
                view, block_hash, ..
            } => {
                slot(view)
                    .and_then(|s| s.pre_prepare)
                    .is_some_and(|(h, _)| h == *block_hash)
                    && self.blocks.contains_key(block_hash)
            }
            Payload::Prepare { view, .. } => {
                slot(view).is_some_and(|s| s.prepares.contains_key(&env.from))
            }
            Payload::Commit { view, .. } => {
                slot(view).is_some_and(|s| s.commits.contains_key(&env.from))
            }
            Payload::ViewChange(vc) => self
                .view_changes
                .get(&vc.new_view)
                .is_some_and(|m| m.contains_key(&env.from)),
            Payload::NewView(_) => false,
        }
    }

    /// Routes a verified message for the height in flight.
    pub(crate) fn dispatch(&mut self, env: Envelope) -> Res {
        let v = env.payload.view();
        let lo = self.s.view.saturating_sub(self.cfg.view_lookback);
        if v < lo || v > self.s.view.saturating_add(self.cfg.view_window) {
            return Err(ConsensusError::ViewOutOfWindow {
                got: v,
                current: self.s.view,
            });
        }
        let Envelope {
            from,
            payload,
            signature,
            block,
        } = env;
        match payload {
            // §4.2: a backup accepts a pre-prepare if it is in view v, the
            // signature is right, it has not accepted another pre-prepare for
            // (v, n) with a different digest, and n is within the window.
            Payload::PrePrepare {
                view, block_hash, ..
            } => self.on_pre_prepare(from, view, block_hash, signature, block),
            // §4.2: prepares are accepted from backups, logged per (v, n).
            Payload::Prepare {
                view, block_hash, ..
            } => self.on_prepare(from, view, block_hash, signature),
            // §4.3: commits are accepted from any replica, logged per (v, n).
            Payload::Commit {
                view,
                block_hash,
                time,
                ..
            } => self.on_commit(from, view, block_hash, time, signature),
            // §4.4: view-change messages.
            Payload::ViewChange(vc) => self.on_view_change(from, vc, signature, block),
            // §4.4: new-view messages.
            Payload::NewView(nv) => self.on_new_view(from, nv, block),
        }
    }

    /// Checks a block header against what this replica knows. `fresh`
    /// blocks were proposed in `view` by its primary; re-proposed ones come
    /// from an earlier view, through a new-view.
    pub(crate) fn check_block(&self, block: &Block, view: u64, fresh: bool) -> Res {
        if block.header.parent_hash != self.tip.hash {
            return Err(ConsensusError::BadBlock {
                reason: "parent is not the committed tip".into(),
            });
        }
        self.check_block_at(block, view, fresh, self.s.height)
    }

    /// [`Replica::check_block`] at `height`, leaving the parent to the
    /// caller: a block for the next height (pipelining) extends a block
    /// not committed yet.
    pub(crate) fn check_block_at(&self, block: &Block, view: u64, fresh: bool, height: u64) -> Res {
        let h = &block.header;
        let bad = |r: String| ConsensusError::BadBlock { reason: r };
        if h.chain_id != self.cfg.chain_id {
            return Err(bad("wrong chain id".into()));
        }
        if h.height != height {
            return Err(bad(format!("height {} != {}", h.height, height)));
        }
        if h.validator_set_hash != self.vset_hash {
            return Err(bad("wrong validator set".into()));
        }
        let proposed_in = if fresh {
            if h.view != view {
                return Err(bad(format!("header view {} != {}", h.view, view)));
            }
            view
        } else {
            if h.view > view {
                return Err(bad("re-proposed block from a later view".into()));
            }
            h.view
        };
        let leader = self.leader(proposed_in) as usize;
        if self.cfg.validators.get(leader).map(|v| v.key) != Some(h.proposer) {
            return Err(bad("proposer is not the primary of its view".into()));
        }
        if !block.body_matches_header() {
            return Err(bad("body does not match header".into()));
        }
        Ok(())
    }

    pub(crate) fn insert_block(&mut self, block: Block) -> Res {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) {
            return Ok(());
        }
        let cap = 2 * (self.cfg.view_window + self.cfg.view_lookback) as usize
            + self.cfg.validators.len()
            + 4;
        if self.blocks.len() >= cap {
            return Err(ConsensusError::BufferFull {
                what: "candidate blocks",
                limit: cap,
            });
        }
        self.blocks.insert(hash, block);
        Ok(())
    }
}
