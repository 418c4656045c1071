//! The normal case (PBFT §4.2-§4.3): pre-prepare, prepare, commit, and
//! committing certified blocks from catch-up.

use std::collections::BTreeMap;

use aidledger_crypto::verify_certificate;
use aidledger_types::{
    Block, CommitCertificate, CommitSignature, Hash, Signature, Timestamp, ValidatorSignature,
};

use crate::io::Output;
use crate::message::{sign_payload, Payload, PreparedCert};
use crate::replica::{AheadSlot, CommittedTip, Replica, Validation, SYNC_BUFFER_MAX};
use crate::safety::AheadVotes;
use crate::ConsensusError;

type Res = Result<(), ConsensusError>;

impl Replica {
    pub(crate) fn on_pre_prepare(
        &mut self,
        from: u16,
        view: u64,
        hash: Hash,
        sig: Signature,
        block: Option<Block>,
    ) -> Res {
        let block = self.primarys_block(from, view, block)?;
        self.check_block(&block, view, true)?;
        if view == self.s.view {
            // The primary proposed: there is work at this height.
            self.wake();
        }
        let height = self.s.height;
        let slot = self.slots.entry(view).or_default();
        match slot.pre_prepare {
            Some((have, _)) if have != hash => {
                return Err(ConsensusError::ConflictingPrePrepare {
                    view,
                    height,
                    have,
                    got: hash,
                })
            }
            // A copy of the accepted pre-prepare is only useful if the
            // body we held was dropped as invalid (a block hash does not
            // cover transaction signatures, so bodies are malleable).
            Some(_) if self.blocks.contains_key(&hash) => return Ok(()),
            Some(_) => {}
            None => slot.pre_prepare = Some((hash, sig)),
        }
        self.insert_block(block)?;
        if view == self.s.view && self.s.view_active {
            self.request_validation(hash);
        }
        self.progress();
        Ok(())
    }

    /// A pre-prepare's block, if `from` is the primary of `view` and the
    /// block came with it.
    fn primarys_block(
        &self,
        from: u16,
        view: u64,
        block: Option<Block>,
    ) -> Result<Block, ConsensusError> {
        let expected = self.leader(view);
        if from != expected {
            return Err(ConsensusError::WrongLeader {
                view,
                expected,
                got: from,
            });
        }
        block.ok_or_else(|| ConsensusError::invalid("pre-prepare without block"))
    }

    /// The block must be validated by the driver before this replica
    /// prepares it (the state root in its header is checked by execution).
    pub(crate) fn request_validation(&mut self, hash: Hash) {
        if self.validation.contains_key(&hash) {
            self.try_prepare();
            return;
        }
        let Some(block) = self.blocks.get(&hash).cloned() else {
            return;
        };
        self.validation.insert(hash, Validation::Pending);
        self.out.push(Output::ValidateBlock {
            view: self.s.view,
            block,
            now_ms: self.now_ms,
        });
    }

    pub(crate) fn on_block_validated(&mut self, height: u64, hash: Hash, valid: bool) -> Res {
        if height == self.s.height + 1 {
            return self.on_ahead_validated(hash, valid);
        }
        if height != self.s.height {
            return Err(ConsensusError::Ignored {
                reason: "validation for another height",
            });
        }
        match self.validation.get(&hash) {
            Some(Validation::Pending) => {}
            _ => {
                return Err(ConsensusError::Ignored {
                    reason: "validation not requested",
                })
            }
        }
        if valid {
            self.validation.insert(hash, Validation::Valid);
        } else {
            // Drop the body, not the pre-prepare: another copy of the block
            // under the same hash may be valid (see `on_pre_prepare`).
            self.validation.remove(&hash);
            self.blocks.remove(&hash);
            let height = self.s.height;
            if self
                .synced
                .get(&height)
                .is_some_and(|(_, c)| c.block_hash == hash)
            {
                self.synced.remove(&height);
            }
        }
        self.progress();
        Ok(())
    }

