//! Blocks, validator sets, commit votes and commit certificates.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::{domain, hash_parts, Hash};
use crate::merkle;
use crate::time::Timestamp;
use crate::tx::SignedTx;
use crate::values::{ChainId, OrgId, PublicKey, Signature};

/// Most transactions in one block.
pub const BLOCK_MAX_TXS: usize = 20_000;
/// Largest encoded block: 16 MiB.
pub const BLOCK_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Most validators in a set.
pub const VALIDATORS_MAX: usize = 100;

/// A block header. The block hash is the hash of this header alone; the
/// header commits to the body through `tx_root`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockHeader {
    /// The header format ([`HEADER_VERSION`]): a node refuses a block whose
    /// format it does not know rather than misreading it.
    pub version: u32,
    pub chain_id: ChainId,
    pub height: u64,
    /// The PBFT view in which the block was proposed.
    pub view: u64,
    /// Hash of the previous block's header; the genesis hash for height 1.
    pub parent_hash: Hash,
    /// Set by the proposer. It must be after the parent's, at least the
    /// median time of `parent_certificate` (the floor, ADR 014), and live
    /// validators refuse it more than the allowed drift ahead of their own
    /// clocks. Contracts read time only from here.
    pub timestamp: Timestamp,
    /// The proposing validator's consensus key.
    pub proposer: PublicKey,
    /// Merkle root over the block's signed transactions (witness hashes:
    /// id and signature), in order.
    pub tx_root: Hash,
    pub tx_count: u32,
    /// The state root after executing this block.
    pub state_root: Hash,
    /// Merkle root over every event executing this block produced, in
    /// order: each receipt's events in transaction order, then the block's
    /// own (an upgrade taking effect, then the end of block's releases,
    /// payments and anomalies). A leaf is an event's domain-separated hash
    /// (ADR 020), so one event can be proven without the rest of the block.
    pub event_root: Hash,
    /// The number of leaves under `event_root`; a proof is checked against
    /// it.
    pub event_count: u32,
    /// Hash of the validator set that must certify this block.
    pub validator_set_hash: Hash,
    /// Hash of the validator set that must certify the next block, as
    /// executing this one leaves it (ADR 017). It differs from
    /// `validator_set_hash` exactly at the last block of a set, so a chain
    /// of headers and certificates names every set change and whoever
    /// holds the genesis set can follow them without executing a block.
    pub next_validator_set_hash: Hash,
    /// A commit certificate of an ancestor, as the proposer holds it: the
    /// parent's in a header of [`HEADER_VERSION`], the grandparent's in a
    /// pipelined header ([`HEADER_VERSION_PIPELINED`], proposed before its
    /// parent committed, ADR 022). `None` for block 1, whose parent is the
    /// genesis. Its signed commit times set this block's time floor; any
    /// quorum of valid votes will do, and the header's hash covers the one
    /// chosen.
    pub parent_certificate: Option<CommitCertificate>,
}

/// The header format this build writes when the parent has committed, and
/// accepts. Version 2 added `event_root` and `event_count` (ADR 020).
pub const HEADER_VERSION: u32 = 2;

