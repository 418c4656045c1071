//! Receipts and events: every state change leaves one.

use aidledger_types::hash::{domain, hash_parts};
use aidledger_types::{
    codec, merkle, Amount, Currency, Hash, OrgId, PublicKey, Slug, Timestamp, TxKind,
};
use serde::{Deserialize, Serialize};

use crate::model::{ApplicationStatus, SettlementStatus, Subject};

/// How money moved, in IATI 2.03 terms (TransactionType codelist).
///
/// Reversals (a cancelled commitment, funds returned on close) use the
/// code of the flow they reverse and are exported with a negative value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MoneyFlow {
    /// A deposit into a program: IATI 1, incoming funds.
    IncomingFunds,
    /// A plan committing funds: IATI 2, outgoing commitment.
    Commitment,
    /// A release by the contracts: IATI 3, disbursement.
    Disbursement,
    /// A bank's confirmed settlement: IATI 4, expenditure.
    Expenditure,
    /// A cancelled tranche: IATI 2 with a negative value.
    CommitmentCancelled,
    /// The available balance returned when a program closes: IATI 1 with a
    /// negative value.
    FundsReturned,
}

impl MoneyFlow {
    pub fn iati_code(self) -> u8 {
        match self {
            MoneyFlow::IncomingFunds | MoneyFlow::FundsReturned => 1,
            MoneyFlow::Commitment | MoneyFlow::CommitmentCancelled => 2,
            MoneyFlow::Disbursement => 3,
            MoneyFlow::Expenditure => 4,
        }
    }
    pub fn is_reversal(self) -> bool {
        matches!(
            self,
            MoneyFlow::CommitmentCancelled | MoneyFlow::FundsReturned
        )
    }
}

/// A party to a money movement.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Party {
    Org(OrgId),
    Household(Hash),
    /// The program's own pool of funds.
    Program(Slug),
}

/// One money movement, with everything needed to trace it. These are also
/// persisted in state under `ledger/<program>/<seq>` so a report can be
/// built from state alone.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoneyEvent {
    pub program: Slug,
    /// Position in the program's ledger, from 0.
    pub seq: u64,
    pub flow: MoneyFlow,
    pub amount: Amount,
    pub currency: Currency,
    pub from: Party,
    pub to: Party,
    pub plan: Option<Slug>,
    pub tranche: Option<Slug>,
    pub entitlement: Option<Slug>,
    pub period: Option<u32>,
    pub release: Option<u64>,
    pub height: u64,
    pub time: Timestamp,
    /// The transaction that caused it; `None` for end-of-block actions.
    pub tx: Option<Hash>,
}

