//! The state key layout. Each module owns the prefixes listed here and is
//! the only one that writes under them (other modules read, and write only
//! through the owner's functions). Numbers in keys are big-endian so that
//! key order is numeric order; names are followed by `/` so no name's key
//! range contains another's.

use aidledger_types::{Hash, OrgId, PublicKey, RegionCode, Slug};

use crate::model::Subject;

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

// --- governance: `gov/` ------------------------------------------------------
pub const GOV: &[u8] = b"gov/";
pub const CHAIN_ID: &[u8] = b"gov/chain-id";
pub const GENESIS_HASH: &[u8] = b"gov/genesis-hash";
pub const MODULES: &[u8] = b"gov/modules";
pub const PARAMS: &[u8] = b"gov/params";
/// When the next block is due with no transaction ([`crate::NextDue`]).
pub const NEXT_DUE: &[u8] = b"gov/next-due";
pub const VALIDATORS: &[u8] = b"gov/validators";
/// The set that certified the last block that changed the validator set
/// ([`crate::model::PreviousValidators`]).
pub const PREVIOUS_VALIDATORS: &[u8] = b"gov/validators-previous";
/// A validator-set change waiting for its height
/// ([`crate::model::ScheduledValidators`]).
pub const VALIDATORS_SCHEDULED: &[u8] = b"gov/validators-scheduled";
/// The one scheduled contract upgrade (`ScheduledUpgrade`), if any.
pub const UPGRADE_SCHEDULED: &[u8] = b"gov/upgrade-scheduled";
pub const PROPOSAL_SEQ: &[u8] = b"gov/proposal-seq";
pub const ORG_PREFIX: &[u8] = b"gov/org/";
pub const ACCOUNT_PREFIX: &[u8] = b"gov/account/";
pub const PROPOSAL_PREFIX: &[u8] = b"gov/proposal/";
/// Cross-department checks set by governance, by id.
pub const CROSS_CHECK_PREFIX: &[u8] = b"gov/cross-check/";
/// Keys retired by a rotation. A retired key never gets an account again,
/// so its nonce sequence never restarts and nothing it signed can be
/// included a second time (ADR 010).
pub const RETIRED_KEY_PREFIX: &[u8] = b"gov/retired-key/";
/// The node registry (ADR 017): every node key the consortium admits to
/// its network, with its organisation ([`crate::model::NodeRecord`]).
/// Written at genesis for every genesis node key; governance adds and
/// removes entries. Every node's allow-list follows it.
pub const NODE_PREFIX: &[u8] = b"gov/node/";
/// Node keys removed from the registry ([`crate::model::RetiredNode`]): a
/// removed key is never registered again.
pub const RETIRED_NODE_PREFIX: &[u8] = b"gov/retired-node/";
/// Node keys being replaced, by old key ([`crate::model::NodeReplacement`]).
pub const NODE_REPLACING_PREFIX: &[u8] = b"gov/node-replacing/";

pub fn cross_check(id: &Slug) -> Vec<u8> {
    key(&[CROSS_CHECK_PREFIX, id.as_str().as_bytes()])
}
pub fn org(id: &OrgId) -> Vec<u8> {
    key(&[ORG_PREFIX, id.as_str().as_bytes()])
}
pub fn account(k: &PublicKey) -> Vec<u8> {
    key(&[ACCOUNT_PREFIX, &k.0])
}
/// Every active account holding the admin role, by key; the value is its
/// organisation. Governance counts the organisations that can approve.
pub const ADMIN_INDEX_PREFIX: &[u8] = b"gov/admin/";
pub fn admin_index(k: &PublicKey) -> Vec<u8> {
    key(&[ADMIN_INDEX_PREFIX, &k.0])
}
pub fn retired_key(k: &PublicKey) -> Vec<u8> {
    key(&[RETIRED_KEY_PREFIX, &k.0])
}
pub fn node(k: &PublicKey) -> Vec<u8> {
    key(&[NODE_PREFIX, &k.0])
}
pub fn retired_node(k: &PublicKey) -> Vec<u8> {
    key(&[RETIRED_NODE_PREFIX, &k.0])
}
pub fn node_replacing(k: &PublicKey) -> Vec<u8> {
    key(&[NODE_REPLACING_PREFIX, &k.0])
}
pub fn proposal(id: u64) -> Vec<u8> {
    key(&[PROPOSAL_PREFIX, &id.to_be_bytes()])
}

// --- programs: `prog/` and `ledger/` ----------------------------------------------
pub const PROGRAM_PREFIX: &[u8] = b"prog/";
pub const LEDGER_PREFIX: &[u8] = b"ledger/";

pub fn program(id: &Slug) -> Vec<u8> {
    key(&[PROGRAM_PREFIX, id.as_str().as_bytes()])
}
/// The prefix of one program's money ledger.
pub fn ledger_prefix(program: &Slug) -> Vec<u8> {
    key(&[LEDGER_PREFIX, program.as_str().as_bytes(), b"/"])
}
pub fn ledger(program: &Slug, seq: u64) -> Vec<u8> {
    key(&[&ledger_prefix(program), &seq.to_be_bytes()])
}

// --- applications: `app/` ------------------------------------------------------
pub const APPLICATION_PREFIX: &[u8] = b"app/";
pub fn application(id: &Slug) -> Vec<u8> {
    key(&[APPLICATION_PREFIX, id.as_str().as_bytes()])
}

