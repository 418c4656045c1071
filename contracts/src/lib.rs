//! The aid-fund contract modules and the release-condition language.
//!
//! Architecture Invariant: this crate is a pure function of the state it
//! reads and the block height and time it is given. It does no IO, reads no
//! clock, draws no randomness, uses no hash-ordered collections, and does
//! all money arithmetic with checked operations. It depends only on
//! `aidledger-types`, serde and thiserror.
//!
//! # Modules
//! Each [`Module`] owns a slice of state (its key prefixes, see [`keys`])
//! and the transaction kinds it handles, and may act at the end of every
//! block. [`MODULES`] is the fixed, ordered registry; genesis pins its names
//! and versions. [`apply_tx`] is the one path a transaction takes: envelope
//! checks, authorisation, strict payload decoding, nonce, then the owning
//! module; block execution splits it into [`consume_nonce`] (the inclusion
//! rule, ADR 010) and [`execute_tx`]. [`end_block`] runs every module's end-of-block step in registry
//! order. See docs/contracts.md.

pub mod access;
pub mod anomalies;
pub mod applications;
pub mod attestations;
pub mod condition;
pub mod condition_text;
pub mod ctx;
pub mod entitlements;
mod error;
pub mod events;
pub mod genesis;
pub mod gov;
pub mod households;
pub mod keys;
pub mod model;
pub mod payload;
pub mod plans;
pub mod programs;
pub mod settlements;
pub mod store;

use aidledger_types::{codec, ChainId, Hash, Timestamp, TxBody, TxKind};

pub use condition::Condition;
pub use ctx::{Ctx, Signer, TX_STEP_LIMIT};
pub use error::ContractError;
pub use events::{Event, EventBody, MoneyEvent, MoneyFlow, Party, Receipt, TxOutcome};
pub use genesis::{Genesis, GenesisAccount, GenesisOrg};
pub use model::*;
pub use payload::Payload;
pub use store::{Overlay, StoreRead};

/// A contract module.
pub trait Module: Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// The key prefixes this module owns.
    fn prefixes(&self) -> &'static [&'static [u8]];
    /// The transaction kinds this module handles.
    fn kinds(&self) -> &'static [TxKind];
    /// Applies one authorised transaction with a decoded payload.
    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError>;
    /// Runs at the end of every block, after all transactions.
    fn end_block(&self, _ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
        Ok(())
    }
    /// The earliest block time after `ctx.time` at which this module's
    /// end-of-block step could act, if no transaction comes in between
    /// and the step just run changed nothing. Reads only; `None`: nothing
    /// timed is pending here.
    fn next_time(
        &self,
        _ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<(Timestamp, DueReason)>, ContractError> {
        Ok(None)
    }
}

/// The modules, in end-of-block order: releases from plans first, then
/// entitlement payments, then overdue-settlement checks (which then see the
/// releases of this block, not yet overdue).
pub static MODULES: [&dyn Module; 9] = [
    &gov::Governance,
    &programs::Programs,
    &applications::Applications,
    &households::Households,
    &attestations::Attestations,
    &anomalies::Anomalies,
    &plans::Plans,
    &entitlements::Entitlements,
    &settlements::Settlements,
];

/// The names and versions genesis must pin.
pub fn module_versions() -> Vec<ModuleVersion> {
    MODULES
        .iter()
        .map(|m| ModuleVersion {
            name: m.name().to_string(),
            version: m.version(),
        })
        .collect()
}

fn module_for(kind: TxKind) -> Result<&'static dyn Module, ContractError> {
    MODULES
        .iter()
        .copied()
        .find(|m| m.kinds().contains(&kind))
        .ok_or_else(|| ContractError::Invariant {
            what: format!("no module handles {kind}"),
        })
}

/// The chain id recorded at genesis.
pub fn chain_id(store: &dyn StoreRead) -> Result<ChainId, ContractError> {
    let bytes = store
        .get(keys::CHAIN_ID)?
        .ok_or_else(|| ContractError::Invariant {
            what: "chain id missing from state".into(),
        })?;
    codec::decode(&bytes).map_err(|e| ContractError::Corrupt {
        key: "gov/chain-id".into(),
        reason: e.to_string(),
    })
}

/// The signer's account, of any status, for a transaction of this chain.
fn signer_account(ctx: &mut Ctx<'_, '_>, body: &TxBody) -> Result<Account, ContractError> {
    let chain = chain_id(ctx.store)?;
    if body.chain_id != chain {
        return Err(ContractError::WrongChain {
            expected: chain.to_string(),
            got: body.chain_id.to_string(),
        });
    }
    gov::account(ctx, &body.signer)?.ok_or(ContractError::UnknownAccount { key: body.signer })
}

/// The account that must sign a transaction, after the envelope checks
/// that need no payload: chain id, known and active account and
/// organisation, and role. The nonce is returned for the caller to check.
pub fn check_envelope(store: &mut Overlay<'_>, body: &TxBody) -> Result<Account, ContractError> {
    let mut ctx = Ctx::new(store, 0, Timestamp(0), None, TX_STEP_LIMIT);
    let account = signer_account(&mut ctx, body)?;
    if account.status != Status::Active {
        return Err(ContractError::AccountSuspended { key: body.signer });
    }
    gov::active_org(&mut ctx, &account.org)?;
    let allowed = body.kind.allowed_roles();
    if !account.roles.iter().any(|r| allowed.contains(r)) {
        return Err(ContractError::RoleNotAllowed {
            kind: body.kind,
            key: body.signer,
            allowed: allowed.to_vec(),
            held: account.roles.clone(),
        });
    }
    Ok(account)
}

