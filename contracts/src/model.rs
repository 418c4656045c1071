//! The records the modules keep in state. Every record is stored in the
//! canonical encoding (`aidledger_types::codec`), so equal states have equal
//! bytes and equal state roots.

use std::collections::BTreeMap;
use std::fmt;

use aidledger_types::{
    Amount, Currency, Hash, OrgId, PublicKey, RegionCode, Role, Slug, Text, Timestamp, ValidatorSet,
};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// What kind of institution an organisation is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OrgKind {
    Bank,
    DevelopmentBank,
    PovertyOffice,
    FinanceBureau,
    Auditor,
    ImplementingUnit,
}

/// Whether an organisation or account may sign transactions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Active,
    Suspended,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Org {
    pub id: OrgId,
    pub name: Text,
    pub kind: OrgKind,
    pub status: Status,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub key: PublicKey,
    pub org: OrgId,
    /// Sorted, without repeats.
    pub roles: Vec<Role>,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    pub status: Status,
}

/// What is left of an account key after a rotation: the key that took its
/// place and the nonce the sequence had reached.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetiredKey {
    pub successor: PublicKey,
    pub nonce: u64,
}

/// A node the consortium admits to its network (`gov/node/{key}`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeRecord {
    pub key: PublicKey,
    pub org: OrgId,
    /// The height of the block that registered it (0: the genesis).
    pub added_height: u64,
}

/// A node key removed from the registry (`gov/retired-node/{key}`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetiredNode {
    pub org: OrgId,
    /// The height of the block that removed it.
    pub height: u64,
    /// The key that replaced it (`ReplaceNodeKey`); none for `RemoveNode`.
    pub successor: Option<PublicKey>,
}

/// A node key being replaced (`gov/node-replacing/{old}`): `new` is
/// registered from the block that executed the proposal, and the end of
/// block `at_height - 1` retires `old` (and, if it validates, the
/// validator-set change scheduled with it puts `new` in its seat).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeReplacement {
    pub old: PublicKey,
    pub new: PublicKey,
    pub at_height: u64,
}

/// A validator set waiting for its height (`gov/validators-scheduled`):
/// the end of block `at_height - 1` makes it the set in force.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduledValidators {
    pub at_height: u64,
    pub validators: ValidatorSet,
}

/// The validator set a block that changed the set was certified by: the
/// set in force before the block's first change. A node restarting on
/// such a block needs it to check the next block's parent certificate
/// (ADR 014); every other time the current set is also the certifying one.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviousValidators {
    /// The height of the block that changed the set.
    pub height: u64,
    pub validators: ValidatorSet,
}

/// Consortium parameters, changed only by governance.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Params {
    /// Distinct organisations whose admins must approve a governance action.
    pub governance_threshold: u32,
    /// Furthest a block's timestamp may run ahead of a validator's clock.
    pub block_time_drift_ms: u64,
    /// A release without a confirmed settlement after this long is overdue.
    pub settlement_deadline_ms: u64,
    /// Most tranches waiting for their condition, consortium-wide. Bounds
    /// the work done at the end of every block.
    pub max_pending_tranches: u32,
    /// Most tranches one program may have waiting: no program can fill
    /// the consortium-wide room and starve the others.
    #[serde(default = "default_per_program")]
    pub max_pending_tranches_per_program: u32,
    /// Most households one entitlement visits per block; the rest of a
    /// period's payments continue in the next block.
    pub entitlement_batch: u32,
    /// Approvals a plan without an approved application needs before any
    /// of its tranches can release: from this many distinct organisations
    /// of the program's approval policy, by approvers other than the
    /// plan's creator. The default, 1, is four eyes.
    #[serde(default = "default_plan_approvals")]
    pub plan_approvals: u32,
    /// An anomaly holding at least this much (in the program's minor
    /// units) is resolved by two people: a first reviewer, then a second
    /// account confirms. Household anomalies hold every payment to the
    /// household and always need two.
    #[serde(default = "default_second_review")]
    pub anomaly_second_review_from: u64,
    /// The longest an idle chain goes without a block: the heartbeat that
    /// shows monitoring the consortium is alive when nothing else is due
    /// (ADR 017, a quiet chain). 1 s to 7 days.
    #[serde(default = "default_idle_block_interval")]
    pub idle_block_interval_ms: u64,
    /// The fewest blocks between the block that executes a validator-set
    /// change and the height it takes effect at (ADR 017): time for a new
    /// validator to catch up and for operators to see the change coming.
    /// 2 to 100,000.
    #[serde(default = "default_activation_delay")]
    pub activation_delay_blocks: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            governance_threshold: 2,
            block_time_drift_ms: 10_000,
            settlement_deadline_ms: 7 * aidledger_types::time::MS_PER_DAY,
            max_pending_tranches: 10_000,
            max_pending_tranches_per_program: default_per_program(),
            entitlement_batch: 1_000,
            plan_approvals: default_plan_approvals(),
            anomaly_second_review_from: default_second_review(),
            idle_block_interval_ms: default_idle_block_interval(),
            activation_delay_blocks: default_activation_delay(),
        }
    }
}

