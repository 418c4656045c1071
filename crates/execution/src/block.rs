//! Building and validating blocks in one place, shared by the proposer,
//! the validators and the auditor's replay.

use std::collections::BTreeSet;

use aidledger_contracts::Genesis;
use aidledger_crypto::{verify_certificate, verify_txs, VerifiedTx};
use aidledger_types::block::BLOCK_MAX_TXS;
use aidledger_types::{
    Block, BlockHeader, ChainId, CommitCertificate, Hash, IdentifiedBlock, PublicKey, SignedTx,
    StateAccumulator, Timestamp, ValidatorSet,
};

use crate::exec::{
    apply_block, apply_block_into, genesis_state, Base, BlockContext, BlockExec, BlockOutcome,
    StateRead,
};
use crate::mem::{MemState, Undo};
use crate::ExecError;

/// What a block is checked against: the previous block (or genesis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentInfo {
    pub chain_id: ChainId,
    /// 0 for genesis.
    pub height: u64,
    /// The previous header's hash; the genesis hash for height 1.
    pub hash: Hash,
    /// The previous header's parent hash (`Hash::ZERO` for genesis): the
    /// block a pipelined header's certificate commits (ADR 022).
    pub grand_hash: Hash,
    pub timestamp: Timestamp,
    /// The set that must certify the next block (the previous block's
    /// `BlockOutcome::validator_set`, or genesis's).
    pub validator_set: ValidatorSet,
    /// The state root after the parent, for callers that track it.
    pub state_root: Hash,
    /// The set that certified the parent (the genesis set for the
    /// genesis). The next block's `parent_certificate` is checked
    /// against it.
    pub certifiers: ValidatorSet,
    /// The certificate the next block's header will carry, as this node
    /// holds it: the parent's, or the grandparent's for a block proposed
    /// before its parent committed (ADR 022; see
    /// [`ParentInfo::header_version`]). `None` for the genesis, and for
    /// callers that only validate (validation reads the certificate from
    /// the block).
    pub certificate: Option<CommitCertificate>,
}

impl ParentInfo {
    /// The parent of block 1.
    pub fn genesis(g: &Genesis) -> Result<ParentInfo, ExecError> {
        let (_, acc) = genesis_state(g)?;
        Ok(ParentInfo {
            chain_id: g.chain_id.clone(),
            height: 0,
            hash: g.hash(),
            grand_hash: Hash::ZERO,
            timestamp: g.genesis_time,
            validator_set: g.validators.clone(),
            state_root: acc.root(),
            certifiers: g.validators.clone(),
            certificate: None,
        })
    }

    /// The parent of the block after `block`, once `block` (the child of
    /// `self`) has executed; `certificate` is `block`'s, where known.
    pub fn child(
        &self,
        block: &Block,
        outcome: &BlockOutcome,
        certificate: Option<CommitCertificate>,
    ) -> ParentInfo {
        ParentInfo {
            chain_id: block.header.chain_id.clone(),
            height: block.header.height,
            hash: block.hash(),
            grand_hash: block.header.parent_hash,
            timestamp: block.header.timestamp,
            validator_set: outcome.validator_set.clone(),
            state_root: outcome.state_root,
            certifiers: self.validator_set.clone(),
            certificate,
        }
    }

    /// The header format of the next block built on this parent: pipelined
    /// when the certificate it carries is the grandparent's.
    pub fn header_version(&self) -> u32 {
        match &self.certificate {
            Some(c) if c.height.saturating_add(1) == self.height => {
                aidledger_types::HEADER_VERSION_PIPELINED
            }
            _ => aidledger_types::HEADER_VERSION,
        }
    }

    /// The earliest time the next block may carry when it is built on
    /// the certificate this node holds: after the parent's time, and at
    /// least the certificate's median commit time (ADR 014).
    pub fn next_time_floor(&self) -> Timestamp {
        let after = self.timestamp.saturating_add_ms(1);
        self.certificate
            .as_ref()
            .and_then(CommitCertificate::median_time)
            .map_or(after, |m| m.max(after))
    }
}

