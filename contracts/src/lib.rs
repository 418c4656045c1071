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
//! block. [`MODULE_ORDER`] fixes the names and their order; a build may
//! carry several versions of a module, and `gov/modules` (pinned by
//! genesis, changed by a scheduled upgrade) says which one each block
//! runs: [`begin_block`] resolves them. [`apply_tx`] is the one path a transaction takes: envelope
//! checks, authorisation, strict payload decoding, nonce, then the owning
//! module; block execution splits it into [`consume_nonce`] (the inclusion
//! rule, ADR 010) and [`execute_tx`]. [`end_block`] runs every module's end-of-block step in registry
//! order. See docs/contracts.md and ADR 017.

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
    /// Runs once, at the start of the first block executed with this
    /// version, when an upgrade replaced version `from`. It must touch a
    /// bounded set of keys (per-record changes are made lazily, when a
    /// record is next written) and is covered by that block's state root.
    fn migrate(&self, _ctx: &mut Ctx<'_, '_>, _from: u32) -> Result<(), ContractError> {
        Ok(())
    }
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

/// The module names, in end-of-block order: releases from plans first,
/// then entitlement payments, then overdue-settlement checks (which then
/// see the releases of this block, not yet overdue). Genesis lists exactly
/// these names in this order; upgrades change versions, never the order.
pub const MODULE_ORDER: [&str; 9] = [
    "governance",
    "programs",
    "applications",
    "households",
    "attestations",
    "anomalies",
    "plans",
    "entitlements",
    "settlements",
];

/// Every module version this build carries. A released version's code
/// never changes, and stays here while any chain may need replaying with
/// it (ADR 017, contract upgrades); `contracts/tests/golden.rs` pins each
/// one's state roots.
static CARRIED: [&dyn Module; 10] = [
    &gov::Governance,
    &programs::Programs,
    &applications::Applications,
    &households::Households,
    &attestations::Attestations,
    &anomalies::Anomalies,
    &plans::PLANS_V3,
    &plans::PLANS_V4,
    &entitlements::Entitlements,
    &settlements::Settlements,
];

/// The module `name@version`, if this build carries it.
pub fn module(name: &str, version: u32) -> Option<&'static dyn Module> {
    CARRIED
        .iter()
        .copied()
        .find(|m| m.name() == name && m.version() == version)
}

/// Whether this build carries `name@version`.
pub fn carries(m: &ModuleVersion) -> bool {
    module(&m.name, m.version).is_some()
}

/// Every version this build carries, in end-of-block order, oldest first.
pub fn carried_versions() -> Vec<ModuleVersion> {
    let mut out = Vec::new();
    for name in MODULE_ORDER {
        let mut vs: Vec<u32> = CARRIED
            .iter()
            .filter(|m| m.name() == name)
            .map(|m| m.version())
            .collect();
        vs.sort_unstable();
        out.extend(vs.into_iter().map(|version| ModuleVersion {
            name: name.to_string(),
            version,
        }));
    }
    out
}

/// The newest version of each module this build carries, in end-of-block
/// order: what a new genesis pins.
pub fn module_versions() -> Vec<ModuleVersion> {
    newest_within(&[])
}

/// The newest version of each module this build carries that is no higher
/// than the `ceiling` named for it (names not in `ceiling` get their
/// newest). A test knob uses it to stand in for an older build.
pub fn newest_within(ceiling: &[ModuleVersion]) -> Vec<ModuleVersion> {
    let carried = carried_versions();
    MODULE_ORDER
        .iter()
        .filter_map(|name| {
            let cap = ceiling
                .iter()
                .find(|c| c.name == *name)
                .map_or(u32::MAX, |c| c.version);
            carried
                .iter()
                .filter(|m| m.name == *name && m.version <= cap)
                .max_by_key(|m| m.version)
                .cloned()
        })
        .collect()
}

/// The modules a block runs, resolved from `gov/modules`, in end-of-block
/// order.
pub struct Modules {
    list: Vec<&'static dyn Module>,
}

impl Modules {
    /// Resolves a list of versions: exactly the names of [`MODULE_ORDER`],
    /// in that order, each carried by this build. `height` is the block
    /// that would run them, for the error's sake.
    pub fn resolve(versions: &[ModuleVersion], height: u64) -> Result<Modules, ContractError> {
        let names: Vec<&str> = versions.iter().map(|m| m.name.as_str()).collect();
        if names != MODULE_ORDER {
            return Err(ContractError::Invariant {
                what: format!(
                    "gov/modules names [{}], expected exactly [{}]",
                    names.join(", "),
                    MODULE_ORDER.join(", ")
                ),
            });
        }
        let mut list = Vec::with_capacity(versions.len());
        for m in versions {
            list.push(module(&m.name, m.version).ok_or_else(|| {
                ContractError::UnsupportedModule {
                    name: m.name.clone(),
                    version: m.version,
                    height,
                    carried: show_modules(&carried_versions()),
                }
            })?);
        }
        Ok(Modules { list })
    }