/// Twenty blocks.
pub fn default_activation_delay() -> u64 {
    20
}

/// Bounds of `activation_delay_blocks`.
pub const ACTIVATION_DELAY_MIN_BLOCKS: u64 = 2;
pub const ACTIVATION_DELAY_MAX_BLOCKS: u64 = 100_000;

/// One hour.
pub fn default_idle_block_interval() -> u64 {
    aidledger_types::time::MS_PER_DAY / 24
}

/// Bounds of `idle_block_interval_ms`: 1 s to 7 days.
pub const IDLE_BLOCK_INTERVAL_MIN_MS: u64 = 1_000;
pub const IDLE_BLOCK_INTERVAL_MAX_MS: u64 = 7 * aidledger_types::time::MS_PER_DAY;

/// Why the next block is due (ADR 017, a quiet chain).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DueReason {
    /// The last block's end-of-block work changed state (a scan in
    /// progress, a capped batch, a validator-set change) or this is the
    /// genesis: the next block is due at once.
    Now,
    /// A date in a pending tranche's condition.
    Tranche,
    /// An entitlement's start or next period boundary.
    EntitlementPeriod,
    /// The oldest unsettled release becomes overdue.
    SettlementDeadline,
    /// Nothing else is due: the idle heartbeat.
    Heartbeat,
    /// A validator-set change is scheduled: blocks continue at the
    /// empty-block pace until its height.
    Activation,
}

impl DueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DueReason::Now => "now",
            DueReason::Tranche => "tranche",
            DueReason::EntitlementPeriod => "entitlement-period",
            DueReason::SettlementDeadline => "settlement-deadline",
            DueReason::Heartbeat => "heartbeat",
            DueReason::Activation => "activation",
        }
    }
}

/// The block time from which the next block has work to do even with no
/// transaction, and why; written at the end of every block (`gov/next-due`),
/// so every node and the auditor's replay read the same value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextDue {
    pub at: Timestamp,
    pub reason: DueReason,
}

fn default_per_program() -> u32 {
    1_000
}

fn default_plan_approvals() -> u32 {
    1
}

/// 10,000.00 at two decimals.
fn default_second_review() -> u64 {
    1_000_000
}

/// One parameter change.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ParamValue {
    GovernanceThreshold(u32),
    BlockTimeDriftMs(u64),
    SettlementDeadlineMs(u64),
    MaxPendingTranches(u32),
    MaxPendingTranchesPerProgram(u32),
    EntitlementBatch(u32),
    PlanApprovals(u32),
    AnomalySecondReviewFrom(u64),
    IdleBlockIntervalMs(u64),
    ActivationDelayBlocks(u64),
}

