//! The crate's one error type. Every variant that can reject a transaction
//! carries the context an operator needs to understand the rejection, and
//! has a stable short code (see [`ContractError::code`]) that receipts store.

use aidledger_types::{Amount, Hash, OrgId, PublicKey, Role, TxKind};

/// Why a transaction, genesis or condition was refused, or why the state
/// could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    // --- Envelope and authorisation -------------------------------------
    #[error("transaction is for chain {got:?}, this chain is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("unknown account {key}")]
    UnknownAccount { key: PublicKey },
    #[error("account {key} is suspended")]
    AccountSuspended { key: PublicKey },
    #[error("organisation {org} is not active")]
    OrgNotActive { org: OrgId },
    #[error("{kind} needs one of the roles {allowed:?}; account {key} has {held:?}")]
    RoleNotAllowed {
        kind: TxKind,
        key: PublicKey,
        allowed: Vec<Role>,
        held: Vec<Role>,
    },
    #[error("wrong nonce: expected {expected}, got {got}")]
    WrongNonce { expected: u64, got: u64 },
    #[error("payload of {kind} does not decode: {reason}")]
    BadPayload { kind: TxKind, reason: String },
    #[error("out of steps: {what} needs more than the limit of {limit}")]
    OutOfSteps { what: &'static str, limit: u64 },

    // --- Lookups ---------------------------------------------------------
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} {id:?} is {status}, expected {expected}")]
    WrongStatus {
        what: &'static str,
        id: String,
        status: String,
        expected: &'static str,
    },
    #[error("organisation {org} may not {action}: {why}")]
    NotPermitted {
        org: OrgId,
        action: &'static str,
        why: String,
    },

    // --- Values and money ------------------------------------------------
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("insufficient funds in program {program}: {needed} needed, {available} available")]
    InsufficientFunds {
        program: String,
        /// In the program's currency and decimals, e.g. `1250.00 CNY`.
        needed: String,
        available: String,
    },
    #[error("deposit would exceed program {program}'s budget ceiling of {ceiling} (deposited {deposited}, deposit {amount})")]
    CeilingExceeded {
        program: String,
        /// In the program's currency and decimals.
        ceiling: String,
        deposited: String,
        amount: String,
    },
    #[error("arithmetic overflow in {what}")]
    Overflow { what: &'static str },
    #[error("limit exceeded: {what} is {got}, the limit is {limit}")]
    Limit {
        what: &'static str,
        got: u64,
        limit: u64,
    },

    // --- Governance --------------------------------------------------------
    #[error("organisation {org} already approved proposal {proposal}")]
    AlreadyVoted { org: OrgId, proposal: u64 },
    #[error("organisation {org} already voted on application {application}")]
    AlreadyVotedApplication { org: OrgId, application: String },

    // --- Conditions ----------------------------------------------------------
    #[error("condition: {reason}")]
    Condition { reason: String },
    #[error("condition syntax error at byte {pos}: {reason}")]
    ConditionSyntax { pos: usize, reason: String },

    // --- Genesis -------------------------------------------------------------
    #[error("genesis: {reason}")]
    Genesis { reason: String },

    // --- State -----------------------------------------------------------------
    #[error("state value under key {key} does not decode: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("state read failed: {reason}")]
    Storage { reason: String },
    #[error("internal invariant broken: {what}")]
    Invariant { what: String },
    /// The chain runs, or is about to run, a module version this build
    /// does not carry: the node must not execute the block (ADR 017).
    #[error(
        "the chain runs {name}@{version} from height {height}, which this build of aidledger \
         does not carry (it has {carried}); install a release that carries {name}@{version}"
    )]
    UnsupportedModule {
        name: String,
        version: u32,
        height: u64,
        carried: String,
    },

    #[error("transaction {id} appears twice")]
    DuplicateTx { id: Hash },
}

impl ContractError {
    /// A stable, short, kebab-case code for the rejection, stored in
    /// receipts so clients can match on it without parsing messages.
    pub fn code(&self) -> &'static str {
        use ContractError::*;
        match self {
            WrongChain { .. } => "wrong-chain",
            UnknownAccount { .. } => "unknown-account",
            AccountSuspended { .. } => "account-suspended",
            OrgNotActive { .. } => "org-not-active",
            RoleNotAllowed { .. } => "role-not-allowed",
            WrongNonce { .. } => "wrong-nonce",
            BadPayload { .. } => "bad-payload",
            OutOfSteps { .. } => "out-of-steps",
            NotFound { .. } => "not-found",
            AlreadyExists { .. } => "already-exists",
            WrongStatus { .. } => "wrong-status",
            NotPermitted { .. } => "not-permitted",
            Invalid { .. } => "invalid",
            InsufficientFunds { .. } => "insufficient-funds",
            CeilingExceeded { .. } => "ceiling-exceeded",
            Overflow { .. } => "overflow",
            Limit { .. } => "limit",
            AlreadyVoted { .. } => "already-voted",
            AlreadyVotedApplication { .. } => "already-voted",
            Condition { .. } => "bad-condition",
            ConditionSyntax { .. } => "condition-syntax",
            Genesis { .. } => "bad-genesis",
            Corrupt { .. } => "corrupt-state",
            Storage { .. } => "storage",
            Invariant { .. } => "invariant",
            UnsupportedModule { .. } => "unsupported-module",
            DuplicateTx { .. } => "duplicate-tx",
        }
    }

    /// True for failures of the node rather than of the transaction: a
    /// storage error or a broken invariant must abort the whole block
    /// instead of becoming a rejection receipt, or nodes with a healthy
    /// disk and nodes with a failing one would disagree.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ContractError::Storage { .. }
                | ContractError::Corrupt { .. }
                | ContractError::Invariant { .. }
                | ContractError::UnsupportedModule { .. }
        )
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ContractError::Invalid {
            field,
            reason: reason.into(),
        }
    }
    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        ContractError::NotFound {
            what,
            id: id.to_string(),
        }
    }
    pub(crate) fn exists(what: &'static str, id: impl ToString) -> Self {
        ContractError::AlreadyExists {
            what,
            id: id.to_string(),
        }
    }
}

/// Checked addition with a named context.
pub(crate) fn add(a: Amount, b: Amount, what: &'static str) -> Result<Amount, ContractError> {
    a.checked_add(b).ok_or(ContractError::Overflow { what })
}

/// Checked subtraction with a named context. An underflow here means an
/// internal invariant broke, since callers check balances first.
pub(crate) fn sub(a: Amount, b: Amount, what: &'static str) -> Result<Amount, ContractError> {
    a.checked_sub(b).ok_or_else(|| ContractError::Invariant {
        what: format!("{what}: {a} - {b} underflows"),
    })
}