// --- plans and releases: `plan/`, `pending/`, `release/`, `unsettled/` -----
pub const PLAN_PREFIX: &[u8] = b"plan/";
/// Index of tranches still waiting for their condition.
pub const PENDING_PREFIX: &[u8] = b"pending/";
pub const PENDING_COUNT: &[u8] = b"plan-meta/pending-count";
/// Pending tranches of one program, for its quota.
pub fn program_pending_count(program: &Slug) -> Vec<u8> {
    key(&[b"plan-meta/pending/", program.as_str().as_bytes()])
}
pub const RELEASE_SEQ: &[u8] = b"release-meta/seq";
pub const RELEASE_PREFIX: &[u8] = b"release/";
/// Index of releases with no confirmed settlement and no overdue anomaly
/// yet, in release order (which is time order).
pub const UNSETTLED_PREFIX: &[u8] = b"unsettled/";

pub fn plan(id: &Slug) -> Vec<u8> {
    key(&[PLAN_PREFIX, id.as_str().as_bytes()])
}
pub fn pending(plan: &Slug, tranche_index: u16) -> Vec<u8> {
    key(&[
        PENDING_PREFIX,
        plan.as_str().as_bytes(),
        b"/",
        &tranche_index.to_be_bytes(),
    ])
}
pub fn release(id: u64) -> Vec<u8> {
    key(&[RELEASE_PREFIX, &id.to_be_bytes()])
}
pub fn unsettled(id: u64) -> Vec<u8> {
    key(&[UNSETTLED_PREFIX, &id.to_be_bytes()])
}

// --- households: `hh/`, `hh-region/` ----------------------------------------------
pub const HOUSEHOLD_PREFIX: &[u8] = b"hh/";
pub const HOUSEHOLD_REGION_PREFIX: &[u8] = b"hh-region/";

pub fn household(id: &Hash) -> Vec<u8> {
    key(&[HOUSEHOLD_PREFIX, &id.0])
}
/// The prefix covering every household in `region` and its sub-regions.
/// Region segments are slugs (no `/` or NUL inside), so `gansu/` never
/// matches `gansu2/`.
pub fn household_region_prefix(region: &RegionCode) -> Vec<u8> {
    key(&[HOUSEHOLD_REGION_PREFIX, region.as_str().as_bytes(), b"/"])
}
pub fn household_region(region: &RegionCode, id: &Hash) -> Vec<u8> {
    key(&[&household_region_prefix(region), b"\0", &id.0])
}
/// The household id at the end of a region index key.
pub fn household_from_region_key(k: &[u8]) -> Option<Hash> {
    let tail = k.len().checked_sub(32)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&k[tail..]);
    Some(Hash(out))
}

// --- attestations: `att/` ------------------------------------------------------------
// The store's filters follow this layout for household subjects: a key
// under "att/h" is filtered by everything up to the `/` after its claim
// (`STATE_LONG_PREFIXES` in crates/storage/src/rocks.rs, ADR 007). A
// change here costs only speed until that table follows it, never a
// wrong answer.
pub const ATTESTATION_PREFIX: &[u8] = b"att/";

fn subject_bytes(s: &Subject) -> Vec<u8> {
    match s {
        Subject::Household(h) => key(&[b"h", &h.0]),
        Subject::Application(a) => key(&[b"a", a.as_str().as_bytes(), b"/"]),
        Subject::Release(r) => key(&[b"r", &r.to_be_bytes()]),
    }
}
/// Every attestation about `subject`, whatever the claim.
pub fn attestations_about_prefix(subject: &Subject) -> Vec<u8> {
    key(&[ATTESTATION_PREFIX, &subject_bytes(subject)])
}
pub fn attestation_prefix(subject: &Subject, claim: &Slug) -> Vec<u8> {
    key(&[
        ATTESTATION_PREFIX,
        &subject_bytes(subject),
        claim.as_str().as_bytes(),
        b"/",
    ])
}
pub fn attestation(subject: &Subject, claim: &Slug, org: &OrgId) -> Vec<u8> {
    key(&[&attestation_prefix(subject, claim), org.as_str().as_bytes()])
}

// --- anomalies: `anomaly/`, `anomaly-open/` ----------------------------------------
pub const ANOMALY_PREFIX: &[u8] = b"anomaly/";
pub const ANOMALY_OPEN_PREFIX: &[u8] = b"anomaly-open/";
pub const ANOMALY_SEQ: &[u8] = b"anomaly-meta/seq";

pub fn anomaly(id: u64) -> Vec<u8> {
    key(&[ANOMALY_PREFIX, &id.to_be_bytes()])
}
pub fn anomaly_open_prefix(subject: &Subject) -> Vec<u8> {
    key(&[ANOMALY_OPEN_PREFIX, &subject_bytes(subject)])
}
pub fn anomaly_open(subject: &Subject, id: u64) -> Vec<u8> {
    key(&[&anomaly_open_prefix(subject), &id.to_be_bytes()])
}

// --- entitlements: `ent/`, `ent-hh/` -------------------------------------------------
pub const ENTITLEMENT_PREFIX: &[u8] = b"ent/";
pub const ENTITLEMENT_PROGRESS_PREFIX: &[u8] = b"ent-hh/";

/// The time windows one household was paid for under one program's
/// entitlements, so overlapping entitlements never pay one time twice.
pub const ENTITLEMENT_PAID_PREFIX: &[u8] = b"ent-paid/";

pub fn entitlement_paid(program: &Slug, household: &Hash) -> Vec<u8> {
    key(&[
        ENTITLEMENT_PAID_PREFIX,
        program.as_str().as_bytes(),
        b"/",
        &household.0,
    ])
}

pub fn entitlement(id: &Slug) -> Vec<u8> {
    key(&[ENTITLEMENT_PREFIX, id.as_str().as_bytes()])
}
/// The next unpaid period of one household under one entitlement.
pub fn entitlement_progress(id: &Slug, household: &Hash) -> Vec<u8> {
    key(&[
        ENTITLEMENT_PROGRESS_PREFIX,
        id.as_str().as_bytes(),
        b"/",
        &household.0,
    ])
}