/// Everything else that changes state.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum EventBody {
    Money(MoneyEvent),
    ProposalCreated {
        proposal: u64,
        org: OrgId,
    },
    ProposalApproved {
        proposal: u64,
        org: OrgId,
        approvals: u32,
    },
    ProposalExecuted {
        proposal: u64,
    },
    OrgChanged {
        org: OrgId,
    },
    AccountChanged {
        key: PublicKey,
    },
    KeyRotated {
        old: PublicKey,
        new: PublicKey,
    },
    ValidatorSetChanged {
        hash: Hash,
    },
    /// A validator-set change was scheduled for `at_height`.
    ValidatorSetScheduled {
        hash: Hash,
        at_height: u64,
    },
    /// A node key was registered (`AddNode`).
    NodeAdded {
        org: OrgId,
        key: PublicKey,
    },
    /// A node key was removed from the registry (`RemoveNode`).
    NodeRemoved {
        org: OrgId,
        key: PublicKey,
    },
    ParamChanged {
        name: String,
    },
    /// A cross-department check was set (`active`) or removed.
    CrossCheckChanged {
        id: Slug,
        active: bool,
    },
    ProgramCreated {
        program: Slug,
    },
    ProgramClosed {
        program: Slug,
    },
    ApplicationSubmitted {
        application: Slug,
        program: Slug,
    },
    ApplicationVoted {
        application: Slug,
        org: OrgId,
        approve: bool,
    },
    ApplicationStatusChanged {
        application: Slug,
        status: ApplicationStatus,
    },
    PlanCreated {
        plan: Slug,
        program: Slug,
        total: Amount,
        /// Approvals it awaits before a tranche can release (0 for a plan
        /// funded from an approved application).
        approvals_needed: u32,
    },
    /// An organisation approved a plan without an application; `approved`
    /// once it has all the approvals it needs.
    PlanApproved {
        plan: Slug,
        org: OrgId,
        approvals: u32,
        needed: u32,
        approved: bool,
    },
    TrancheHeld {
        plan: Slug,
        tranche: Slug,
        reason: String,
    },
    HouseholdRegistered {
        household: Hash,
    },
    HouseholdUpdated {
        household: Hash,
    },
    Attested {
        subject: Subject,
        claim: Slug,
        org: OrgId,
    },
    EntitlementSet {
        entitlement: Slug,
        program: Slug,
    },
    EntitlementHeld {
        entitlement: Slug,
        household: Hash,
        period: u32,
        reason: String,
    },
    EntitlementEnded {
        entitlement: Slug,
    },
    /// Periods a household will never be paid under this entitlement:
    /// `from..=through`, with why (absent from a scan, ineligible, or the
    /// time already paid by another entitlement of the program).
    EntitlementForfeited {
        entitlement: Slug,
        household: Hash,
        from: u32,
        through: u32,
        reason: String,
    },
    Settled {
        release: u64,
        amount: Amount,
        status: SettlementStatus,
    },
    AnomalyRaised {
        anomaly: u64,
        subject: Subject,
        code: String,
    },
    AnomalyResolved {
        anomaly: u64,
        org: OrgId,
    },
    /// The first of two reviews of an anomaly holding a large amount; it
    /// stays open until a second account resolves it.
    AnomalyReviewed {
        anomaly: u64,
        org: OrgId,
    },
    /// `new` was registered to replace `old` from `at_height`
    /// (`ReplaceNodeKey`).
    NodeKeyReplacementScheduled {
        org: OrgId,
        old: PublicKey,
        new: PublicKey,
        at_height: u64,
    },
    /// `old` was retired and `new` took its place (at the end of the block
    /// before the replacement's height).
    NodeKeyReplaced {
        org: OrgId,
        old: PublicKey,
        new: PublicKey,
    },
    /// The validator-set change scheduled for `at_height` was cancelled.
    ValidatorSetCancelled {
        hash: Hash,
        at_height: u64,
    },
    /// Governance scheduled a contract upgrade for block `at_height`.
    UpgradeScheduled {
        modules: Vec<crate::model::ModuleVersion>,
        at_height: u64,
    },
    /// The upgrade scheduled for `at_height` was cancelled.
    UpgradeCancelled {
        modules: Vec<crate::model::ModuleVersion>,
        at_height: u64,
    },
    /// The block this event belongs to is the first executed with the
    /// versions in `to` (which replaced those in `from`); any migration
    /// ran in it, before its transactions.
    ModulesUpgraded {
        from: Vec<crate::model::ModuleVersion>,
        to: Vec<crate::model::ModuleVersion>,
    },
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub height: u64,
    /// The transaction that caused it; `None` at the end of a block.
    pub tx: Option<Hash>,
    pub body: EventBody,
}

impl Event {
    /// The event's leaf in its block's event tree: the domain-separated
    /// hash of its canonical encoding (ADR 020).
    pub fn leaf_hash(&self) -> Hash {
        hash_parts(domain::EVENT, &[&codec::encode(self)])
    }
}

/// The leaves of a block's event tree, in the order the header commits
/// to: each receipt's events in transaction order, then the block's own.
pub fn event_leaves<'a>(
    receipts: impl IntoIterator<Item = &'a Receipt>,
    block_events: impl IntoIterator<Item = &'a Event>,
) -> Vec<Hash> {
    receipts
        .into_iter()
        .flat_map(|r| r.events.iter())
        .chain(block_events)
        .map(Event::leaf_hash)
        .collect()
}

/// The header's `event_root` and `event_count` over
/// [`event_leaves`].
pub fn event_root<'a>(
    receipts: impl IntoIterator<Item = &'a Receipt>,
    block_events: impl IntoIterator<Item = &'a Event>,
) -> (Hash, u32) {
    let leaves = event_leaves(receipts, block_events);
    let count = u32::try_from(leaves.len()).unwrap_or(u32::MAX);
    (merkle::root(&leaves), count)
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TxOutcome {
    Applied,
    /// Nothing the transaction did was kept but its nonce, which is used
    /// (ADR 010): the same signed transaction can never apply later.
    Rejected {
        code: String,
        reason: String,
    },
}

/// The result of one transaction in a block.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    /// Position in the block.
    pub index: u32,
    pub tx_id: Hash,
    pub kind: TxKind,
    pub signer: PublicKey,
    pub height: u64,
    pub outcome: TxOutcome,
    /// Empty when rejected.
    pub events: Vec<Event>,
}

impl Receipt {
    pub fn is_applied(&self) -> bool {
        self.outcome == TxOutcome::Applied
    }
    /// The rejection code, if rejected.
    pub fn rejection_code(&self) -> Option<&str> {
        match &self.outcome {
            TxOutcome::Applied => None,
            TxOutcome::Rejected { code, .. } => Some(code),
        }
    }
}
