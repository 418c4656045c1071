//! View changes (PBFT §4.4) and the liveness rules of §4.5.2.

use std::collections::{BTreeMap, BTreeSet};

use aidledger_crypto::{verify, Purpose};
use aidledger_types::{Block, Hash, Signature};

use crate::io::TimeoutKind;
use crate::message::{
    signed_message, NewView, Payload, PreparedCert, SignedViewChange, ViewChange,
};
use crate::replica::Replica;
use crate::ConsensusError;

type Res = Result<(), ConsensusError>;

impl Replica {
    pub(crate) fn on_timeout(&mut self, kind: TimeoutKind, view: u64, height: u64) -> Res {
        if height != self.s.height || view != self.s.view {
            return Err(ConsensusError::Ignored {
                reason: "stale timeout",
            });
        }
        match kind {
            // §4.4: a backup whose timer expires in view v starts a view
            // change to v+1.
            TimeoutKind::Round if self.s.view_active => {
                self.start_view_change(view + 1);
                Ok(())
            }
            // §4.5.2: the view-change timer runs once 2f+1 view changes for
            // v+1 are in; if it expires before a valid new-view arrives, start
            // the change to v+2 with a doubled timeout. Without that quorum
            // the replica does not move on (it would only run ahead of the
            // others): it retransmits its view change and waits.
            TimeoutKind::ViewChange if !self.s.view_active => {
                let have = self.view_changes.get(&view).map_or(0, |m| m.len());
                if have >= self.cfg.quorum() {
                    self.start_view_change(view + 1);
                } else {
                    self.send_view_change();
                    self.schedule(TimeoutKind::ViewChange);
                }
                Ok(())
            }
            _ => Err(ConsensusError::Ignored {
                reason: "timeout for another phase",
            }),
        }
    }

    /// Moves to `view` (not yet active) and multicasts a view change that
    /// carries the highest prepared certificate (§4.4). The new view is
    /// persisted before the message leaves, so a restart cannot go back.
    pub(crate) fn start_view_change(&mut self, view: u64) {
        self.set_view(view, false);
        self.send_view_change();
        self.schedule(TimeoutKind::ViewChange);
        self.try_new_view(view);
    }

    pub(crate) fn send_view_change(&mut self) {
        if let Some(env) = self.my_view_changes.get(&self.s.view).cloned() {
            // Retransmission (§4.5.1): the same message again.
            self.broadcast(env);
            return;
        }
        // After a restart the prepared block is known only from the safety
        // state; keep it where a new primary (maybe this one) looks.
        if let Some(b) = self.s.prepared_block.clone() {
            self.blocks.entry(b.hash()).or_insert(b);
        }
        let mutant = self.cfg.bug_view_change_without_cert;
        let vc = ViewChange {
            new_view: self.s.view,
            height: self.s.height,
            prepared: self.s.prepared.clone().filter(|_| !mutant),
        };
        let env = self.sign(
            Payload::ViewChange(vc.clone()),
            self.s.prepared_block.clone().filter(|_| !mutant),
        );
        let me = self.me;
        self.view_changes.entry(self.s.view).or_default().insert(
            me,
            SignedViewChange {
                from: me,
                view_change: vc,
                signature: env.signature,
            },
        );
        let lo = self.s.view.saturating_sub(self.cfg.view_window);
        self.my_view_changes.retain(|v, _| *v >= lo);
        self.my_view_changes.insert(self.s.view, env.clone());
        self.broadcast(env);
    }

    /// Sets the view and drops state that fell out of the window.
    pub(crate) fn set_view(&mut self, view: u64, active: bool) {
        self.s.view = view;
        self.s.view_active = active;
        self.dirty = true;
        self.awaiting_proposal = None;
        // The next height's work was for the view left; the votes cast
        // there stay in the safety state.
        self.ahead = None;
        self.awaiting_ahead = None;
        self.my_new_view = None;
        let lo = view.saturating_sub(self.cfg.view_lookback);
        self.slots.retain(|v, _| *v >= lo);
        self.view_changes.retain(|v, _| *v >= view);
        let mut keep: BTreeSet<Hash> = self
            .slots
            .values()
            .filter_map(|s| s.pre_prepare.map(|p| p.0))
            .collect();
        keep.extend(self.s.prepared.as_ref().map(|p| p.block_hash));
        for vcs in self.view_changes.values() {
            for svc in vcs.values() {
                keep.extend(svc.view_change.prepared.as_ref().map(|p| p.block_hash));
            }
        }
        self.blocks.retain(|h, _| keep.contains(h));
    }