    /// §4.2: a backup that accepted a pre-prepare multicasts a prepare.
    /// Never two different prepares in one view: the persisted
    /// `prepare_vote` is checked first.
    pub(crate) fn try_prepare(&mut self) {
        let v = self.s.view;
        if !self.s.view_active || self.leader(v) == self.me {
            return;
        }
        let Some((x, _)) = self.slots.get(&v).and_then(|s| s.pre_prepare) else {
            return;
        };
        if self.validation.get(&x) != Some(&Validation::Valid) {
            return;
        }
        match self.s.prepare_vote {
            Some((pv, ph)) if pv == v && ph != x => return,
            Some((pv, _)) if pv == v => {
                let sent = self
                    .slots
                    .get(&v)
                    .is_some_and(|s| s.prepares.contains_key(&self.me));
                if sent {
                    return;
                }
                // Restarted: resend the same prepare.
            }
            _ => {}
        }
        self.s.prepare_vote = Some((v, x));
        self.dirty = true;
        let env = self.sign(
            Payload::Prepare {
                view: v,
                height: self.s.height,
                block_hash: x,
            },
            None,
        );
        let me = self.me;
        self.slots
            .entry(v)
            .or_default()
            .prepares
            .insert(me, (x, env.signature));
        self.broadcast(env);
    }

    pub(crate) fn on_prepare(&mut self, from: u16, view: u64, hash: Hash, sig: Signature) -> Res {
        if from == self.leader(view) {
            return Err(ConsensusError::Ignored {
                reason: "the primary does not prepare",
            });
        }
        self.slots
            .entry(view)
            .or_default()
            .prepares
            .entry(from)
            .or_insert((hash, sig));
        self.progress();
        Ok(())
    }

    pub(crate) fn on_commit(
        &mut self,
        from: u16,
        view: u64,
        hash: Hash,
        time: Timestamp,
        sig: Signature,
    ) -> Res {
        self.slots
            .entry(view)
            .or_default()
            .commits
            .entry(from)
            .or_insert((hash, time, sig));
        self.progress();
        Ok(())
    }

    /// Checks the prepared and committed predicates after any change.
    pub(crate) fn progress(&mut self) {
        self.try_prepare();
        self.try_commit_vote();
        self.try_decide();
        self.try_ahead();
    }

    // ----- pipelining (ADR 022; docs/consensus.md, "Pipelined heights") ----

    /// A pre-prepare for the height after the one in flight (already
    /// signature-checked). Taken only in the current, active view, from its
    /// primary; its parent is checked when it is validated and prepared.
    pub(crate) fn on_ahead_pre_prepare(
        &mut self,
        from: u16,
        view: u64,
        hash: Hash,
        sig: Signature,
        block: Option<Block>,
    ) -> Res {
        if view != self.s.view || !self.s.view_active {
            return Err(ConsensusError::Ignored {
                reason: "pre-prepare ahead outside the current view",
            });
        }
        let block = self.primarys_block(from, view, block)?;
        let height = self.s.height + 1;
        if let Some(a) = self.ahead.as_ref().filter(|a| a.view == view) {
            if a.hash != hash {
                return Err(ConsensusError::ConflictingPrePrepare {
                    view,
                    height,
                    have: a.hash,
                    got: hash,
                });
            }
            if a.block.is_some() || a.refused {
                return Ok(());
            }
        }
        self.check_block_at(&block, view, true, height)?;
        self.ahead = Some(AheadSlot {
            view,
            hash,
            pre_prepare_sig: sig,
            block: Some(block),
            validation: None,
            refused: false,
            my_prepare: None,
        });
        self.try_ahead();
        Ok(())
    }

    fn on_ahead_validated(&mut self, hash: Hash, valid: bool) -> Res {
        let Some(a) = self
            .ahead
            .as_mut()
            .filter(|a| a.hash == hash && a.validation == Some(Validation::Pending))
        else {
            return Err(ConsensusError::Ignored {
                reason: "validation ahead not requested",
            });
        };
        if valid {
            a.validation = Some(Validation::Valid);
        } else {
            // Checked again on its committed parent once the height is in
            // flight (the pre-prepare is buffered for it).
            a.validation = None;
            a.block = None;
            a.refused = true;
        }
        self.try_ahead();
        Ok(())
    }