    /// The versions in force in `store` (`gov/modules`).
    pub fn versions_in(store: &dyn StoreRead) -> Result<Vec<ModuleVersion>, ContractError> {
        let bytes = store
            .get(keys::MODULES)?
            .ok_or_else(|| ContractError::Invariant {
                what: "gov/modules missing from state".into(),
            })?;
        codec::decode(&bytes).map_err(|e| ContractError::Corrupt {
            key: "gov/modules".into(),
            reason: e.to_string(),
        })
    }

    /// The versions this resolves to.
    pub fn versions(&self) -> Vec<ModuleVersion> {
        self.list
            .iter()
            .map(|m| ModuleVersion {
                name: m.name().to_string(),
                version: m.version(),
            })
            .collect()
    }

    /// The version of the module `name` in force.
    pub fn version_of(&self, name: &str) -> Option<u32> {
        self.list
            .iter()
            .find(|m| m.name() == name)
            .map(|m| m.version())
    }

    fn for_kind(&self, kind: TxKind) -> Result<&'static dyn Module, ContractError> {
        self.list
            .iter()
            .copied()
            .find(|m| m.kinds().contains(&kind))
            .ok_or_else(|| ContractError::Invariant {
                what: format!("no module handles {kind}"),
            })
    }
}

/// The scheduled contract upgrade, if any.
pub fn scheduled_upgrade(store: &dyn StoreRead) -> Result<Option<ScheduledUpgrade>, ContractError> {
    match store.get(keys::UPGRADE_SCHEDULED)? {
        None => Ok(None),
        Some(bytes) => codec::decode(&bytes)
            .map(Some)
            .map_err(|e| ContractError::Corrupt {
                key: "gov/upgrade-scheduled".into(),
                reason: e.to_string(),
            }),
    }
}