/// An action that needs a threshold of organisations' admins.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum GovAction {
    AddOrg {
        id: OrgId,
        name: Text,
        kind: OrgKind,
    },
    UpdateOrg {
        id: OrgId,
        name: Text,
        kind: OrgKind,
        status: Status,
    },
    AddAccount {
        key: PublicKey,
        org: OrgId,
        roles: Vec<Role>,
    },
    SetRoles {
        key: PublicKey,
        roles: Vec<Role>,
    },
    SetAccountStatus {
        key: PublicKey,
        status: Status,
    },
    /// Moves an account (org, roles, nonce) from one key to another.
    RotateKey {
        old: PublicKey,
        new: PublicKey,
    },
    /// Replaces the validator set from height `at_height`, at least
    /// `activation_delay_blocks` after the block that executes it. Every
    /// key must be a registered node of the organisation it is listed for;
    /// one change at a time may be scheduled.
    SetValidators {
        validators: aidledger_types::ValidatorSet,
        at_height: u64,
    },
    /// Registers a node key for an active organisation: from the next
    /// height, every node admits it to the network (an observer until a
    /// `SetValidators` names it).
    AddNode {
        org: OrgId,
        key: PublicKey,
    },
    /// Removes a node key from the registry, for good: every node closes
    /// its connections and refuses it from the next height. A key in the
    /// validator set must leave the set first.
    RemoveNode {
        key: PublicKey,
    },
    SetParam {
        param: ParamValue,
    },
    /// Adds a cross-department check, or replaces the one with its id.
    SetCrossCheck {
        check: CrossCheck,
    },
    RemoveCrossCheck {
        id: Slug,
    },
    /// Replaces a node's key (a rotation, or a lost or compromised key):
    /// `new` is registered for `old`'s organisation at once, so every node
    /// admits it while the node moves over, and `old` is retired from
    /// height `at_height` (at least `activation_delay_blocks` ahead). If
    /// `old` validates, `new` takes its seat at `at_height` (same index,
    /// same leader order); that is the one scheduled set change.
    ReplaceNodeKey {
        old: PublicKey,
        new: PublicKey,
        at_height: u64,
    },
    /// Cancels the validator-set change scheduled for `at_height` (named,
    /// so that a cancel meant for one change never removes another).
    /// The set scheduled by a node-key replacement is not cancelled this
    /// way: the replacement has already registered its new key.
    CancelValidatorSet {
        at_height: u64,
    },
    /// Switches the named modules to the versions given from block
    /// `at_height` on (at least `activation_delay_blocks` ahead). Each name
    /// must be a module the chain runs and each version higher than the
    /// one in force; whether a build carries the version is not checked
    /// here (it must never change a state root), but a node lacking it
    /// says so at once and stops before that block. One upgrade at a time.
    ScheduleUpgrade {
        modules: Vec<ModuleVersion>,
        at_height: u64,
    },
    /// Cancels the upgrade scheduled for `at_height`, before that block.
    CancelUpgrade {
        at_height: u64,
    },
}

/// A cross-department check, set by governance (for example "income above
/// the line per the finance bureau while flagged poor per the poverty
/// office"). When every test holds among one subject's attestations, a
/// `cross-check` anomaly is raised against the subject, which holds its
/// payments until resolved.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CrossCheck {
    pub id: Slug,
    pub description: Text,
    /// 1 to 4 tests, on distinct (claim, organisation) pairs.
    pub when: Vec<ClaimTest>,
}

/// Organisation `by` has attested `claim` with the code `value`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimTest {
    pub claim: Slug,
    pub by: OrgId,
    pub value: Slug,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProposalStatus {
    Open,
    Executed,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proposal {
    pub id: u64,
    pub action: GovAction,
    /// Organisations whose admins approved, sorted; the proposer's org first
    /// approves implicitly.
    pub approvals: Vec<OrgId>,
    pub status: ProposalStatus,
    pub created_height: u64,
}

/// k of the named organisations must approve.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalPolicy {
    pub threshold: u32,
    /// Sorted, without repeats.
    pub orgs: Vec<OrgId>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProgramStatus {
    Open,
    Closed,
}

/// A program's money, in minor units of its currency.
///
/// Invariant: `deposited = available + committed + released + returned`,
/// and `settled <= released` (settled is a part of released).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balances {
    pub deposited: Amount,
    pub available: Amount,
    pub committed: Amount,
    pub released: Amount,
    pub settled: Amount,
    pub returned: Amount,
}