/// Why a block is invalid. Every variant names the height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockInvalid {
    #[error("block {height}: chain id {got:?}, expected {expected:?}")]
    WrongChain {
        height: u64,
        expected: String,
        got: String,
    },
    #[error("block {got}: expected height {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("block {height}: parent hash {got}, expected {expected}")]
    WrongParent {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("block {height}: timestamp {got} is not after the parent's {parent}")]
    TimestampNotMonotonic {
        height: u64,
        parent: Timestamp,
        got: Timestamp,
    },
    #[error(
        "block {height}: timestamp {got} is below its floor {floor}, the median commit time \
         in the certificate its header carries"
    )]
    TimestampBelowFloor {
        height: u64,
        floor: Timestamp,
        got: Timestamp,
    },
    #[error("block {height}: the ancestor's certificate in the header is invalid: {reason}")]
    ParentCertificate { height: u64, reason: String },
    #[error("block {height}: timestamp {got} is more than {max_drift_ms} ms ahead of local time {now_ms}")]
    TimestampTooFarAhead {
        height: u64,
        got: Timestamp,
        now_ms: u64,
        max_drift_ms: u64,
    },
    /// An empty block before the parent state's `gov/next-due`, in the
    /// view its parent was committed in: it has nothing to do (ADR 017, a
    /// quiet chain). A live validator does not vote for it.
    #[error("block {height}: empty, at {got}, before the next due time {due} ({reason}), with no view change")]
    EmptyBeforeDue {
        height: u64,
        got: Timestamp,
        due: Timestamp,
        reason: &'static str,
    },
    #[error("block {height}: proposer {proposer} is not in the validator set")]
    UnknownProposer { height: u64, proposer: PublicKey },
    #[error("block {height}: validator set hash {got}, expected {expected}")]
    ValidatorSetMismatch {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("block {height}: {count} transactions, the limit is {limit}")]
    TooManyTxs {
        height: u64,
        count: usize,
        limit: usize,
    },
    #[error("block {height}: header says {header} transactions, body has {body}")]
    TxCount {
        height: u64,
        header: u32,
        body: usize,
    },
    #[error("block {height}: tx root {got} does not match the body's {expected}")]
    TxRoot {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("block {height}: tx {index} ({id}) signature invalid: {reason}")]
    TxSignature {
        height: u64,
        index: usize,
        id: Hash,
        reason: String,
    },
    #[error("block {height}: tx {index} ({id}) appears twice")]
    DuplicateTx { height: u64, index: usize, id: Hash },
    /// The transaction breaks the inclusion rule (ADR 010) at its
    /// position: its signer has no account, or its nonce is not the
    /// signer's next one (for example because the same transaction, or
    /// another with its nonce, is already on the chain).
    #[error("block {height}: tx {index} ({id}) cannot be included: {reason}")]
    TxNotIncludable {
        height: u64,
        index: usize,
        id: Hash,
        code: String,
        reason: String,
    },
    #[error("block {height}: execution failed: {source}")]
    Execution { height: u64, source: ExecError },
    #[error("block {height}: state root mismatch: header {header}, computed {computed}")]
    StateRootMismatch {
        height: u64,
        header: Hash,
        computed: Hash,
    },
    #[error(
        "block {height}: names next validator set {header}, but executing it leaves {computed}"
    )]
    NextValidatorSetMismatch {
        height: u64,
        header: Hash,
        computed: Hash,
    },
    #[error(
        "block {height}: event root mismatch: header {header} over {header_count} events, \
         computed {computed} over {computed_count}"
    )]
    EventRootMismatch {
        height: u64,
        header: Hash,
        header_count: u32,
        computed: Hash,
        computed_count: u32,
    },
    #[error("block {height}: header format {got}, this build knows {known}")]
    HeaderVersion {
        height: u64,
        got: u32,
        known: &'static str,
    },
}

