//! Consensus messages, their signatures and structural checks.
//!
//! Every message travels in an [`Envelope`]: the sender's validator index,
//! a [`Payload`], the sender's signature, and optionally a block. Payloads
//! are digest-sized (they name blocks by hash, as PBFT's messages name
//! requests by digest, §4.2); the block rides along unsigned and is bound
//! to the payload by its hash.
//!
//! Signatures:
//! * `Commit` is signed with [`Purpose::Commit`] over
//!   `codec::encode(&CommitVote { chain_id, height, view, block_hash, time })`, so
//!   a quorum of commit messages *is* a [`CommitCertificate`];
//! * every other payload is signed with [`Purpose::Consensus`] over
//!   `codec::encode(&payload)`. The same bytes are re-derived to check the
//!   signatures nested inside prepared certificates and new-views.

use aidledger_crypto::{verify, Keypair, Purpose};
use aidledger_types::block::BLOCK_MAX_TXS;
use aidledger_types::{
    codec, Block, ChainId, CommitVote, Hash, Signature, Timestamp, ValidatorSignature,
};
use serde::{Deserialize, Serialize};

use crate::ConsensusError;

/// Proof that a quorum prepared a block at (view, height): the primary's
/// pre-prepare signature plus `quorum - 1` prepare signatures from distinct
/// backups (PBFT §4.2, the certificate P in §4.4).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PreparedCert {
    pub view: u64,
    pub height: u64,
    pub block_hash: Hash,
    /// The primary of `view`'s signature over `Payload::PrePrepare`.
    pub pre_prepare_sig: Signature,
    /// Backups' signatures over `Payload::Prepare`, ascending by index.
    pub prepares: Vec<ValidatorSignature>,
}

/// PBFT's VIEW-CHANGE (§4.4): "I move to `new_view` at `height`; here is the
/// highest block I prepared at that height."
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ViewChange {
    pub new_view: u64,
    pub height: u64,
    pub prepared: Option<PreparedCert>,
}

/// A view change with its signature, as carried inside a [`NewView`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignedViewChange {
    pub from: u16,
    pub view_change: ViewChange,
    pub signature: Signature,
}

/// PBFT's NEW-VIEW (§4.4): a quorum of view changes and, when any of them
/// carries a prepared certificate, the re-proposal of the highest prepared
/// block with the new primary's pre-prepare signature for it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NewView {
    pub view: u64,
    pub height: u64,
    /// Ascending by sender, no repeats.
    pub view_changes: Vec<SignedViewChange>,
    /// (block hash, signature over `Payload::PrePrepare { view, height, block_hash }`).
    pub reproposal: Option<(Hash, Signature)>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Payload {
    PrePrepare {
        view: u64,
        height: u64,
        block_hash: Hash,
    },
    Prepare {
        view: u64,
        height: u64,
        block_hash: Hash,
    },
    Commit {
        view: u64,
        height: u64,
        block_hash: Hash,
        /// The voter's clock (ADR 014); signed as part of the vote.
        time: Timestamp,
    },
    ViewChange(ViewChange),
    NewView(NewView),
}

impl Payload {
    /// The height the message is about.
    pub fn height(&self) -> u64 {
        match self {
            Payload::PrePrepare { height, .. }
            | Payload::Prepare { height, .. }
            | Payload::Commit { height, .. } => *height,
            Payload::ViewChange(vc) => vc.height,
            Payload::NewView(nv) => nv.height,
        }
    }
    /// The view the message is about (the target view for view changes).
    pub fn view(&self) -> u64 {
        match self {
            Payload::PrePrepare { view, .. }
            | Payload::Prepare { view, .. }
            | Payload::Commit { view, .. } => *view,
            Payload::ViewChange(vc) => vc.new_view,
            Payload::NewView(nv) => nv.view,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::PrePrepare { .. } => "pre-prepare",
            Payload::Prepare { .. } => "prepare",
            Payload::Commit { .. } => "commit",
            Payload::ViewChange(_) => "view-change",
            Payload::NewView(_) => "new-view",
        }
    }
}

/// A signed consensus message as it travels on the wire.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub from: u16,
    pub payload: Payload,
    pub signature: Signature,
    /// The pre-prepared block (PrePrepare), the prepared block
    /// (ViewChange, optional) or the re-proposed block (NewView).
    pub block: Option<Block>,
}