impl Balances {
    /// True when the conservation invariant holds.
    pub fn conserved(&self) -> bool {
        let sum = self
            .available
            .checked_add(self.committed)
            .and_then(|s| s.checked_add(self.released))
            .and_then(|s| s.checked_add(self.returned));
        sum == Some(self.deposited) && self.settled <= self.released
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Program {
    pub id: Slug,
    pub title: Text,
    pub currency: Currency,
    /// Fractional digits of the currency's minor unit, for display only.
    pub decimals: u8,
    /// The organisation whose program officers manage the program.
    pub owner: OrgId,
    /// Organisations whose disbursers may deposit into and settle for it.
    pub funding_orgs: Vec<OrgId>,
    pub budget_ceiling: Amount,
    pub policy: ApprovalPolicy,
    pub region_scope: RegionCode,
    pub status: ProgramStatus,
    pub balances: Balances,
    /// Next sequence number in the program's money ledger.
    pub ledger_seq: u64,
    pub created_height: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ApplicationStatus {
    Submitted,
    Approved,
    Rejected,
    Funded,
    Completed,
    Cancelled,
}

impl fmt::Display for ApplicationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ApplicationStatus::Submitted => "submitted",
            ApplicationStatus::Approved => "approved",
            ApplicationStatus::Rejected => "rejected",
            ApplicationStatus::Funded => "funded",
            ApplicationStatus::Completed => "completed",
            ApplicationStatus::Cancelled => "cancelled",
        };
        f.write_str(s)
    }
}

/// One organisation's vote on an application.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vote {
    pub approve: bool,
    pub by: PublicKey,
    pub height: u64,
    pub note: Text,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Application {
    pub id: Slug,
    pub program: Slug,
    pub applicant: OrgId,
    pub region: RegionCode,
    pub requested: Amount,
    pub purpose: Text,
    /// SHA-256 of the off-chain documents.
    pub doc_hash: Hash,
    pub status: ApplicationStatus,
    /// One vote per organisation.
    pub votes: BTreeMap<OrgId, Vote>,
    pub plan: Option<Slug>,
    pub submitted_height: u64,
}

impl Application {
    pub fn approvals_among(&self, orgs: &[OrgId]) -> usize {
        orgs.iter()
            .filter(|o| self.votes.get(*o).is_some_and(|v| v.approve))
            .count()
    }
}

/// Who receives a tranche or payment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Recipient {
    Org(OrgId),
    Household(Hash),
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TrancheStatus {
    /// Waiting for its condition. `held` is set while the condition holds
    /// but an open anomaly keeps the money back.
    Pending {
        held: bool,
    },
    Released {
        release: u64,
    },
    Cancelled,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tranche {
    pub id: Slug,
    pub amount: Amount,
    pub recipient: Recipient,
    pub condition: Condition,
    pub status: TrancheStatus,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    pub id: Slug,
    pub program: Slug,
    pub application: Option<Slug>,
    pub tranches: Vec<Tranche>,
    pub created_height: u64,
    /// The account that created the plan; it never approves it.
    pub created_by: PublicKey,
    /// Approvals the plan needs before a tranche can release: 0 for a plan
    /// funded from an approved application (its policy already decided),
    /// `params.plan_approvals` at creation otherwise.
    pub approvals_needed: u32,
    pub approvals: Vec<PlanApproval>,
}

impl Plan {
    /// Whether the plan's tranches may release (when their conditions hold).
    pub fn approved(&self) -> bool {
        self.approvals.len() >= self.approvals_needed as usize
    }
}

/// One organisation's approval of a plan without an application.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanApproval {
    pub org: OrgId,
    pub by: PublicKey,
    pub height: u64,
}