/// The quiet chain's rule (ADR 017, part 6): a block without
/// transactions is worth making only once the parent state's next due time
/// has come, or after a view change at this height (the new primary must
/// be able to propose at once, whatever is pending). A proposer asks this
/// before it proposes; a live validator checks it before it votes, like
/// the drift bound: with at most f byzantine validators, no quorum certifies
/// an early empty block. A state written before the rule (no due time)
/// allows every block. "A view change at this height" is read from the
/// certificate the header carries: in a pipelined header that is the
/// grandparent's, so a view above the grandparent's commit view counts.
pub fn empty_block_allowed(
    header: &aidledger_types::BlockHeader,
    state: &dyn StateRead,
) -> Result<(), BlockInvalid> {
    if header.tx_count > 0 {
        return Ok(());
    }
    let parent_view = header.parent_certificate.as_ref().map_or(0, |c| c.view);
    if header.view > parent_view {
        return Ok(());
    }
    let due = match crate::queries::read_next_due(state) {
        Ok(d) => d,
        Err(ExecError::Storage { reason }) => {
            return Err(BlockInvalid::Execution {
                height: header.height,
                source: ExecError::Storage { reason },
            })
        }
        Err(_) => return Ok(()),
    };
    if header.timestamp >= due.at {
        return Ok(());
    }
    Err(BlockInvalid::EmptyBeforeDue {
        height: header.height,
        got: header.timestamp,
        due: due.at,
        reason: due.reason.as_str(),
    })
}

/// Checks a block against its parent and executes it. `now_ms` is the
/// validator's clock: the drift check and the quiet chain's empty-block
/// rule ([`empty_block_allowed`]) run only when it is given (live
/// voting), never during replay. From below, time is bounded by the chain
/// alone: after the parent's, and at least the median commit time of the
/// parent's certificate that the header carries (ADR 014), so a block
/// that is old when re-proposed after a view change is still valid, and
/// a replay reaches the same verdict.
pub fn validate_block(
    block: &Block,
    parent: &ParentInfo,
    now_ms: Option<u64>,
    max_drift_ms: u64,
    state: &dyn StateRead,
    acc: &StateAccumulator,
) -> Result<(Vec<VerifiedTx>, BlockOutcome), BlockInvalid> {
    validate_block_with(block, parent, now_ms, max_drift_ms, state, acc, &|_, _| {
        None
    })
}

/// [`validate_block`] for a node that has already verified some of the
/// block's transactions (on admission to its mempool): `known(tx)` returns
/// the earlier verification of exactly `tx` (signature bytes included), and
/// only the others are verified here, in one batch. The verdicts are the
/// ones `validate_block` would reach: a `VerifiedTx` exists only for a
/// transaction whose signature checked out under the same rules.
pub fn validate_block_with(
    block: &Block,
    parent: &ParentInfo,
    now_ms: Option<u64>,
    max_drift_ms: u64,
    state: &dyn StateRead,
    acc: &StateAccumulator,
    known: &dyn Fn(&SignedTx, &Hash) -> Option<VerifiedTx>,
) -> Result<(Vec<VerifiedTx>, BlockOutcome), BlockInvalid> {
    check_header(block, parent, now_ms, max_drift_ms)?;
    // Each id once: it encodes and hashes the body.
    let ids: Vec<Hash> = block.txs.iter().map(SignedTx::id).collect();
    check_body_with_ids(block, &ids)?;
    validate_body_checked(block, &ids, now_ms, state, acc, known)
}

/// [`validate_block_with`] for a block whose body was checked against its
/// header already ([`IdentifiedBlock`], ADR 026): the same checks and
/// verdicts, without hashing the ids and the transaction root again.
pub fn validate_identified_with(
    block: &IdentifiedBlock,
    parent: &ParentInfo,
    now_ms: Option<u64>,
    max_drift_ms: u64,
    state: &dyn StateRead,
    acc: &StateAccumulator,
    known: &dyn Fn(&SignedTx, &Hash) -> Option<VerifiedTx>,
) -> Result<(Vec<VerifiedTx>, BlockOutcome), BlockInvalid> {
    check_header(block.block(), parent, now_ms, max_drift_ms)?;
    validate_body_checked(block.block(), block.ids(), now_ms, state, acc, known)
}