    /// Checks a prepared certificate for the height in flight: the primary's
    /// pre-prepare signature and `quorum - 1` prepares from distinct backups.
    pub(crate) fn check_prepared_cert(&self, p: &PreparedCert) -> Res {
        let bad = |r: &str| ConsensusError::BadPreparedCert {
            reason: r.to_string(),
        };
        if p.height != self.s.height {
            return Err(bad("wrong height"));
        }
        let chain = &self.cfg.chain_id;
        let leader = self.leader(p.view);
        let key_of = |i: u16| self.cfg.validators.get(i as usize).map(|v| v.key);
        let check = |from: u16, payload: &Payload, sig: &Signature| -> bool {
            let Some(key) = key_of(from) else {
                return false;
            };
            let (purpose, bytes) = signed_message(chain, payload);
            debug_assert_eq!(purpose, Purpose::Consensus);
            verify(&key, chain, purpose, &bytes, sig).is_ok()
        };
        let pp = Payload::PrePrepare {
            view: p.view,
            height: p.height,
            block_hash: p.block_hash,
        };
        if !check(leader, &pp, &p.pre_prepare_sig) {
            return Err(bad("bad pre-prepare signature"));
        }
        if p.prepares.len() + 1 < self.cfg.quorum() {
            return Err(bad("too few prepares"));
        }
        let prep = Payload::Prepare {
            view: p.view,
            height: p.height,
            block_hash: p.block_hash,
        };
        let mut last: Option<u16> = None;
        for s in &p.prepares {
            if last.is_some_and(|l| s.validator <= l) || s.validator == leader {
                return Err(bad("prepares not from distinct backups in order"));
            }
            last = Some(s.validator);
            if !check(s.validator, &prep, &s.signature) {
                return Err(bad("bad prepare signature"));
            }
        }
        Ok(())
    }