/// The first thing a block does: resolves the modules it runs, and at the
/// height of a scheduled upgrade switches `gov/modules` to the new
/// versions and runs their migrations, so the upgrade and its effects are
/// covered by this block's state root. The versions are a pure function of
/// the state before the block, so proposer, validators, sync and replay
/// agree; a build that lacks a version gets
/// [`ContractError::UnsupportedModule`] and must not execute the block.
pub fn begin_block(
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
) -> Result<(Modules, Vec<Event>), ContractError> {
    let current = Modules::versions_in(store)?;
    let upgrade = match scheduled_upgrade(store)? {
        Some(u) if u.at_height == height => u,
        Some(u) if u.at_height < height => {
            return Err(ContractError::Invariant {
                what: format!(
                    "the upgrade scheduled for height {} was never applied (now {height})",
                    u.at_height
                ),
            })
        }
        _ => return Ok((Modules::resolve(&current, height)?, Vec::new())),
    };
    let mut next = current.clone();
    for m in &upgrade.modules {
        match next.iter_mut().find(|n| n.name == m.name) {
            Some(n) => n.version = m.version,
            None => {
                return Err(ContractError::Invariant {
                    what: format!("the scheduled upgrade names an unknown module {m}"),
                })
            }
        }
    }
    let modules = Modules::resolve(&next, height)?;
    let mut ctx = Ctx::new(store, height, time, None, u64::MAX);
    ctx.put(keys::MODULES.to_vec(), &next)?;
    ctx.delete(keys::UPGRADE_SCHEDULED.to_vec())?;
    let mut from = Vec::new();
    let mut to = Vec::new();
    for (old, new) in current.iter().zip(&next) {
        if old != new {
            let m = module(&new.name, new.version).ok_or_else(|| ContractError::Invariant {
                what: format!("{new} resolved but is not carried"),
            })?;
            m.migrate(&mut ctx, old.version)?;
            from.push(old.clone());
            to.push(new.clone());
        }
    }
    ctx.emit(EventBody::ModulesUpgraded { from, to });
    let events = ctx.take_events();
    Ok((modules, events))
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

/// The signer's account, of any status, for a transaction of `chain` (the
/// chain id recorded at genesis, which nothing changes afterwards).
fn signer_account(
    ctx: &mut Ctx<'_, '_>,
    chain: &ChainId,
    body: &TxBody,
) -> Result<Account, ContractError> {
    if &body.chain_id != chain {
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
    let chain = chain_id(store)?;
    let mut ctx = Ctx::new(store, 0, Timestamp(0), None, TX_STEP_LIMIT);
    let account = signer_account(&mut ctx, &chain, body)?;
    check_signer(&mut ctx, body, &account)?;
    Ok(account)
}

/// The envelope checks on the signer's account as it stands: active, of
/// an active organisation, holding a role that may sign the kind.
fn check_signer(
    ctx: &mut Ctx<'_, '_>,
    body: &TxBody,
    account: &Account,
) -> Result<(), ContractError> {
    if account.status != Status::Active {
        return Err(ContractError::AccountSuspended { key: body.signer });
    }
    gov::active_org(ctx, &account.org)?;
    let allowed = body.kind.allowed_roles();
    if !account.roles.iter().any(|r| allowed.contains(r)) {
        return Err(ContractError::RoleNotAllowed {
            kind: body.kind,
            key: body.signer,
            allowed: allowed.to_vec(),
            held: account.roles.clone(),
        });
    }
    Ok(())
}

/// The inclusion rule (docs/adr/010-transaction-inclusion.md): a
/// transaction may stand at a position in a block only if, in the state
/// left by the transactions before it, it is for this chain, its signer
/// has an account, and its nonce is that account's next nonce. A block
/// holding a transaction that breaks the rule is invalid as a whole.
///
/// `chain` is the chain id recorded at genesis ([`chain_id`]); block
/// execution reads it once per block. On success the signer's nonce is
/// consumed in `store`, whatever the transaction's outcome: an included
/// transaction, applied or rejected, can never be included again, and a
/// rejected one can never apply later. Returns the account as written,
/// with its nonce moved: what [`execute_tx`] takes. On `Err` nothing was
/// written; a non-fatal error means the transaction is not includable here
/// (its code is `wrong-chain`, `unknown-account`, `wrong-nonce` or
/// `overflow`).
pub fn consume_nonce(
    store: &mut Overlay<'_>,
    chain: &ChainId,
    body: &TxBody,
) -> Result<Account, ContractError> {
    let mut ctx = Ctx::new(store, 0, Timestamp(0), None, TX_STEP_LIMIT);
    let account = signer_account(&mut ctx, chain, body)?;
    if body.nonce != account.nonce {
        return Err(ContractError::WrongNonce {
            expected: account.nonce,
            got: body.nonce,
        });
    }
    let mut next = account;
    next.nonce = next
        .nonce
        .checked_add(1)
        .ok_or(ContractError::Overflow { what: "nonce" })?;
    ctx.put(keys::account(&next.key), &next)?;
    Ok(next)
}

/// Executes one included transaction whose nonce [`consume_nonce`] has
/// already taken: the envelope checks (active account and organisation,
/// role), strict payload decoding, then the owning module. `account` is
/// what [`consume_nonce`] returned for this transaction, which is the
/// signer's account in `store`: the account as it stands after the nonce
/// moved, so an action that rewrites this very account (a key rotation)
/// keeps the new nonce. On `Err` the caller must discard every write this
/// call made (execution runs it on an overlay of its own), but the nonce
/// stays consumed.
pub fn execute_tx(
    modules: &Modules,
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
    body: &TxBody,
    id: Hash,
    account: Account,
) -> Result<Vec<Event>, ContractError> {
    {
        let mut ctx = Ctx::new(store, 0, Timestamp(0), None, TX_STEP_LIMIT);
        check_signer(&mut ctx, body, &account)?;
    }
    let payload = Payload::decode(body.kind, &body.payload)?;
    let signer = Signer {
        key: account.key,
        org: account.org,
        roles: account.roles,
    };
    let mut ctx = Ctx::new(store, height, time, Some((id, signer)), TX_STEP_LIMIT);
    modules.for_kind(body.kind)?.apply(&mut ctx, &payload)?;
    Ok(ctx.take_events())
}

/// [`consume_nonce`] then [`execute_tx`] on one overlay, with the modules
/// in force in `store`: for callers that discard everything on `Err`
/// (tests, tools). Block execution keeps the two apart, so a rejected
/// transaction still consumes its nonce.
pub fn apply_tx(
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
    body: &TxBody,
    id: Hash,
) -> Result<Vec<Event>, ContractError> {
    let modules = Modules::resolve(&Modules::versions_in(store)?, height)?;
    let chain = chain_id(store)?;
    let account = consume_nonce(store, &chain, body)?;
    execute_tx(&modules, store, height, time, body, id, account)
}

/// Runs every module's end-of-block step. Its work is bounded by the
/// parameters and module limits, not by a step meter, so it never fails
/// for lack of steps; an error here is a broken invariant or a storage
/// failure and invalidates the block.
pub fn end_block(
    modules: &Modules,
    store: &mut Overlay<'_>,
    height: u64,
    time: Timestamp,
) -> Result<Vec<Event>, ContractError> {
    // The modules write into a layer of their own, so that what they
    // changed (equal bytes do not count) is known.
    let (writes, events) = {
        let mut layer = Overlay::new(&*store);
        let mut ctx = Ctx::new(&mut layer, height, time, None, u64::MAX);
        for m in &modules.list {
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
    let due = next_due_after(modules, store, height, time, changed)?;
    store.put(keys::NEXT_DUE.to_vec(), codec::encode(&due));
    Ok(events)
}

/// When the block after one at `time` is due with no transaction
/// (ADR 017, a quiet chain). End-of-block work reads only state and block
/// time, so after a step that changed nothing, an empty block before the
/// earliest module time would change nothing either, except the heartbeat.
fn next_due_after(
    modules: &Modules,
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
    for m in &modules.list {
        if let Some((at, reason)) = m.next_time(&mut ctx)? {
            // On a tie the module's reason is the more telling one.
            if at < due.at || (at == due.at && due.reason == DueReason::Heartbeat) {
                due = NextDue { at, reason };
            }
        }
    }
    Ok(due)
}