/// The rest of [`validate_block_with`] once the header is checked and the
/// body matches it: `ids[i]` is `block.txs[i].id()`.
fn validate_body_checked(
    block: &Block,
    ids: &[Hash],
    now_ms: Option<u64>,
    state: &dyn StateRead,
    acc: &StateAccumulator,
    known: &dyn Fn(&SignedTx, &Hash) -> Option<VerifiedTx>,
) -> Result<(Vec<VerifiedTx>, BlockOutcome), BlockInvalid> {
    if now_ms.is_some() {
        empty_block_allowed(&block.header, state)?;
    }
    let h = &block.header;
    let height = h.height;
    let mut slots: Vec<Option<VerifiedTx>> = Vec::with_capacity(block.txs.len());
    let mut unknown = Vec::new();
    let mut unknown_at = Vec::new();
    for (index, (tx, id)) in block.txs.iter().zip(ids).enumerate() {
        match known(tx, id).filter(|v| v.tx() == tx && tx.body.chain_id == h.chain_id) {
            Some(v) => slots.push(Some(v)),
            None => {
                slots.push(None);
                unknown.push(tx.clone());
                unknown_at.push(index);
            }
        }
    }
    for (index, r) in unknown_at.into_iter().zip(verify_txs(unknown, &h.chain_id)) {
        match r {
            Ok(v) => slots[index] = Some(v),
            Err((tx, e)) => {
                return Err(BlockInvalid::TxSignature {
                    height,
                    index,
                    id: tx.id(),
                    reason: e.to_string(),
                })
            }
        }
    }
    let verified: Vec<VerifiedTx> = slots.into_iter().flatten().collect();
    let outcome = execute_verified(block, &verified, state, acc)?;
    Ok((verified, outcome))
}

/// The header checks of [`validate_block`]: chain, height, parent, time,
/// proposer, validator-set hash and the transaction limit. The auditor's
/// replay runs the steps of [`validate_block`] one by one so it can verify
/// Merkle roots and signatures in parallel across blocks.
pub fn check_header(
    block: &Block,
    parent: &ParentInfo,
    now_ms: Option<u64>,
    max_drift_ms: u64,
) -> Result<(), BlockInvalid> {
    let h = &block.header;
    let height = h.height;
    if h.chain_id != parent.chain_id {
        return Err(BlockInvalid::WrongChain {
            height,
            expected: parent.chain_id.to_string(),
            got: h.chain_id.to_string(),
        });
    }
    let expected_height = parent.height.saturating_add(1);
    if height != expected_height {
        return Err(BlockInvalid::WrongHeight {
            expected: expected_height,
            got: height,
        });
    }
    if h.parent_hash != parent.hash {
        return Err(BlockInvalid::WrongParent {
            height,
            expected: parent.hash,
            got: h.parent_hash,
        });
    }
    if h.timestamp <= parent.timestamp {
        return Err(BlockInvalid::TimestampNotMonotonic {
            height,
            parent: parent.timestamp,
            got: h.timestamp,
        });
    }
    // Which ancestor the header's certificate commits: the parent, or in a
    // pipelined header the grandparent (ADR 022). The grandparent's
    // certificate is checked against the set that certified the parent:
    // a proposer pipelines only where one set certified both.
    let (certified, certified_hash) = match h.version {
        aidledger_types::HEADER_VERSION => (parent.height, parent.hash),
        aidledger_types::HEADER_VERSION_PIPELINED if parent.height >= 2 => {
            (parent.height - 1, parent.grand_hash)
        }
        got => {
            return Err(BlockInvalid::HeaderVersion {
                height,
                got,
                known: "2, or 3 from height 3",
            })
        }
    };
    let floor = match (&h.parent_certificate, certified) {
        (None, 0) => parent.timestamp,
        (Some(_), 0) => {
            return Err(BlockInvalid::ParentCertificate {
                height,
                reason: "block 1 has no parent certificate to carry".into(),
            })
        }
        (None, _) => {
            return Err(BlockInvalid::ParentCertificate {
                height,
                reason: "missing".into(),
            })
        }
        (Some(c), _) => {
            verify_certificate(
                c,
                &parent.chain_id,
                &parent.certifiers,
                certified,
                &certified_hash,
            )
            .map_err(|e| BlockInvalid::ParentCertificate {
                height,
                reason: e.to_string(),
            })?;
            c.median_time().unwrap_or(parent.timestamp)
        }
    };
    if h.timestamp < floor {
        return Err(BlockInvalid::TimestampBelowFloor {
            height,
            floor,
            got: h.timestamp,
        });
    }
    if let Some(now_ms) = now_ms {
        if h.timestamp.0 > now_ms.saturating_add(max_drift_ms) {
            return Err(BlockInvalid::TimestampTooFarAhead {
                height,
                got: h.timestamp,
                now_ms,
                max_drift_ms,
            });
        }
    }
    if parent.validator_set.index_of(&h.proposer).is_none() {
        return Err(BlockInvalid::UnknownProposer {
            height,
            proposer: h.proposer,
        });
    }
    let vs_hash = parent.validator_set.hash();
    if h.validator_set_hash != vs_hash {
        return Err(BlockInvalid::ValidatorSetMismatch {
            height,
            expected: vs_hash,
            got: h.validator_set_hash,
        });
    }
    if block.txs.len() > BLOCK_MAX_TXS {
        return Err(BlockInvalid::TooManyTxs {
            height,
            count: block.txs.len(),
            limit: BLOCK_MAX_TXS,
        });
    }
    Ok(())
}