    /// The block pre-prepared at the height in flight in the current view,
    /// validated: the only parent the next height may extend (P2).
    fn ahead_parent(&self) -> Option<Hash> {
        let (hash, _) = self.slots.get(&self.s.view)?.pre_prepare?;
        (self.validation.get(&hash) == Some(&Validation::Valid)).then_some(hash)
    }

    /// The next height's work in the current view: the primary asks its
    /// driver for the block once its own block at the height in flight is
    /// out; a backup has the pre-prepared block validated on its parent
    /// and prepares it (P1, P2). Nothing here sends a commit vote: that
    /// waits until the parent has committed (P3).
    pub(crate) fn try_ahead(&mut self) {
        if !self.cfg.pipeline || !self.s.view_active {
            return;
        }
        let v = self.s.view;
        let height = self.s.height + 1;
        let Some(parent) = self.ahead_parent() else {
            return;
        };
        let votes = self.s.ahead.unwrap_or_default();
        if self.leader(v) == self.me {
            let proposed = votes.pre_prepared.is_some_and(|(pv, _)| pv == v);
            if !proposed
                && self.awaiting_ahead != Some(v)
                && self.s.pre_prepared == Some((v, parent))
            {
                self.awaiting_ahead = Some(v);
                self.out.push(Output::RequestProposal {
                    height,
                    view: v,
                    parent_hash: parent,
                    now_ms: self.now_ms,
                });
            }
            return;
        }
        let Some(a) = self.ahead.as_mut().filter(|a| a.view == v) else {
            return;
        };
        let Some(block) = a.block.as_ref().filter(|b| b.header.parent_hash == parent) else {
            return;
        };
        match a.validation {
            None => {
                a.validation = Some(Validation::Pending);
                let block = block.clone();
                self.out.push(Output::ValidateBlock {
                    view: v,
                    block,
                    now_ms: self.now_ms,
                });
                return;
            }
            Some(Validation::Pending) => return,
            Some(Validation::Valid) => {}
        }
        if a.my_prepare.is_some() {
            return;
        }
        let x = a.hash;
        // Never two prepares at one (height, view): the persisted vote
        // first, as at the height in flight.
        if votes
            .prepare_vote
            .is_some_and(|(pv, ph)| pv == v && ph != x)
        {
            return;
        }
        self.s.ahead = Some(AheadVotes {
            prepare_vote: Some((v, x)),
            ..votes
        });
        self.dirty = true;
        let env = self.sign(
            Payload::Prepare {
                view: v,
                height,
                block_hash: x,
            },
            None,
        );
        if let Some(a) = self.ahead.as_mut() {
            a.my_prepare = Some(env.signature);
        }
        self.broadcast(env);
    }

    /// The primary's block for the next height, built on its block at the
    /// height in flight.
    fn on_ahead_proposal_ready(&mut self, block: Block) -> Res {
        let view = block.header.view;
        let votes = self.s.ahead.unwrap_or_default();
        let parent = self.ahead_parent();
        if self.awaiting_ahead != Some(view)
            || view != self.s.view
            || !self.s.view_active
            || votes.pre_prepared.is_some_and(|(pv, _)| pv == view)
            || parent.is_none()
            || parent != Some(block.header.parent_hash)
        {
            return Err(ConsensusError::Ignored {
                reason: "no proposal ahead requested for this view and parent",
            });
        }
        let height = self.s.height + 1;
        self.check_block_at(&block, view, true, height)?;
        let hash = block.hash();
        self.awaiting_ahead = None;
        self.s.ahead = Some(AheadVotes {
            pre_prepared: Some((view, hash)),
            ..votes
        });
        self.dirty = true;
        let env = self.sign(
            Payload::PrePrepare {
                view,
                height,
                block_hash: hash,
            },
            Some(block.clone()),
        );
        self.ahead = Some(AheadSlot {
            view,
            hash,
            pre_prepare_sig: env.signature,
            block: Some(block),
            validation: Some(Validation::Valid),
            refused: false,
            my_prepare: None,
        });
        self.broadcast(env);
        Ok(())
    }