/// The header format of a block proposed while its parent was still being
/// agreed (ADR 022): the same fields as [`HEADER_VERSION`], but
/// `parent_certificate` is the grandparent's. Accepted from height 3 on.
pub const HEADER_VERSION_PIPELINED: u32 = 3;

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        hash_parts(domain::BLOCK_HASH, &[&codec::encode(self)])
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTx>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }
    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// Merkle root over the witness hashes of `txs`, in order.
    ///
    /// A leaf covers the whole signed transaction, signature included, not
    /// just its id (the id leaves the signature out so it can be known
    /// before signing). Otherwise two bodies with the same ids but different
    /// signature bytes would share one block hash, and a byzantine relay
    /// could swap a valid body for an invalid one under a certified hash.
    pub fn compute_tx_root(txs: &[SignedTx]) -> Hash {
        let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
        Self::tx_root_with_ids(txs, &ids)
    }

    /// [`Block::compute_tx_root`] for transactions whose ids are known
    /// already: `ids[i]` must be `txs[i].id()`. Hashing a transaction's id
    /// encodes its body, so a caller that has the ids saves that work.
    pub fn tx_root_with_ids(txs: &[SignedTx], ids: &[Hash]) -> Hash {
        assert_eq!(txs.len(), ids.len(), "one id per transaction");
        debug_assert!(txs.iter().zip(ids).all(|(t, id)| t.id() == *id));
        let leaves: Vec<Hash> = txs
            .iter()
            .zip(ids)
            .map(|(t, id)| t.witness_hash_with_id(id))
            .collect();
        merkle::root(&leaves)
    }

    /// Checks that the body matches the header's commitment to it.
    pub fn body_matches_header(&self) -> bool {
        self.ids_if_body_matches().is_some()
    }

    /// The transactions' ids, if the body matches the header. The count
    /// first: a body of the wrong length is refused unhashed.
    fn ids_if_body_matches(&self) -> Option<Vec<Hash>> {
        if self.txs.len() != self.header.tx_count as usize {
            return None;
        }
        let ids: Vec<Hash> = self.txs.iter().map(SignedTx::id).collect();
        self.body_matches_header_with_ids(&ids).then_some(ids)
    }

    /// [`Block::body_matches_header`] with the transactions' ids known:
    /// `ids[i]` must be `self.txs[i].id()`.
    pub fn body_matches_header_with_ids(&self, ids: &[Hash]) -> bool {
        self.txs.len() == self.header.tx_count as usize
            && ids.len() == self.txs.len()
            && Self::tx_root_with_ids(&self.txs, ids) == self.header.tx_root
    }

    pub fn decode(bytes: &[u8]) -> Result<Block, crate::TypeError> {
        let b: Block = codec::decode_with_limit(bytes, BLOCK_MAX_BYTES)?;
        if b.txs.len() > BLOCK_MAX_TXS {
            return Err(crate::TypeError::Invalid {
                what: "block",
                reason: format!(
                    "{} transactions, over the limit of {BLOCK_MAX_TXS}",
                    b.txs.len()
                ),
            });
        }
        let signers = b
            .header
            .parent_certificate
            .as_ref()
            .map_or(0, |c| c.signatures.len());
        if signers > VALIDATORS_MAX {
            return Err(crate::TypeError::Invalid {
                what: "block",
                reason: format!(
                    "the parent certificate has {signers} signatures, over the limit of {VALIDATORS_MAX}"
                ),
            });
        }
        Ok(b)
    }
}

/// A block whose body matches its header, with its transactions' ids
/// (ADR 026). Only [`IdentifiedBlock::new`] makes one, and it checks the
/// body against the header's transaction count and root; nothing can
/// change the block afterwards, so whoever holds one knows, without
/// hashing again, that `ids()[i]` is `block().txs[i].id()` and that the
/// body is the one the header (and so the block hash) commits to.
///
/// A validator checks a block's body once, when it first executes the
/// block, and hands this value on: to execution, to the store's checks
/// before its vote, and to the commit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IdentifiedBlock {
    block: Block,
    ids: Vec<Hash>,
}

impl IdentifiedBlock {
    /// Hashes every transaction's id and checks the body against the
    /// header: the count first (a body of the wrong length is refused
    /// unhashed), then the transaction root. A body that does not match
    /// comes back unchanged, as the error.
    pub fn new(block: Block) -> Result<IdentifiedBlock, Box<Block>> {
        match block.ids_if_body_matches() {
            Some(ids) => Ok(IdentifiedBlock { block, ids }),
            None => Err(Box::new(block)),
        }
    }

    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The transactions' ids, in block order.
    pub fn ids(&self) -> &[Hash] {
        &self.ids
    }

    /// The block and its ids, apart: the guarantee ends here.
    pub fn into_parts(self) -> (Block, Vec<Hash>) {
        (self.block, self.ids)
    }
}

/// Read access to the block; there is no mutable access.
impl std::ops::Deref for IdentifiedBlock {
    type Target = Block;

    fn deref(&self) -> &Block {
        &self.block
    }
}

/// One validator: the organisation that runs it and its consensus key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Validator {
    pub org: OrgId,
    pub key: PublicKey,
}

/// The ordered validator set. Order matters: it fixes leader rotation and
/// the indices used in certificates. Deserialisation runs the same checks
/// as [`ValidatorSet::new`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "RawValidatorSet")]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

#[derive(Deserialize)]
struct RawValidatorSet {
    validators: Vec<Validator>,
}

impl TryFrom<RawValidatorSet> for ValidatorSet {
    type Error = crate::TypeError;
    fn try_from(raw: RawValidatorSet) -> Result<Self, crate::TypeError> {
        ValidatorSet::new(raw.validators)
    }
}