/// Checks that the body is the one the header commits to: the transaction
/// count and the Merkle root over the transactions' witness hashes.
pub fn check_body(block: &Block) -> Result<(), BlockInvalid> {
    let ids: Vec<Hash> = block.txs.iter().map(SignedTx::id).collect();
    check_body_with_ids(block, &ids)
}

/// [`check_body`] for a block whose transactions were verified:
/// `verified[i]` is `block.txs[i]` verified, and carries the id the crypto
/// crate hashed when it checked the signature, so no id is hashed again
/// (it encodes and hashes the whole body). A verified transaction that is
/// not exactly the block's at its index is not trusted for its id: the
/// check then hashes every id itself, as [`check_body`] does.
pub fn check_body_verified(block: &Block, verified: &[VerifiedTx]) -> Result<(), BlockInvalid> {
    let matches = verified.len() == block.txs.len()
        && verified.iter().zip(&block.txs).all(|(v, t)| v.tx() == t);
    if !matches {
        return check_body(block);
    }
    let ids: Vec<Hash> = verified.iter().map(VerifiedTx::id).collect();
    check_body_with_ids(block, &ids)
}

/// [`check_body`] with the transactions' ids known: `ids[i]` is
/// `block.txs[i].id()`.
fn check_body_with_ids(block: &Block, ids: &[Hash]) -> Result<(), BlockInvalid> {
    let h = &block.header;
    let height = h.height;
    if h.tx_count as usize != block.txs.len() {
        return Err(BlockInvalid::TxCount {
            height,
            header: h.tx_count,
            body: block.txs.len(),
        });
    }
    let root = Block::tx_root_with_ids(&block.txs, ids);
    if root != h.tx_root {
        return Err(BlockInvalid::TxRoot {
            height,
            expected: root,
            got: h.tx_root,
        });
    }
    Ok(())
}

/// The rest of [`validate_block`] once every signature has been checked:
/// refuses repeated transactions, executes the block and compares the
/// state root with the header's. `verified` must be the block's
/// transactions in order (the auditor's replay verifies them in parallel
/// and hands them here).
pub fn execute_verified(
    block: &Block,
    verified: &[VerifiedTx],
    state: &dyn StateRead,
    acc: &StateAccumulator,
) -> Result<BlockOutcome, BlockInvalid> {
    let ctx = before_execution(block, verified)?;
    let outcome = apply_block(state, acc, &ctx, verified).map_err(|e| execution_failed(&ctx, e))?;
    check_outcome(block, &outcome)?;
    Ok(outcome)
}

/// [`execute_verified`] on a state in memory, which takes the block's
/// writes ([`apply_block_into`]) when the block is valid and is left as
/// it was when it is not. The [`Undo`] takes the writes back
/// ([`MemState::undo`]) should the caller refuse the block for a reason
/// of its own.
pub fn execute_verified_into(
    block: &Block,
    verified: &[VerifiedTx],
    state: &mut MemState,
    acc: &StateAccumulator,
) -> Result<(BlockOutcome, Undo), BlockInvalid> {
    let ctx = before_execution(block, verified)?;
    let (outcome, undo) =
        apply_block_into(state, acc, &ctx, verified).map_err(|e| execution_failed(&ctx, e))?;
    if let Err(e) = check_outcome(block, &outcome) {
        state.undo(&outcome.writes, undo);
        return Err(e);
    }
    Ok((outcome, undo))
}