    /// prepared(m, v, n, i) (§4.2): the pre-prepare plus `quorum - 1`
    /// matching prepares from distinct backups. Once prepared, persist the
    /// certificate and multicast a commit (§4.3).
    pub(crate) fn try_commit_vote(&mut self) {
        let v = self.s.view;
        if !self.s.view_active {
            return;
        }
        let Some(slot) = self.slots.get(&v) else {
            return;
        };
        let Some((x, pp_sig)) = slot.pre_prepare else {
            return;
        };
        // Everyone, the primary included, commits only to a block its
        // driver validated (the primary's own proposals are marked valid
        // when they are handed over).
        let leader = self.leader(v);
        if self.validation.get(&x) != Some(&Validation::Valid) {
            return;
        }
        let prepares: Vec<ValidatorSignature> = slot
            .prepares
            .iter()
            .filter(|(from, (h, _))| **from != leader && *h == x)
            .map(|(from, (_, s))| ValidatorSignature {
                validator: *from,
                signature: *s,
            })
            .collect();
        if prepares.len() + 1 < self.cfg.quorum() {
            return;
        }
        match self.s.commit_vote {
            Some((cv, ch)) if cv == v && ch != x => return,
            Some((cv, _)) if cv == v && slot.commits.contains_key(&self.me) => return,
            _ => {}
        }
        let cert = PreparedCert {
            view: v,
            height: self.s.height,
            block_hash: x,
            pre_prepare_sig: pp_sig,
            prepares,
        };
        if self.s.prepared.as_ref().is_none_or(|p| p.view <= v) {
            self.s.prepared = Some(cert);
            self.s.prepared_block = self.blocks.get(&x).cloned();
        }
        self.s.commit_vote = Some((v, x));
        self.dirty = true;
        // The vote carries this replica's clock: the median of a
        // certificate's times is the next block's time floor (ADR 014).
        let time = Timestamp(self.now_ms);
        let env = self.sign(
            Payload::Commit {
                view: v,
                height: self.s.height,
                block_hash: x,
                time,
            },
            None,
        );
        let me = self.me;
        self.slots
            .entry(v)
            .or_default()
            .commits
            .insert(me, (x, time, env.signature));
        self.broadcast(env);
    }

    /// committed-local (§4.3): a quorum of matching commits. The commit
    /// messages' signatures are the certificate. Any view's quorum will do:
    /// a certificate is proof on its own. The block must also have been
    /// validated by the driver, so `Output::Commit` never hands it a body
    /// it cannot execute.
    pub(crate) fn try_decide(&mut self) {
        let height = self.s.height;
        if let Some((block, cert)) = self.synced.get(&height).cloned() {
            let x = cert.block_hash;
            if block.header.parent_hash != self.tip.hash {
                self.synced.remove(&height);
            } else {
                if !self.blocks.contains_key(&x) && self.insert_block(block).is_err() {
                    return;
                }
                match self.validation.get(&x) {
                    Some(Validation::Valid) => {
                        self.synced.remove(&height);
                        self.finish(x, cert);
                    }
                    Some(Validation::Pending) => {}
                    None => self.request_validation(x),
                }
                return;
            }
        }
        let quorum = self.cfg.quorum();
        let mut decided: Option<(u64, Hash)> = None;
        let mut to_validate: Option<Hash> = None;
        let mut missing_block: Option<u16> = None;
        for (view, slot) in &self.slots {
            let mut tally: BTreeMap<Hash, usize> = BTreeMap::new();
            for (h, _, _) in slot.commits.values() {
                *tally.entry(*h).or_default() += 1;
            }
            for (h, count) in tally {
                if count < quorum {
                    continue;
                }
                if self.blocks.contains_key(&h) {
                    match self.validation.get(&h) {
                        Some(Validation::Valid) => decided = Some((*view, h)),
                        Some(Validation::Pending) => {}
                        None => to_validate = Some(h),
                    }
                    break;
                }
                let committers: Vec<u16> = slot
                    .commits
                    .iter()
                    .filter(|(from, (c, _, _))| *c == h && **from != self.me)
                    .map(|(from, _)| *from)
                    .collect();
                if !committers.is_empty() {
                    let pick =
                        (self.now_ms / self.cfg.sync_retry_ms.max(1)) as usize % committers.len();
                    missing_block = Some(committers[pick]);
                }
            }
            if decided.is_some() {
                break;
            }
        }
        if let Some((view, hash)) = decided {
            self.decide(view, hash);
        } else if let Some(h) = to_validate {
            self.request_validation(h);
        } else if let Some(peer) = missing_block {
            self.maybe_sync(peer);
        }
    }