impl ValidatorSet {
    /// A set must be non-empty, bounded, and have distinct orgs and keys.
    pub fn new(validators: Vec<Validator>) -> Result<ValidatorSet, crate::TypeError> {
        let bad = |r: String| crate::TypeError::Invalid {
            what: "validator set",
            reason: r,
        };
        if validators.is_empty() || validators.len() > VALIDATORS_MAX {
            return Err(bad(format!("must have 1 to {VALIDATORS_MAX} validators")));
        }
        let mut keys: Vec<_> = validators.iter().map(|v| v.key).collect();
        keys.sort();
        keys.dedup();
        let mut orgs: Vec<_> = validators.iter().map(|v| v.org.clone()).collect();
        orgs.sort();
        orgs.dedup();
        if keys.len() != validators.len() || orgs.len() != validators.len() {
            return Err(bad("validator orgs and keys must be distinct".into()));
        }
        Ok(ValidatorSet { validators })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
    pub fn len(&self) -> usize {
        self.validators.len()
    }
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }
    /// Most byzantine validators tolerated: f = floor((n - 1) / 3).
    pub fn max_faulty(&self) -> usize {
        (self.validators.len() - 1) / 3
    }
    /// Votes needed for a quorum: the smallest q with 2q - n > f, so any two
    /// quorums share an honest validator. For n = 3f + 1 this is 2f + 1; for
    /// n = 1, 2, 3 (f = 0) it is 1, 2, 2.
    pub fn quorum(&self) -> usize {
        (self.validators.len() + self.max_faulty()) / 2 + 1
    }
    /// The leader of a view rotates round-robin through the set.
    pub fn leader(&self, view: u64) -> &Validator {
        &self.validators[(view % self.validators.len() as u64) as usize]
    }
    pub fn leader_index(&self, view: u64) -> usize {
        (view % self.validators.len() as u64) as usize
    }
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.validators.iter().position(|v| &v.key == key)
    }
    pub fn get(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
    pub fn hash(&self) -> Hash {
        hash_parts(domain::VALIDATOR_SET, &[&codec::encode(self)])
    }
}

/// What a validator signs when it commits to a block (PBFT's COMMIT).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitVote {
    pub chain_id: ChainId,
    pub height: u64,
    pub view: u64,
    pub block_hash: Hash,
    /// The voter's clock when it voted. The median of a certificate's
    /// times bounds the next block's time from below (ADR 014).
    pub time: Timestamp,
}

/// One validator's signed commit vote inside a certificate: its index,
/// the time it voted at, and its signature over the [`CommitVote`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitSignature {
    /// Index into the validator set in force at the block's height.
    pub validator: u16,
    pub time: Timestamp,
    pub signature: Signature,
}

/// One validator's signature inside a prepared certificate.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidatorSignature {
    /// Index into the validator set in force at the block's height.
    pub validator: u16,
    pub signature: Signature,
}

/// Proof that a quorum committed a block: quorum signed `CommitVote`s for
/// the same (height, view, block hash). Signatures are sorted by validator
/// index with no repeats, so a certificate has one encoding per signer set.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitCertificate {
    pub height: u64,
    pub view: u64,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSignature>,
}

impl CommitCertificate {
    /// The vote one of the certificate's signers signed, at `time`.
    pub fn vote(&self, chain_id: &ChainId, time: Timestamp) -> CommitVote {
        CommitVote {
            chain_id: chain_id.clone(),
            height: self.height,
            view: self.view,
            block_hash: self.block_hash,
            time,
        }
    }

    /// The median of the signers' commit times: the lower median, the
    /// `(k + 1) / 2`-th smallest of `k` times. For a valid certificate
    /// (`k` at least 2f + 1 signers, at most f of them byzantine) at least
    /// f + 1 times lie at or below it and at least f + 1 at or above, so
    /// it lies between two honest clocks whatever the byzantine signers
    /// wrote (ADR 014). `None` without signatures.
    pub fn median_time(&self) -> Option<Timestamp> {
        let mut times: Vec<Timestamp> = self.signatures.iter().map(|s| s.time).collect();
        if times.is_empty() {
            return None;
        }
        let k = (times.len() - 1) / 2;
        let (_, median, _) = times.select_nth_unstable(k);
        Some(*median)
    }
}
