//! The safety state: what a replica must remember across a crash so that it
//! never contradicts a message it already sent.

use aidledger_types::{codec, Block, Hash};
use serde::{Deserialize, Serialize};

use crate::config::SAFETY_STATE_MAX_BYTES;
use crate::message::PreparedCert;
use crate::ConsensusError;

/// Persisted before any message that depends on it (see [`crate::io`]).
///
/// Everything in it is about the height in flight; when that height
/// commits, the per-height fields reset.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
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
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a persisted state, refusing anything over
    /// [`SAFETY_STATE_MAX_BYTES`] or not canonical.
    pub fn decode(bytes: &[u8]) -> Result<SafetyState, ConsensusError> {
        Ok(codec::decode_with_limit(bytes, SAFETY_STATE_MAX_BYTES)?)
    }
}