    /// A validator's link came back. While changing view, it gets this
    /// replica's view change again (a healed 2|2 split has no quorum on
    /// either side until the halves hear each other); the primary of an
    /// active view resends its new-view. Both at most once per base
    /// timeout per peer, the same budget as the straggler resends.
    pub(crate) fn on_peer_connected(&mut self, validator: u16) {
        if validator == self.me || usize::from(validator) >= self.cfg.validators.len() {
            return;
        }
        if !self.s.view_active {
            let due = self
                .last_resend_ms
                .get(&validator)
                .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.timeout_base_ms);
            if let (true, Some(env)) = (due, self.my_view_changes.get(&self.s.view).cloned()) {
                self.last_resend_ms.insert(validator, self.now_ms);
                self.send(validator, env);
            }
            return;
        }
        self.resume_own_pre_prepare();
        let due = self
            .last_new_view_resend_ms
            .get(&validator)
            .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.timeout_base_ms);
        if let (true, Some(nv)) = (due, self.my_new_view.clone()) {
            self.last_new_view_resend_ms.insert(validator, self.now_ms);
            self.send(validator, nv);
        }
    }

    /// Asks the host for a prepared block by hash, at most once per base
    /// timeout per block.
    fn fetch_prepared_block(&mut self, w: u64, hash: Hash) {
        let due = self
            .last_fetch_ms
            .get(&hash)
            .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.timeout_base_ms);
        if !due || self.last_fetch_ms.len() >= 64 {
            return;
        }
        self.last_fetch_ms.insert(hash, self.now_ms);
        let from: Vec<u16> = self
            .view_changes
            .get(&w)
            .map(|vcs| {
                vcs.values()
                    .filter(|s| {
                        s.from != self.me
                            && s.view_change
                                .prepared
                                .as_ref()
                                .is_some_and(|p| p.block_hash == hash)
                    })
                    .map(|s| s.from)
                    .collect()
            })
            .unwrap_or_default();
        self.out.push(crate::Output::FetchBlock {
            height: self.s.height,
            hash,
            from,
        });
    }

    /// A fetched candidate block: kept only if a view change at this
    /// height carries a (checked) prepared certificate for its hash; then
    /// the new-view can go out.
    pub(crate) fn on_block_fetched(&mut self, block: Block) -> Res {
        let hash = block.hash();
        if block.header.height != self.s.height {
            return Err(ConsensusError::Ignored {
                reason: "fetched block for another height",
            });
        }
        // A restarted primary's own pre-prepared block, fetched back.
        if self.s.pre_prepared == Some((self.s.view, hash))
            && self.s.view_active
            && self.leader(self.s.view) == self.me
            && self
                .slots
                .get(&self.s.view)
                .and_then(|s| s.pre_prepare)
                .is_none()
        {
            self.resend_own_pre_prepare(block);
            self.progress();
            return Ok(());
        }
        let named = self
            .view_changes
            .values()
            .flat_map(|m| m.values())
            .any(|s| {
                s.view_change
                    .prepared
                    .as_ref()
                    .is_some_and(|p| p.block_hash == hash && p.height == self.s.height)
            });
        if !named {
            return Err(ConsensusError::Ignored {
                reason: "fetched block no certificate names",
            });
        }
        self.insert_block(block)?;
        let w = self.s.view;
        self.try_new_view(w);
        Ok(())
    }

    pub(crate) fn on_view_change(
        &mut self,
        from: u16,
        vc: ViewChange,
        signature: Signature,
        block: Option<Block>,
    ) -> Res {
        let w = vc.new_view;
        if w < self.s.view {
            // A straggler still trying to gather view changes for w: give it
            // ours (we only left w with a quorum for it), so it can follow.
            let due = self
                .last_resend_ms
                .get(&from)
                .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.timeout_base_ms);
            if let (true, Some(env)) = (due, self.my_view_changes.get(&w).cloned()) {
                self.last_resend_ms.insert(from, self.now_ms);
                self.send(from, env);
                return Ok(());
            }
            return Err(ConsensusError::Ignored {
                reason: "view change for an older view",
            });
        }
        if w == self.s.view && self.s.view_active {
            // A straggler still changing to the view we are in: the primary
            // resends its new-view (retransmission, §4.5.1), at most once
            // per base timeout per peer. A new-view carries 2f+1 view
            // changes and perhaps a block: unlimited, every repeated view
            // change (cheap to send, one signature to check) would buy a
            // large broadcast, an amplifier for a byzantine member.
            let due = self
                .last_new_view_resend_ms
                .get(&from)
                .is_none_or(|t| self.now_ms.saturating_sub(*t) >= self.cfg.timeout_base_ms);
            if let (true, Some(nv)) = (due, self.my_new_view.clone()) {
                self.last_new_view_resend_ms.insert(from, self.now_ms);
                self.send(from, nv);
            }
            return Ok(());
        }
        if let Some(p) = &vc.prepared {
            if p.view >= w {
                return Err(ConsensusError::BadPreparedCert {
                    reason: "prepared in a view not below the new view".into(),
                });
            }
            self.check_prepared_cert(p)?;
        }
        let per_view = self.view_changes.entry(w).or_default();
        if per_view.contains_key(&from) {
            return Ok(());
        }
        per_view.insert(
            from,
            SignedViewChange {
                from,
                view_change: vc,
                signature,
            },
        );
        if let Some(b) = block {
            // Kept so a new primary can re-propose it.
            self.insert_block(b)?;
        }
        // §4.5.2: f+1 view changes for higher views show that at least one
        // correct replica timed out; join the smallest such view.
        let mut latest: BTreeMap<u16, u64> = BTreeMap::new();
        for (view, vcs) in &self.view_changes {
            if *view <= self.s.view {
                continue;
            }
            for sender in vcs.keys() {
                if *sender != self.me {
                    latest.insert(*sender, *view);
                }
            }
        }
        let f = self.f();
        if latest.len() > f {
            let mut views: Vec<u64> = latest.into_values().collect();
            views.sort_unstable_by(|a, b| b.cmp(a));
            let target = views[f];
            if target > self.s.view {
                self.start_view_change(target);
                return Ok(());
            }
        }
        self.try_new_view(w);
        Ok(())
    }

    /// The highest prepared certificate among view changes (§4.4: the
    /// new primary re-proposes the request with the highest view).
    fn highest_prepared<'a>(
        vcs: impl Iterator<Item = &'a SignedViewChange>,
    ) -> Option<&'a PreparedCert> {
        vcs.filter_map(|s| s.view_change.prepared.as_ref())
            .max_by_key(|p| (p.view, p.block_hash))
    }

    /// §4.4: the primary of view w, with a quorum of view changes for w,
    /// multicasts a new-view and re-proposes the highest prepared block.
    pub(crate) fn try_new_view(&mut self, w: u64) {
        if self.leader(w) != self.me || self.s.view != w || self.s.view_active {
            return;
        }
        let Some(vcs) = self.view_changes.get(&w) else {
            return;
        };
        if vcs.len() < self.cfg.quorum() {
            return;
        }
        let best = Self::highest_prepared(vcs.values())
            .map(|p| p.block_hash)
            .filter(|_| !self.cfg.bug_ignore_highest_prepared);
        let view_changes: Vec<SignedViewChange> = vcs.values().cloned().collect();
        let (reproposal, block) = match best {
            Some(hash) => {
                let Some(block) = self.blocks.get(&hash).cloned() else {
                    // Nobody attached the block: ask for it by hash from
                    // the validators that prepared it, and meanwhile wait
                    // for more view changes or the next view.
                    self.fetch_prepared_block(w, hash);
                    return;
                };
                if block.header.parent_hash != self.tip.hash {
                    // Prepared ahead on a parent that lost (pipelining):
                    // then nothing committed at this height (P7), and the
                    // primary proposes afresh. The block goes with the
                    // new-view so backups can see its parent.
                    if self.s.pre_prepared.is_some_and(|(v, _)| v == w) {
                        return;
                    }
                    (None, Some(block))
                } else {
                    if self
                        .s
                        .pre_prepared
                        .is_some_and(|(v, h)| v == w && h != hash)
                    {
                        return;
                    }
                    (Some((hash, self.sign_pre_prepare(w, hash))), Some(block))
                }
            }
            None => {
                if self.s.pre_prepared.is_some_and(|(v, _)| v == w) {
                    return;
                }
                (None, None)
            }
        };
        let nv = NewView {
            view: w,
            height: self.s.height,
            view_changes,
            reproposal,
        };
        self.s.view_active = true;
        if let Some((hash, _)) = reproposal {
            // The primary's vote is the re-proposal itself; it still has its
            // driver validate the block before it commits to it.
            self.s.pre_prepared = Some((w, hash));
        }
        self.dirty = true;
        let env = self.sign(Payload::NewView(nv), block);
        self.my_new_view = Some(env.clone());
        self.broadcast(env);
        if let Some((hash, sig)) = reproposal {
            self.slots.entry(w).or_default().pre_prepare = Some((hash, sig));
        }
        self.start_round();
    }

    pub(crate) fn on_new_view(&mut self, from: u16, nv: NewView, block: Option<Block>) -> Res {
        let w = nv.view;
        let expected = self.leader(w);
        if from != expected {
            return Err(ConsensusError::WrongLeader {
                view: w,
                expected,
                got: from,
            });
        }
        if w < self.s.view || (w == self.s.view && self.s.view_active) {
            return Err(ConsensusError::Ignored {
                reason: "new-view for a view already entered",
            });
        }
        let bad = |reason: &str| ConsensusError::BadNewView {
            view: w,
            reason: reason.to_string(),
        };
        if nv.view_changes.len() < self.cfg.quorum() {
            return Err(bad("fewer view changes than a quorum"));
        }
        let chain = self.cfg.chain_id.clone();
        let mut last: Option<u16> = None;
        for svc in &nv.view_changes {
            if last.is_some_and(|l| svc.from <= l) {
                return Err(bad("view changes not ascending by sender"));
            }
            last = Some(svc.from);
            let vc = &svc.view_change;
            if vc.new_view != w || vc.height != self.s.height {
                return Err(bad("view change for another view or height"));
            }
            let key = self
                .cfg
                .validators
                .get(svc.from as usize)
                .map(|v| v.key)
                .ok_or_else(|| bad("unknown view-change sender"))?;
            let (purpose, bytes) = signed_message(&chain, &Payload::ViewChange(vc.clone()));
            verify(&key, &chain, purpose, &bytes, &svc.signature)
                .map_err(|_| bad("bad view-change signature"))?;
            if let Some(p) = &vc.prepared {
                if p.view >= w {
                    return Err(bad("prepared certificate from a later view"));
                }
                self.check_prepared_cert(p)?;
            }
        }
        let best = Self::highest_prepared(nv.view_changes.iter())
            .map(|p| p.block_hash)
            .filter(|_| !self.cfg.bug_ignore_highest_prepared);
        match (best, nv.reproposal, &block) {
            (None, None, None) => {}
            (Some(x), Some((h, sig)), Some(b)) if h == x => {
                let pp = Payload::PrePrepare {
                    view: w,
                    height: self.s.height,
                    block_hash: x,
                };
                let (purpose, bytes) = signed_message(&chain, &pp);
                let leader_key = self
                    .cfg
                    .validators
                    .get(from as usize)
                    .map(|v| v.key)
                    .ok_or_else(|| bad("unknown primary"))?;
                verify(&leader_key, &chain, purpose, &bytes, &sig)
                    .map_err(|_| bad("bad re-proposal signature"))?;
                self.check_block(b, w, false)?;
            }
            // The highest certificate's block extends a parent that lost
            // (prepared ahead, pipelining): nothing committed at this
            // height, and the primary proposes afresh (P7). The block's
            // hash binds its parent.
            (Some(x), None, Some(b))
                if b.hash() == x
                    && b.header.height == self.s.height
                    && b.header.parent_hash != self.tip.hash => {}
            _ => return Err(bad("does not re-propose the highest prepared block")),
        }
        // Accept: enter view w.
        self.set_view(w, true);
        if let (Some((hash, sig)), Some(b)) = (nv.reproposal, block) {
            self.insert_block(b)?;
            self.slots.entry(w).or_default().pre_prepare = Some((hash, sig));
        }
        self.start_round();
        Ok(())
    }
}