/// The bytes and purpose a payload's signature covers.
pub fn signed_message(chain_id: &ChainId, payload: &Payload) -> (Purpose, Vec<u8>) {
    match payload {
        Payload::Commit {
            view,
            height,
            block_hash,
            time,
        } => (
            Purpose::Commit,
            codec::encode(&CommitVote {
                chain_id: chain_id.clone(),
                height: *height,
                view: *view,
                block_hash: *block_hash,
                time: *time,
            }),
        ),
        other => (Purpose::Consensus, codec::encode(other)),
    }
}

/// Signs a payload.
pub fn sign_payload(key: &Keypair, chain_id: &ChainId, payload: &Payload) -> Signature {
    let (purpose, bytes) = signed_message(chain_id, payload);
    key.sign(chain_id, purpose, &bytes)
}

impl Envelope {
    /// Builds and signs an envelope. Used by the core, by tests and by the
    /// simulator's byzantine replicas.
    pub fn sign(
        key: &Keypair,
        chain_id: &ChainId,
        from: u16,
        payload: Payload,
        block: Option<Block>,
    ) -> Envelope {
        let signature = sign_payload(key, chain_id, &payload);
        Envelope {
            from,
            payload,
            signature,
            block,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes untrusted bytes with a size limit and checks the envelope's
    /// shape (not its signature): attachments only where they belong, and
    /// lists within bounds.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Envelope, ConsensusError> {
        let env: Envelope = codec::decode_with_limit(bytes, limit)?;
        env.check_shape()?;
        Ok(env)
    }

    fn check_shape(&self) -> Result<(), ConsensusError> {
        if let Some(b) = &self.block {
            if b.txs.len() > BLOCK_MAX_TXS {
                return Err(ConsensusError::invalid("block has too many transactions"));
            }
        }
        let max = aidledger_types::block::VALIDATORS_MAX;
        match &self.payload {
            Payload::PrePrepare { block_hash, .. } => match &self.block {
                Some(b) if b.hash() == *block_hash => Ok(()),
                Some(_) => Err(ConsensusError::invalid("pre-prepare block hash mismatch")),
                None => Err(ConsensusError::invalid("pre-prepare without its block")),
            },
            Payload::Prepare { .. } | Payload::Commit { .. } => match self.block {
                None => Ok(()),
                Some(_) => Err(ConsensusError::invalid("vote carries a block")),
            },
            Payload::ViewChange(vc) => {
                if let Some(p) = &vc.prepared {
                    if p.prepares.len() > max {
                        return Err(ConsensusError::invalid("too many prepares"));
                    }
                }
                match (&vc.prepared, &self.block) {
                    (_, None) => Ok(()),
                    (Some(p), Some(b)) if b.hash() == p.block_hash => Ok(()),
                    _ => Err(ConsensusError::invalid("view-change block mismatch")),
                }
            }
            Payload::NewView(nv) => {
                if nv.view_changes.len() > max
                    || nv.view_changes.iter().any(|s| {
                        s.view_change
                            .prepared
                            .as_ref()
                            .is_some_and(|p| p.prepares.len() > max)
                    })
                {
                    return Err(ConsensusError::invalid("new-view lists too long"));
                }
                match (&nv.reproposal, &self.block) {
                    (None, None) => Ok(()),
                    (Some((h, _)), Some(b)) if b.hash() == *h => Ok(()),
                    // No re-proposal because the highest certificate's
                    // block extends a parent that lost (pipelining, P7):
                    // that block goes along; the replica checks the rest.
                    (None, Some(b))
                        if nv.view_changes.iter().any(|s| {
                            s.view_change
                                .prepared
                                .as_ref()
                                .is_some_and(|p| p.block_hash == b.hash())
                        }) =>
                    {
                        Ok(())
                    }
                    _ => Err(ConsensusError::invalid("new-view block mismatch")),
                }
            }
        }
    }

    /// Checks the envelope's signature against validator `from`'s key.
    pub fn verify_signature(
        &self,
        chain_id: &ChainId,
        validators: &aidledger_types::ValidatorSet,
    ) -> Result<(), ConsensusError> {
        let v = validators
            .get(self.from as usize)
            .ok_or(ConsensusError::UnknownSender {
                from: self.from,
                n: validators.len(),
            })?;
        let (purpose, bytes) = signed_message(chain_id, &self.payload);
        verify(&v.key, chain_id, purpose, &bytes, &self.signature)
            .map_err(|_| ConsensusError::BadSignature { from: self.from })
    }
}
