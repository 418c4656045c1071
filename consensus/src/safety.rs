//! The safety state: what a replica must remember across a crash so that it
//! never contradicts a message it already sent.

use aidledger_types::{codec, Block, Hash};
use serde::{Deserialize, Serialize};

use crate::config::SAFETY_STATE_MAX_BYTES;
use crate::message::PreparedCert;
use crate::ConsensusError;

/// Persisted before any message that depends on it (see [`crate::io`]).
///
/// Everything in it is about the height in flight, except `ahead`; when
/// that height commits, the per-height fields reset and `ahead` becomes
/// the new height's votes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SafetyState {
    /// The height in flight (last committed + 1).
    pub height: u64,
    /// The current view.
    pub view: u64,
    /// False while changing to `view` (a view change was sent, no new-view
    /// accepted yet): no pre-prepare, prepare or commit is sent in this state.
    pub view_active: bool,
    /// The view in which this replica started the height; timeouts back
    /// off by `view - start_view`.
    pub start_view: u64,
    /// The (view, block) this replica pre-prepared as primary, last.
    pub pre_prepared: Option<(u64, Hash)>,
    /// The (view, block) of the last prepare sent.
    pub prepare_vote: Option<(u64, Hash)>,
    /// The (view, block) of the last commit sent.
    pub commit_vote: Option<(u64, Hash)>,
    /// The highest-view prepared certificate at this height, reported in
    /// view changes.
    pub prepared: Option<PreparedCert>,
    /// The block of `prepared`, so a view change can carry it.
    pub prepared_block: Option<Block>,
    /// Pipelining (ADR 022): this replica's votes at `height + 1`, cast
    /// before `height` committed. Never `Some` with both fields empty.
    pub ahead: Option<AheadVotes>,
}

/// A replica's votes at the height after the one in flight: a pipelined
/// primary's pre-prepare and a backup's prepare (commit votes wait for
/// the parent to commit, docs/consensus.md P3).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct AheadVotes {
    pub pre_prepared: Option<(u64, Hash)>,
    pub prepare_vote: Option<(u64, Hash)>,
}

impl AheadVotes {
    /// The highest view this replica acted in at that height (0 for none).
    pub fn top_view(&self) -> u64 {
        let v = |x: Option<(u64, Hash)>| x.map_or(0, |(v, _)| v);
        v(self.pre_prepared).max(v(self.prepare_vote))
    }
    fn is_empty(&self) -> bool {
        self.pre_prepared.is_none() && self.prepare_vote.is_none()
    }
}

/// The encoding of the fields before `ahead`. A state without votes ahead
/// encodes as this alone, byte for byte what builds before pipelining
/// wrote and read; a state with them appends the `AheadVotes`.
#[derive(Serialize, Deserialize)]
struct Base {
    height: u64,
    view: u64,
    view_active: bool,
    start_view: u64,
    pre_prepared: Option<(u64, Hash)>,
    prepare_vote: Option<(u64, Hash)>,
    commit_vote: Option<(u64, Hash)>,
    prepared: Option<PreparedCert>,
    prepared_block: Option<Block>,
}

impl SafetyState {
    /// The state of a replica that has just entered `height` in `view`.
    pub fn fresh(height: u64, view: u64) -> SafetyState {
        SafetyState {
            height,
            view,
            view_active: true,
            start_view: view,
            pre_prepared: None,
            prepare_vote: None,
            commit_vote: None,
            prepared: None,
            prepared_block: None,
            ahead: None,
        }
    }

    fn base(&self) -> Base {
        Base {
            height: self.height,
            view: self.view,
            view_active: self.view_active,
            start_view: self.start_view,
            pre_prepared: self.pre_prepared,
            prepare_vote: self.prepare_vote,
            commit_vote: self.commit_vote,
            prepared: self.prepared.clone(),
            prepared_block: self.prepared_block.clone(),
        }
    }

    fn from_base(b: Base, ahead: Option<AheadVotes>) -> SafetyState {
        SafetyState {
            height: b.height,
            view: b.view,
            view_active: b.view_active,
            start_view: b.start_view,
            pre_prepared: b.pre_prepared,
            prepare_vote: b.prepare_vote,
            commit_vote: b.commit_vote,
            prepared: b.prepared,
            prepared_block: b.prepared_block,
            ahead,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self.ahead.filter(|a| !a.is_empty()) {
            None => codec::encode(&self.base()),
            Some(a) => codec::encode(&(self.base(), a)),
        }
    }

    /// Decodes a persisted state, refusing anything over
    /// [`SAFETY_STATE_MAX_BYTES`] or not canonical.
    pub fn decode(bytes: &[u8]) -> Result<SafetyState, ConsensusError> {
        if let Ok(b) = codec::decode_with_limit::<Base>(bytes, SAFETY_STATE_MAX_BYTES) {
            return Ok(SafetyState::from_base(b, None));
        }
        let (b, a): (Base, AheadVotes) = codec::decode_with_limit(bytes, SAFETY_STATE_MAX_BYTES)?;
        if a.is_empty() {
            return Err(ConsensusError::Restore {
                reason: "safety state: empty votes ahead are written as none".into(),
            });
        }
        Ok(SafetyState::from_base(b, Some(a)))
    }
}