/// Where a release came from.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseSource {
    Tranche { plan: Slug, tranche: Slug },
    Entitlement { entitlement: Slug, period: u32 },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SettlementStatus {
    /// The bank's amount matches the release.
    Confirmed,
    /// The amounts differ; an anomaly was raised and the bank may settle
    /// again with the right amount.
    Disputed,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettlementRecord {
    pub amount: Amount,
    /// SHA-256 of the bank's own payment reference.
    pub bank_ref: Hash,
    pub org: OrgId,
    pub height: u64,
    pub status: SettlementStatus,
}

/// A disbursement made by the contracts at the end of a block.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    pub id: u64,
    pub program: Slug,
    pub source: ReleaseSource,
    pub recipient: Recipient,
    pub amount: Amount,
    pub height: u64,
    pub time: Timestamp,
    pub settlement: Option<SettlementRecord>,
    pub overdue_flagged: bool,
}

impl Release {
    pub fn is_settled(&self) -> bool {
        self.settlement
            .as_ref()
            .is_some_and(|s| s.status == SettlementStatus::Confirmed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum HouseholdStatus {
    Active,
    Inactive,
}

/// A household file. The id is a salted hash computed off-chain; no
/// personal data is ever stored.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Household {
    pub id: Hash,
    pub region: RegionCode,
    pub status: HouseholdStatus,
    pub registered_by: OrgId,
    pub registered_height: u64,
    pub updated_height: u64,
}

/// What an attestation, an anomaly or a hold is about.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    Household(Hash),
    Application(Slug),
    Release(u64),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Household(h) => write!(f, "hh:{}", h.to_hex()),
            Subject::Application(a) => write!(f, "app:{a}"),
            Subject::Release(r) => write!(f, "release:{r}"),
        }
    }
}

/// The value of an attestation: a coded value or a hash.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AttestValue {
    Code(Slug),
    Hash(Hash),
}

impl fmt::Display for AttestValue {
    /// `code:<slug>` or `hash:<64 hex>`, the form [`AttestValue::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttestValue::Code(c) => write!(f, "code:{c}"),
            AttestValue::Hash(h) => write!(f, "hash:{}", h.to_hex()),
        }
    }
}