/// What [`execute_verified`] checks before executing: the transactions
/// are the block's and none repeats. Gives the block's context.
fn before_execution(block: &Block, verified: &[VerifiedTx]) -> Result<BlockContext, BlockInvalid> {
    assert!(
        verified.len() == block.txs.len()
            && verified.iter().zip(&block.txs).all(|(v, t)| v.tx() == t),
        "execute_verified needs exactly the block's transactions, in order"
    );
    let h = &block.header;
    let height = h.height;
    let mut seen = BTreeSet::new();
    for (index, v) in verified.iter().enumerate() {
        if !seen.insert(v.id()) {
            return Err(BlockInvalid::DuplicateTx {
                height,
                index,
                id: v.id(),
            });
        }
    }
    Ok(BlockContext {
        chain_id: h.chain_id.clone(),
        height,
        timestamp: h.timestamp,
        proposer: h.proposer,
    })
}

fn execution_failed(ctx: &BlockContext, source: ExecError) -> BlockInvalid {
    match source {
        ExecError::NotIncludable {
            height,
            index,
            id,
            reason,
        } => BlockInvalid::TxNotIncludable {
            height,
            index: index as usize,
            id,
            code: reason.code().to_string(),
            reason: reason.to_string(),
        },
        source => BlockInvalid::Execution {
            height: ctx.height,
            source,
        },
    }
}

/// The header's commitments against what executing the block gave.
fn check_outcome(block: &Block, outcome: &BlockOutcome) -> Result<(), BlockInvalid> {
    let h = &block.header;
    let height = h.height;
    if outcome.state_root != h.state_root {
        return Err(BlockInvalid::StateRootMismatch {
            height,
            header: h.state_root,
            computed: outcome.state_root,
        });
    }
    let (event_root, event_count) = outcome.event_root();
    if event_root != h.event_root || event_count != h.event_count {
        return Err(BlockInvalid::EventRootMismatch {
            height,
            header: h.event_root,
            header_count: h.event_count,
            computed: event_root,
            computed_count: event_count,
        });
    }
    let next = outcome.validator_set.hash();
    if next != h.next_validator_set_hash {
        return Err(BlockInvalid::NextValidatorSetMismatch {
            height,
            header: h.next_validator_set_hash,
            computed: next,
        });
    }
    Ok(())
}

/// Assembles a block for a proposer from candidate transactions, in order.
///
/// Transactions that may not be included at their position (ADR 010:
/// unknown signer, a nonce that is not the signer's next one given the
/// transactions already included, a repeat) are skipped, as is anything
/// past the block size limit, so a proposer never builds a block that
/// honest validators must refuse. Every other transaction is included even
/// if the contracts will refuse it: it consumes its nonce, its receipt
/// tells the submitter why, and consuming block space is the price of that.
pub fn build_block(
    parent: &ParentInfo,
    ctx: &BlockContext,
    view: u64,
    candidates: &[VerifiedTx],
    state: &dyn StateRead,
    acc: &StateAccumulator,
) -> Result<(Block, BlockOutcome), ExecError> {
    let expected = parent.height.saturating_add(1);
    if ctx.height != expected {
        return Err(ExecError::WrongHeight {
            expected,
            got: ctx.height,
        });
    }
    let base = Base::new(state);
    let mut exec = BlockExec::new(&base, ctx)?;
    let mut txs = Vec::new();
    let mut ids = Vec::new();
    for tx in candidates {
        if txs.len() >= BLOCK_MAX_TXS {
            break;
        }
        if exec.seen(&tx.id()) || tx.tx().body.chain_id != ctx.chain_id {
            continue;
        }
        match exec.apply(tx) {
            Ok(()) => {
                txs.push(tx.tx().clone());
                ids.push(tx.id());
            }
            Err(ExecError::NotIncludable { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    let outcome = exec.finish(acc)?;
    let (event_root, event_count) = outcome.event_root();
    let header = BlockHeader {
        version: parent.header_version(),
        chain_id: ctx.chain_id.clone(),
        height: ctx.height,
        view,
        parent_hash: parent.hash,
        timestamp: ctx.timestamp,
        proposer: ctx.proposer,
        // The ids its verification hashed: each once.
        tx_root: Block::tx_root_with_ids(&txs, &ids),
        tx_count: txs.len() as u32,
        state_root: outcome.state_root,
        event_root,
        event_count,
        validator_set_hash: parent.validator_set.hash(),
        next_validator_set_hash: outcome.validator_set.hash(),
        parent_certificate: parent.certificate.clone(),
    };
    Ok((Block { header, txs }, outcome))
}