/// The inclusion rule (docs/adr/010-transaction-inclusion.md): a
/// transaction may stand at a position in a block only if, in the state
/// left by the transactions before it, it is for this chain, its signer
/// has an account, and its nonce is that account's next nonce. A block
/// holding a transaction that breaks the rule is invalid as a whole.
///
/// On success the signer's nonce is consumed in `store`, whatever the
/// transaction's outcome: an included transaction, applied or rejected,
/// can never be included again, and a rejected one can never apply later.
/// Returns the account as it was before the nonce moved. On `Err` nothing
/// was written; a non-fatal error means the transaction is not includable
/// here (its code is `wrong-chain`, `unknown-account`, `wrong-nonce` or
/// `overflow`).
pub fn consume_nonce(store: &mut Overlay<'_>, body: &TxBody) -> Result<Account, ContractError> {
    let mut ctx = Ctx::new(store, 0, Timestamp(0), None, TX_STEP_LIMIT);
    let account = signer_account(&mut ctx, body)?;
    if body.nonce != account.nonce {
        return Err(ContractError::WrongNonce {
            expected: account.nonce,
            got: body.nonce,
        });
    }
    let mut next = account.clone();
    next.nonce = account
        .nonce
        .checked_add(1)
        .ok_or(ContractError::Overflow { what: "nonce" })?;
    ctx.put(keys::account(&next.key), &next)?;
    Ok(account)
}

/// Executes one included transaction whose nonce [`consume_nonce`] has
/// already taken: the envelope checks (active account and organisation,
/// role), strict payload decoding, then the owning module. On `Err` the
/// caller must discard every write this call made (execution runs it on
/// an overlay of its own), but the nonce stays consumed.
pub fn execute_tx(
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
    body: &TxBody,
    id: Hash,
) -> Result<Vec<Event>, ContractError> {
    // The account is read after the nonce moved, so an action that
    // rewrites this very account (a key rotation) keeps the new nonce.
    let account = check_envelope(store, body)?;
    let payload = Payload::decode(body.kind, &body.payload)?;
    let signer = Signer {
        key: account.key,
        org: account.org.clone(),
        roles: account.roles.clone(),
    };
    let mut ctx = Ctx::new(store, height, time, Some((id, signer)), TX_STEP_LIMIT);
    module_for(body.kind)?.apply(&mut ctx, &payload)?;
    Ok(ctx.take_events())
}

/// [`consume_nonce`] then [`execute_tx`] on one overlay: for callers that
/// discard everything on `Err` (tests, tools). Block execution keeps the
/// two apart, so a rejected transaction still consumes its nonce.
pub fn apply_tx(
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
    body: &TxBody,
    id: Hash,
) -> Result<Vec<Event>, ContractError> {
    consume_nonce(store, body)?;
    execute_tx(store, height, time, body, id)
}

/// Runs every module's end-of-block step. Its work is bounded by the
/// parameters and module limits, not by a step meter, so it never fails
/// for lack of steps; an error here is a broken invariant or a storage
/// failure and invalidates the block.
pub fn end_block(
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
) -> Result<Vec<Event>, ContractError> {
    // The modules write into a layer of their own, so that what they
    // changed (equal bytes do not count) is known.
    let (writes, events) = {
        let mut layer = Overlay::new(&*store);
        let mut ctx = Ctx::new(&mut layer, height, time, None, u64::MAX);
        for m in MODULES.iter() {
            m.end_block(&mut ctx)?;
        }
        let events = ctx.take_events();
        (layer.into_writes(), events)
    };
    let mut changed = false;
    for (k, v) in &writes {
        if store.get(k)? != *v {
            changed = true;
            break;
        }
    }
    store.absorb(writes);
    let due = next_due_after(store, height, time, changed)?;
    store.put(keys::NEXT_DUE.to_vec(), codec::encode(&due));
    Ok(events)
}

/// When the block after one at `time` is due with no transaction
/// (ADR 017, a quiet chain). End-of-block work reads only state and block
/// time, so after a step that changed nothing, an empty block before the
/// earliest module time would change nothing either, except the heartbeat.
fn next_due_after(
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
    changed: bool,
) -> Result<NextDue, ContractError> {
    if changed {
        return Ok(NextDue {
            at: time,
            reason: DueReason::Now,
        });
    }
    let mut layer = Overlay::new(&*store);
    let mut ctx = Ctx::new(&mut layer, height, time, None, u64::MAX);
    let idle = gov::params(&mut ctx)?.idle_block_interval_ms;
    let mut due = NextDue {
        at: time.saturating_add_ms(idle),
        reason: DueReason::Heartbeat,
    };
    for m in MODULES.iter() {
        if let Some((at, reason)) = m.next_time(&mut ctx)? {
            // On a tie the module's reason is the more telling one.
            if at < due.at || (at == due.at && due.reason == DueReason::Heartbeat) {
                due = NextDue { at, reason };
            }
        }
    }
    Ok(due)
}