    pub(crate) fn decide(&mut self, view: u64, hash: Hash) {
        let Some(slot) = self.slots.get(&view) else {
            return;
        };
        let signatures: Vec<CommitSignature> = slot
            .commits
            .iter()
            .filter(|(_, (h, _, _))| *h == hash)
            .map(|(from, (_, time, s))| CommitSignature {
                validator: *from,
                time: *time,
                signature: *s,
            })
            .collect();
        let certificate = CommitCertificate {
            height: self.s.height,
            view,
            block_hash: hash,
            signatures,
        };
        self.finish(hash, certificate);
    }

    /// Emits the commit and moves to the next height.
    pub(crate) fn finish(&mut self, hash: Hash, certificate: CommitCertificate) {
        let Some(block) = self.blocks.remove(&hash) else {
            return;
        };
        let (height, view) = (self.s.height, certificate.view);
        tracing::debug!(replica = self.me, height, view, block = %hash, "committed");
        self.out.push(Output::Commit { block, certificate });
        self.tip = CommittedTip { height, hash, view };
        self.enter_height(height + 1, view);
    }

    /// The primary's block, built and executed by the driver (§4.2: the
    /// primary assigns a sequence number and multicasts a pre-prepare).
    pub(crate) fn on_proposal_ready(&mut self, block: Block) -> Res {
        if block.header.height == self.s.height + 1 {
            return self.on_ahead_proposal_ready(block);
        }
        let view = block.header.view;
        if self.awaiting_proposal != Some(view)
            || view != self.s.view
            || !self.s.view_active
            || self.s.pre_prepared.map(|p| p.0) == Some(view)
        {
            return Err(ConsensusError::Ignored {
                reason: "no proposal requested for this view",
            });
        }
        self.check_block(&block, view, true)?;
        self.wake();
        let hash = block.hash();
        self.awaiting_proposal = None;
        self.s.pre_prepared = Some((view, hash));
        self.dirty = true;
        self.send_own_pre_prepare(block)?;
        self.progress();
        Ok(())
    }

    /// Catch-up: a committed block with its certificate (the paper's state
    /// transfer, §4.3/§6.2). The certificate is checked now; the block is
    /// validated by the driver before it is committed, in height order.
    pub(crate) fn on_synced(&mut self, block: Block, cert: CommitCertificate) -> Res {
        let h = block.height();
        let current = self.s.height;
        if h < current {
            return Err(ConsensusError::StaleHeight { got: h, current });
        }
        if h >= current + SYNC_BUFFER_MAX {
            return Err(ConsensusError::FutureHeight { got: h, current });
        }
        if h == current && block.header.parent_hash != self.tip.hash {
            return Err(ConsensusError::bad_block(
                "synced block's parent is not the tip",
            ));
        }
        if block.header.chain_id != self.cfg.chain_id || !block.body_matches_header() {
            return Err(ConsensusError::bad_block("synced block is malformed"));
        }
        let hash = block.hash();
        verify_certificate(&cert, &self.cfg.chain_id, &self.cfg.validators, h, &hash)?;
        self.synced.entry(h).or_insert((block, cert));
        if h == current {
            self.progress();
        }
        Ok(())
    }

    pub(crate) fn sign_pre_prepare(&self, view: u64, hash: Hash) -> Signature {
        sign_payload(
            &self.cfg.key,
            &self.cfg.chain_id,
            &Payload::PrePrepare {
                view,
                height: self.s.height,
                block_hash: hash,
            },
        )
    }
}
