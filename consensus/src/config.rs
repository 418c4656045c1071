//! Replica configuration and the limits that bound every buffer.

use aidledger_crypto::Keypair;
use aidledger_types::block::BLOCK_MAX_BYTES;
use aidledger_types::{ChainId, ValidatorSet};

use crate::ConsensusError;

/// Largest encoded consensus message: one block plus room for a NewView's
/// view-change certificates (about 4.5 KiB each for 100 validators).
pub const MESSAGE_MAX_BYTES: usize = BLOCK_MAX_BYTES + 2 * 1024 * 1024;

/// Largest encoded [`crate::SafetyState`]: one prepared block plus its
/// certificate and a few counters.
pub const SAFETY_STATE_MAX_BYTES: usize = BLOCK_MAX_BYTES + 64 * 1024;

/// Everything a replica needs to know that does not change while it runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub chain_id: ChainId,
    /// The validator set; its order fixes leader rotation.
    pub validators: ValidatorSet,
    /// This replica's consensus key; it must be in `validators`.
    pub key: Keypair,
    /// Round timeout in the first view of a height. Doubles with every view
    /// change at the same height, up to `timeout_max_ms`.
    pub timeout_base_ms: u64,
    pub timeout_max_ms: u64,
    /// Messages for heights `h+1 ..= h+height_window` (h = the height in
    /// flight) are buffered; further ones are dropped (they only trigger a
    /// sync request).
    pub height_window: u64,
    /// Messages for views more than this far above the current view are
    /// dropped.
    pub view_window: u64,
    /// Commits for views this far below the current view are still counted
    /// (a certificate from an older view is as good as any).
    pub view_lookback: u64,
    /// Buffered messages per future height.
    pub future_per_height_max: usize,
    /// Least time between two sync requests.
    pub sync_retry_ms: u64,
    /// Largest message accepted from the wire.
    pub message_max_bytes: usize,
    /// A quiet chain (ADR 017, part 6): in the first view of a height the
    /// round timer starts only once there is work ([`crate::Input::Work`],
    /// a pre-prepare for the height, or this replica's own proposal), so
    /// an idle consortium does not change views. After a view change at
    /// the height the timer runs as usual.
    pub wait_for_work: bool,
    /// Pipelining (ADR 022, docs/consensus.md "Pipelined heights"): a
    /// window of two heights. The primary pre-prepares the next height on
    /// the block it pre-prepared at the height in flight, and backups
    /// validate and prepare it there; commit votes still wait for the
    /// parent to commit. Replicas with and without it agree with each
    /// other: one without only buffers the next height's messages.
    pub pipeline: bool,
    /// PLANTED BUG for the simulator's self-test: accept one vote fewer than
    /// a quorum (2f instead of 2f+1) for prepared and committed. Never set
    /// outside tests.
    #[doc(hidden)]
    pub bug_accept_2f_votes: bool,
    /// PLANTED BUG (mutation tests): view changes leave out this replica's
    /// prepared certificate and block. Never set outside tests.
    #[doc(hidden)]
    pub bug_view_change_without_cert: bool,
    /// PLANTED BUG (mutation tests): the new-view rule ignores the highest
    /// prepared certificate, when building a new-view and when checking
    /// one. Never set outside tests.
    #[doc(hidden)]
    pub bug_ignore_highest_prepared: bool,
    /// PLANTED BUG (mutation tests, pipelining): on committing a height,
    /// the next one starts in the certificate's view even below a view
    /// this replica already prepared the next height in (P5 left out).
    /// Never set outside tests.
    #[doc(hidden)]
    pub bug_fall_below_ahead_votes: bool,
}

impl Config {
    /// A configuration with the default timeouts and limits.
    pub fn new(chain_id: ChainId, validators: ValidatorSet, key: Keypair) -> Config {
        Config {
            chain_id,
            validators,
            key,
            timeout_base_ms: 2_000,
            timeout_max_ms: 32_000,
            height_window: 4,
            view_window: 16,
            view_lookback: 4,
            future_per_height_max: 0,
            sync_retry_ms: 1_000,
            message_max_bytes: MESSAGE_MAX_BYTES,
            wait_for_work: false,
            pipeline: false,
            bug_accept_2f_votes: false,
            bug_view_change_without_cert: false,
            bug_ignore_highest_prepared: false,
            bug_fall_below_ahead_votes: false,
        }
    }

    /// This replica's index in the validator set.
    pub(crate) fn my_index(&self) -> Result<u16, ConsensusError> {
        let me = self.key.public();
        self.validators
            .index_of(&me)
            .map(|i| i as u16)
            .ok_or(ConsensusError::NotAValidator { key: me })
    }

    /// Buffered messages per future height: the configured bound, or by
    /// default room for a pre-prepare, prepares and commits from everyone
    /// in a few views.
    pub(crate) fn future_cap(&self) -> usize {
        if self.future_per_height_max > 0 {
            self.future_per_height_max
        } else {
            8 * self.validators.len() + 8
        }
    }

    /// Votes needed for prepared (counting the primary's pre-prepare) and
    /// for committed: a quorum, 2f+1 for n = 3f+1.
    pub(crate) fn quorum(&self) -> usize {
        let q = self.validators.quorum();
        if self.bug_accept_2f_votes {
            q.saturating_sub(1).max(1)
        } else {
            q
        }
    }

    /// Timeout for the `k`-th view at one height (k = 0 for the first).
    pub fn timeout_ms(&self, k: u64) -> u64 {
        let shift = k.min(32) as u32;
        self.timeout_base_ms
            .saturating_mul(1u64 << shift)
            .min(self.timeout_max_ms.max(self.timeout_base_ms))
    }
}