impl AttestValue {
    /// `code:<slug>` or `hash:<64 hex>`.
    pub fn parse(s: &str) -> Result<AttestValue, String> {
        if let Some(c) = s.strip_prefix("code:") {
            Slug::new(c)
                .map(AttestValue::Code)
                .map_err(|e| e.to_string())
        } else if let Some(h) = s.strip_prefix("hash:") {
            Hash::from_hex(h)
                .map(AttestValue::Hash)
                .map_err(|e| format!("{h:?}: {e}"))
        } else {
            Err(format!("{s:?}: expected code:<slug> or hash:<64 hex>"))
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attestation {
    pub subject: Subject,
    pub claim: Slug,
    pub org: OrgId,
    pub value: AttestValue,
    pub by: PublicKey,
    pub height: u64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    ConflictingAttestation {
        claim: Slug,
        first_org: OrgId,
        first: AttestValue,
        second_org: OrgId,
        second: AttestValue,
    },
    DuplicateHousehold {
        first_by: OrgId,
        second_by: OrgId,
    },
    IneligibleRecipient {
        program: Slug,
        reason: String,
    },
    SettlementMismatch {
        release: u64,
        expected: Amount,
        got: Amount,
    },
    SettlementOverdue {
        release: u64,
        released_at: Timestamp,
        deadline_ms: u64,
    },
    /// Every test of a governance-set cross-department check held.
    CrossCheck {
        rule: Slug,
        description: Text,
    },
}

impl AnomalyKind {
    pub fn code(&self) -> &'static str {
        match self {
            AnomalyKind::ConflictingAttestation { .. } => "conflicting-attestation",
            AnomalyKind::DuplicateHousehold { .. } => "duplicate-household",
            AnomalyKind::IneligibleRecipient { .. } => "ineligible-recipient",
            AnomalyKind::SettlementMismatch { .. } => "settlement-mismatch",
            AnomalyKind::SettlementOverdue { .. } => "settlement-overdue",
            AnomalyKind::CrossCheck { .. } => "cross-check",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyStatus {
    Open,
    Resolved {
        by: PublicKey,
        org: OrgId,
        note: Text,
        height: u64,
    },
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Anomaly {
    pub id: u64,
    pub subject: Subject,
    pub kind: AnomalyKind,
    pub raised_height: u64,
    pub raised_time: Timestamp,
    pub status: AnomalyStatus,
    /// The first of two reviews, for an anomaly that holds a large amount
    /// (`params.anomaly_second_review_from`); a second account resolves.
    pub first_review: Option<AnomalyReview>,
}

/// A first reviewer's finding on an anomaly that needs two people.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyReview {
    pub by: PublicKey,
    pub org: OrgId,
    pub note: Text,
    pub height: u64,
}

/// Which households an entitlement pays.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Eligibility {
    /// Every active household registered in the region.
    Region(RegionCode),
    /// Exactly these households (sorted, no repeats).
    List(Vec<Hash>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum EntitlementStatus {
    Active,
    Ended,
}

/// A periodic subsidy: `amount` to each eligible household at the start of
/// each of `periods` periods of `period_ms`, the first starting at `start`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlement {
    pub id: Slug,
    pub program: Slug,
    pub amount: Amount,
    pub period_ms: u64,
    pub start: Timestamp,
    pub periods: u32,
    pub eligibility: Eligibility,
    pub status: EntitlementStatus,
    /// The last period whose scan over households finished.
    pub scanned_through: Option<u32>,
    /// Where an unfinished scan resumes (a household index key).
    pub cursor: Option<Vec<u8>>,
    /// Set when the last scan held some payment back, so the next block
    /// scans again and pays it once the anomaly is resolved.
    pub has_held: bool,
}

impl Entitlement {
    /// The time window `[start, end)` of period `k`.
    pub fn window(&self, k: u32) -> (u64, u64) {
        let s = self
            .start
            .0
            .saturating_add(self.period_ms.saturating_mul(u64::from(k)));
        (s, s.saturating_add(self.period_ms))
    }

    /// The period in force at `t`, if any.
    pub fn period_at(&self, t: Timestamp) -> Option<u32> {
        if t < self.start || self.period_ms == 0 {
            return None;
        }
        let k = (t.0 - self.start.0) / self.period_ms;
        if k < u64::from(self.periods) {
            u32::try_from(k).ok()
        } else {
            None
        }
    }
}

/// A module's name and version, pinned by genesis and changed by a
/// scheduled upgrade. Written `name@version`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModuleVersion {
    pub name: String,
    pub version: u32,
}

impl fmt::Display for ModuleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl std::str::FromStr for ModuleVersion {
    type Err = String;
    /// `name@version`, for example `plans@4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, version) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?}: expected name@version, for example plans@4"))?;
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        {
            return Err(format!(
                "{name:?} is not a module name (lowercase letters and '-', at most 32)"
            ));
        }
        let version: u32 = version
            .parse()
            .map_err(|_| format!("{version:?} is not a version number"))?;
        Ok(ModuleVersion {
            name: name.to_string(),
            version,
        })
    }
}

/// Module versions written `a@1, b@2`.
pub fn show_modules(m: &[ModuleVersion]) -> String {
    m.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A contract upgrade governance scheduled (`ScheduleUpgrade`): from block
/// `at_height` on, each named module runs the version given.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduledUpgrade {
    pub modules: Vec<ModuleVersion>,
    pub at_height: u64,
}
