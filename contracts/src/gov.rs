//! Governance: organisations, accounts, roles, key rotation, the validator
//! set and parameters. Every change is a proposal that applies once the
//! admins of `params.governance_threshold` distinct organisations approved.
//!
//! Owns `gov/`.

use aidledger_types::{codec, OrgId, PublicKey, Role, Slug, TxKind, ValidatorSet};

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::{
    Account, CrossCheck, GovAction, ModuleVersion, NextDue, NodeRecord, NodeReplacement, Org,
    ParamValue, Params, PreviousValidators, Proposal, ProposalStatus, RetiredKey, RetiredNode,
    ScheduledUpgrade, ScheduledValidators, Status, ACTIVATION_DELAY_MAX_BLOCKS,
    ACTIVATION_DELAY_MIN_BLOCKS, IDLE_BLOCK_INTERVAL_MAX_MS, IDLE_BLOCK_INTERVAL_MIN_MS,
};
use crate::payload::Payload;
use crate::store::StoreRead;
use crate::{ContractError, Module};

/// Most organisations in a consortium: bounds the scans that count them.
pub const MAX_ORGS: usize = 256;
/// Most node keys one organisation may have registered (genesis applies
/// the same bound).
pub const MAX_NODES_PER_ORG: usize = 16;
/// Most node keys in the registry: bounds every node's allow-list and the
/// scan that rebuilds it.
pub const MAX_NODES: usize = 1_024;
/// Most cross-department checks in force; each attestation evaluates the
/// ones that test its claim and organisation.
pub const MAX_CROSS_CHECKS: usize = 32;
/// Most tests in one cross-department check.
pub const MAX_CROSS_CHECK_TESTS: usize = 4;

/// The cross-department checks in force, in id order.
pub fn cross_checks(ctx: &mut Ctx<'_, '_>) -> Result<Vec<CrossCheck>, ContractError> {
    Ok(ctx
        .scan_t::<CrossCheck>(keys::CROSS_CHECK_PREFIX, None, MAX_CROSS_CHECKS)?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// Most admin accounts the threshold check reads; beyond it, the count of
/// organisations that can approve is a lower bound (the safe direction).
const ADMIN_SCAN_MAX: usize = 4_096;

/// The number of organisations, and the active organisations that can
/// approve: those with an active admin account. With `without`, that
/// organisation counts as suspended.
fn org_counts(
    ctx: &mut Ctx<'_, '_>,
    without: Option<&OrgId>,
) -> Result<(usize, usize), ContractError> {
    let all: Vec<(Vec<u8>, Org)> = ctx.scan_t(keys::ORG_PREFIX, None, MAX_ORGS + 1)?;
    let admins: Vec<(Vec<u8>, OrgId)> =
        ctx.scan_t(keys::ADMIN_INDEX_PREFIX, None, ADMIN_SCAN_MAX)?;
    let with_admin: std::collections::BTreeSet<OrgId> =
        admins.into_iter().map(|(_, o)| o).collect();
    let can_approve = all
        .iter()
        .filter(|(_, o)| {
            o.status == Status::Active && with_admin.contains(&o.id) && Some(&o.id) != without
        })
        .count();
    Ok((all.len(), can_approve))
}

/// Keeps the admin index in step with an account change.
fn index_admin(
    ctx: &mut Ctx<'_, '_>,
    before: Option<&Account>,
    after: Option<&Account>,
) -> Result<(), ContractError> {
    let is_admin = |a: &Account| a.status == Status::Active && a.roles.contains(&Role::Admin);
    if let Some(b) = before.filter(|b| is_admin(b)) {
        ctx.delete(keys::admin_index(&b.key))?;
    }
    if let Some(a) = after.filter(|a| is_admin(a)) {
        ctx.put(keys::admin_index(&a.key), &a.org)?;
    }
    Ok(())
}

/// The governance threshold must stay reachable: no more than the active
/// organisations, whose admins are the only ones that can approve.
fn check_threshold(threshold: u32, active: usize, what: &str) -> Result<(), ContractError> {
    if threshold as usize > active {
        return Err(ContractError::invalid(
            "governance threshold",
            format!(
                "{what} would leave the threshold {threshold} above the {active} active \
                 organisation(s) with an admin account: no proposal could ever execute; \
                 lower the threshold first"
            ),
        ));
    }
    Ok(())
}

/// After an account change: the organisations that can approve must still
/// reach the threshold.
fn check_admins_after(ctx: &mut Ctx<'_, '_>, what: &str) -> Result<(), ContractError> {
    let (_, can_approve) = org_counts(ctx, None)?;
    let t = params(ctx)?.governance_threshold;
    check_threshold(t, can_approve, what)
}

/// Most proposals open at once is not limited: each costs its proposer a
/// transaction and a nonce, and nothing iterates over them.
pub struct Governance;

/// When the next block is due with no transaction, as the last block (or
/// the genesis) left it.
pub fn next_due(store: &dyn StoreRead) -> Result<Option<NextDue>, ContractError> {
    match store.get(keys::NEXT_DUE)? {
        None => Ok(None),
        Some(b) => codec::decode(&b)
            .map(Some)
            .map_err(|e| ContractError::Invariant {
                what: format!("gov/next-due: {e}"),
            }),
    }
}

pub fn params(ctx: &mut Ctx<'_, '_>) -> Result<Params, ContractError> {
    ctx.get(keys::PARAMS)?
        .ok_or_else(|| ContractError::Invariant {
            what: "parameters missing from state".into(),
        })
}

pub fn org(ctx: &mut Ctx<'_, '_>, id: &OrgId) -> Result<Org, ContractError> {
    ctx.get(&keys::org(id))?
        .ok_or_else(|| ContractError::not_found("organisation", id))
}

/// The organisation, which must exist and be active.
pub fn active_org(ctx: &mut Ctx<'_, '_>, id: &OrgId) -> Result<Org, ContractError> {
    let o = org(ctx, id)?;
    if o.status != Status::Active {
        return Err(ContractError::OrgNotActive { org: id.clone() });
    }
    Ok(o)
}

pub fn account(ctx: &mut Ctx<'_, '_>, key: &PublicKey) -> Result<Option<Account>, ContractError> {
    ctx.get(&keys::account(key))
}

/// Sorts and de-duplicates roles; an account with no role is refused
/// because it could never sign anything.
pub fn normalise_roles(mut roles: Vec<Role>) -> Result<Vec<Role>, ContractError> {
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(ContractError::invalid(
            "roles",
            "an account needs at least one role",
        ));
    }
    Ok(roles)
}

/// Whether `later` is `earlier` or a key the account of `earlier` was
/// rotated to since (following at most 64 rotations): the same person for
/// four-eyes rules, whatever key they sign with now.
pub fn same_person(
    ctx: &mut Ctx<'_, '_>,
    earlier: &PublicKey,
    later: &PublicKey,
) -> Result<bool, ContractError> {
    let mut key = *earlier;
    for _ in 0..64 {
        if key == *later {
            return Ok(true);
        }
        match ctx.get::<RetiredKey>(&keys::retired_key(&key))? {
            Some(r) => key = r.successor,
            None => return Ok(false),
        }
    }
    Ok(key == *later)
}

/// A key retired by a rotation never signs for an account again: its
/// nonce sequence would restart at 0, and the transactions it signed
/// before could be included a second time.
fn refuse_retired(ctx: &mut Ctx<'_, '_>, key: &PublicKey) -> Result<(), ContractError> {
    if ctx.exists(&keys::retired_key(key))? {
        return Err(ContractError::invalid(
            "account key",
            format!("{key} was retired by a key rotation and cannot hold an account again"),
        ));
    }
    Ok(())
}

/// Refuses adding one more of `what` when `have` already reach `limit`.
fn room_for_one_more(what: &'static str, have: usize, limit: usize) -> Result<(), ContractError> {
    if have >= limit {
        return Err(ContractError::Limit {
            what,
            got: have as u64 + 1,
            limit: limit as u64,
        });
    }
    Ok(())
}

/// The registered node keys, in key order (at most [`MAX_NODES`]).
fn nodes(ctx: &mut Ctx<'_, '_>) -> Result<Vec<NodeRecord>, ContractError> {
    Ok(ctx
        .scan_t::<NodeRecord>(keys::NODE_PREFIX, None, MAX_NODES + 1)?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

/// The node keys being replaced, by old key (at most [`MAX_NODES`]).
fn replacements(ctx: &mut Ctx<'_, '_>) -> Result<Vec<NodeReplacement>, ContractError> {
    Ok(ctx
        .scan_t::<NodeReplacement>(keys::NODE_REPLACING_PREFIX, None, MAX_NODES + 1)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Refuses a change touching any of `keys` while it is being replaced,
/// as the old key or the new one: the replacement owns both until its
/// height.
fn refuse_replacing(
    ctx: &mut Ctx<'_, '_>,
    what: &'static str,
    keys: &[PublicKey],
) -> Result<(), ContractError> {
    if let Some((r, key)) = replacements(ctx)?.into_iter().find_map(|r| {
        keys.iter()
            .find(|k| r.old == **k || r.new == **k)
            .map(|k| (r.clone(), *k))
    }) {
        return Err(ContractError::invalid(
            what,
            format!(
                "{key} is in a node-key replacement ({} by {}) that completes at height {}; \
                 wait until then",
                r.old, r.new, r.at_height
            ),
        ));
    }
    Ok(())
}

/// At the end of the block before a replacement's height, the old key
/// leaves the registry for good: every node closes its connections and
/// the set in force from the next height (scheduled with the
/// replacement) no longer holds it.
fn retire_replaced(ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
    for r in replacements(ctx)? {
        if r.at_height > ctx.height.saturating_add(1) {
            continue;
        }
        let n = node(ctx, &r.old)?.ok_or_else(|| ContractError::Invariant {
            what: format!("node key {} is being replaced but is not registered", r.old),
        })?;
        ctx.delete(keys::node(&r.old))?;
        ctx.delete(keys::node_replacing(&r.old))?;
        ctx.put(
            keys::retired_node(&r.old),
            &RetiredNode {
                org: n.org.clone(),
                height: ctx.height,
                successor: Some(r.new),
            },
        )?;
        ctx.emit(EventBody::NodeKeyReplaced {
            org: n.org,
            old: r.old,
            new: r.new,
        });
    }
    Ok(())
}

fn scheduled_upgrade(ctx: &mut Ctx<'_, '_>) -> Result<Option<ScheduledUpgrade>, ContractError> {
    ctx.get(keys::UPGRADE_SCHEDULED)
}

/// Refuses an upgrade that is not a step forward for modules the chain
/// runs. Whether this build carries the versions is deliberately not
/// checked: that must never change a state root.
fn check_upgrade(ctx: &mut Ctx<'_, '_>, modules: &[ModuleVersion]) -> Result<(), ContractError> {
    if modules.is_empty() || modules.len() > crate::MODULE_ORDER.len() {
        return Err(ContractError::invalid(
            "upgrade",
            format!(
                "name 1 to {} modules, got {}",
                crate::MODULE_ORDER.len(),
                modules.len()
            ),
        ));
    }
    let current: Vec<ModuleVersion> = ctx
        .get(keys::MODULES)?
        .ok_or_else(|| ContractError::not_found("modules", "gov/modules"))?;
    for (i, m) in modules.iter().enumerate() {
        if modules[..i].iter().any(|o| o.name == m.name) {
            return Err(ContractError::invalid(
                "upgrade",
                format!("module {} is named twice", m.name),
            ));
        }
        let now = current.iter().find(|c| c.name == m.name).ok_or_else(|| {
            ContractError::invalid(
                "upgrade",
                format!(
                    "{:?} is not a module of this chain (it runs {})",
                    m.name,
                    crate::model::show_modules(&current)
                ),
            )
        })?;
        if m.version <= now.version {
            return Err(ContractError::invalid(
                "upgrade",
                format!("{m} is not newer than {now}, which the chain runs"),
            ));
        }
    }
    Ok(())
}

/// Refuses an activation height sooner than the delay allows.
fn check_activation_height(
    ctx: &mut Ctx<'_, '_>,
    what: &'static str,
    at_height: u64,
) -> Result<(), ContractError> {
    let delay = params(ctx)?.activation_delay_blocks;
    let earliest = ctx.height.saturating_add(delay);
    if at_height < earliest {
        return Err(ContractError::invalid(
            what,
            format!(
                "height {at_height} is too soon: at this height ({}) the earliest is \
                 {earliest} (activation_delay_blocks = {delay})",
                ctx.height
            ),
        ));
    }
    Ok(())
}

/// Refuses a second validator-set change while one is scheduled.
fn refuse_second_set_change(
    ctx: &mut Ctx<'_, '_>,
    what: &'static str,
) -> Result<(), ContractError> {
    if let Some(pending) = scheduled(ctx)? {
        return Err(ContractError::invalid(
            what,
            format!(
                "a validator-set change is already scheduled for height {}; one change at a time",
                pending.at_height
            ),
        ));
    }
    Ok(())
}

/// Refuses registering `key`: already registered, or removed for good.
fn check_new_node_key(ctx: &mut Ctx<'_, '_>, key: &PublicKey) -> Result<(), ContractError> {
    if let Some(n) = node(ctx, key)? {
        return Err(ContractError::exists(
            "node key",
            format!("{key} (registered for {})", n.org),
        ));
    }
    if let Some(r) = ctx.get::<RetiredNode>(&keys::retired_node(key))? {
        return Err(ContractError::invalid(
            "node key",
            format!(
                "{key} was removed at height {} and cannot be registered again; \
                 generate a new node key",
                r.height
            ),
        ));
    }
    Ok(())
}

/// Refuses one more node key for `org` past the registry's limits.
fn room_for_node(ctx: &mut Ctx<'_, '_>, org: &OrgId) -> Result<(), ContractError> {
    let all = nodes(ctx)?;
    room_for_one_more("node keys", all.len(), MAX_NODES)?;
    let own = all.iter().filter(|n| &n.org == org).count();
    room_for_one_more("node keys of one organisation", own, MAX_NODES_PER_ORG)
}

/// Schedules `validators` to be the set in force from `at_height` (the
/// checks are the caller's).
fn schedule_set(
    ctx: &mut Ctx<'_, '_>,
    validators: ValidatorSet,
    at_height: u64,
) -> Result<(), ContractError> {
    ctx.emit(EventBody::ValidatorSetScheduled {
        hash: validators.hash(),
        at_height,
    });
    ctx.put(
        keys::VALIDATORS_SCHEDULED.to_vec(),
        &ScheduledValidators {
            at_height,
            validators,
        },
    )
}

/// The validator-set change waiting for its height, if any.
fn scheduled(ctx: &mut Ctx<'_, '_>) -> Result<Option<ScheduledValidators>, ContractError> {
    ctx.get(keys::VALIDATORS_SCHEDULED)
}

/// At the end of the block before a scheduled change's height, the change
/// becomes the set in force: who signs height A is fixed by the state
/// after A - 1, which the old set certifies (ADR 017).
fn activate_scheduled(ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
    let Some(pending) = scheduled(ctx)? else {
        return Ok(());
    };
    if pending.at_height > ctx.height.saturating_add(1) {
        return Ok(());
    }
    // Keep the set that certifies this block, for a node restarting here.
    let current: ValidatorSet = ctx
        .get(keys::VALIDATORS)?
        .ok_or_else(|| ContractError::not_found("validator set", "current"))?;
    ctx.put(
        keys::PREVIOUS_VALIDATORS.to_vec(),
        &PreviousValidators {
            height: ctx.height,
            validators: current,
        },
    )?;
    ctx.put(keys::VALIDATORS.to_vec(), &pending.validators)?;
    ctx.delete(keys::VALIDATORS_SCHEDULED.to_vec())?;
    ctx.emit(EventBody::ValidatorSetChanged {
        hash: pending.validators.hash(),
    });
    Ok(())
}

fn node(ctx: &mut Ctx<'_, '_>, key: &PublicKey) -> Result<Option<NodeRecord>, ContractError> {
    ctx.get(&keys::node(key))
}

fn check_action(ctx: &mut Ctx<'_, '_>, action: &GovAction) -> Result<(), ContractError> {
    match action {
        GovAction::AddOrg { id, .. } => {
            if ctx.exists(&keys::org(id))? {
                return Err(ContractError::exists("organisation", id));
            }
            let (all, _) = org_counts(ctx, None)?;
            room_for_one_more("organisations", all, MAX_ORGS)?;
        }
        GovAction::UpdateOrg { id, status, .. } => {
            let o = org(ctx, id)?;
            if o.status == Status::Active && *status != Status::Active {
                let (_, active) = org_counts(ctx, Some(id))?;
                let t = params(ctx)?.governance_threshold;
                check_threshold(t, active, &format!("suspending {id}"))?;
            }
        }
        GovAction::AddAccount { key, org: o, roles } => {
            if ctx.exists(&keys::account(key))? {
                return Err(ContractError::exists("account", key));
            }
            refuse_retired(ctx, key)?;
            active_org(ctx, o)?;
            normalise_roles(roles.clone())?;
        }
        GovAction::SetRoles { key, roles } => {
            account(ctx, key)?.ok_or_else(|| ContractError::not_found("account", key))?;
            normalise_roles(roles.clone())?;
        }
        GovAction::SetAccountStatus { key, .. } => {
            account(ctx, key)?.ok_or_else(|| ContractError::not_found("account", key))?;
        }
        GovAction::RotateKey { old, new } => {
            account(ctx, old)?.ok_or_else(|| ContractError::not_found("account", old))?;
            if ctx.exists(&keys::account(new))? {
                return Err(ContractError::exists("account", new));
            }
            refuse_retired(ctx, new)?;
        }
        GovAction::SetValidators {
            validators,
            at_height,
        } => {
            check_activation_height(ctx, "validator set", *at_height)?;
            // Deserialisation skips ValidatorSet::new's checks (non-empty,
            // bounded, distinct orgs and keys); a bad set would halt the chain.
            aidledger_types::ValidatorSet::new(validators.validators().to_vec())
                .map_err(|e| ContractError::invalid("validator set", e.to_string()))?;
            for v in validators.validators() {
                active_org(ctx, &v.org)?;
            }
            for v in validators.validators() {
                // A key no node can connect with would halt the chain.
                match node(ctx, &v.key)? {
                    Some(n) if n.org == v.org => {}
                    Some(n) => {
                        return Err(ContractError::invalid(
                            "validator set",
                            format!(
                                "node key {} belongs to {}, not {}",
                                v.key, n.org, v.org
                            ),
                        ))
                    }
                    None => {
                        return Err(ContractError::invalid(
                            "validator set",
                            format!(
                                "{} is not a registered node key of {}; register it first \
                                 (gov-propose add-node) and let the node catch up",
                                v.key, v.org
                            ),
                        ))
                    }
                }
            }
            // A key being replaced leaves the registry at its height.
            let named: Vec<PublicKey> = validators.validators().iter().map(|v| v.key).collect();
            refuse_replacing(ctx, "validator set", &named)?;
            refuse_second_set_change(ctx, "validator set")?;
        }
        GovAction::AddNode { org: o, key } => {
            active_org(ctx, o)?;
            check_new_node_key(ctx, key)?;
            room_for_node(ctx, o)?;
        }
        GovAction::RemoveNode { key } => {
            if node(ctx, key)?.is_none() {
                return Err(ContractError::not_found("node key", key));
            }
            let set: ValidatorSet = ctx
                .get(keys::VALIDATORS)?
                .ok_or_else(|| ContractError::not_found("validator set", "current"))?;
            if set.index_of(key).is_some() {
                return Err(ContractError::invalid(
                    "node key",
                    format!(
                        "{key} is in the validator set; propose a set without it first \
                         (gov-propose set-validators), then remove the node"
                    ),
                ));
            }
            if let Some(pending) = scheduled(ctx)? {
                if pending.validators.index_of(key).is_some() {
                    return Err(ContractError::invalid(
                        "node key",
                        format!(
                            "{key} is in the validator set scheduled for height {}",
                            pending.at_height
                        ),
                    ));
                }
            }
            refuse_replacing(ctx, "node key", &[*key])?;
        }
        GovAction::CancelValidatorSet { at_height } => {
            let pending = scheduled(ctx)?.ok_or_else(|| {
                ContractError::invalid("validator set", "no validator-set change is scheduled")
            })?;
            if pending.at_height != *at_height {
                return Err(ContractError::invalid(
                    "validator set",
                    format!(
                        "the change scheduled is for height {}, not {at_height}",
                        pending.at_height
                    ),
                ));
            }
            if let Some(r) = replacements(ctx)?
                .into_iter()
                .find(|r| r.at_height == *at_height && pending.validators.index_of(&r.new).is_some())
            {
                return Err(ContractError::invalid(
                    "validator set",
                    format!(
                        "the change at height {at_height} moves a seat from {} to {} (a node-key \
                         replacement); it cannot be cancelled",
                        r.old, r.new
                    ),
                ));
            }
        }
        GovAction::ScheduleUpgrade { modules, at_height } => {
            check_upgrade(ctx, modules)?;
            check_activation_height(ctx, "upgrade", *at_height)?;
            if let Some(pending) = scheduled_upgrade(ctx)? {
                return Err(ContractError::invalid(
                    "upgrade",
                    format!(
                        "an upgrade ({}) is already scheduled for height {}; one at a time",
                        crate::model::show_modules(&pending.modules),
                        pending.at_height
                    ),
                ));
            }
        }
        GovAction::CancelUpgrade { at_height } => {
            let pending = scheduled_upgrade(ctx)?
                .ok_or_else(|| ContractError::invalid("upgrade", "no upgrade is scheduled"))?;
            if pending.at_height != *at_height {
                return Err(ContractError::invalid(
                    "upgrade",
                    format!(
                        "the upgrade scheduled is for height {}, not {at_height}",
                        pending.at_height
                    ),
                ));
            }
        }
        GovAction::ReplaceNodeKey {
            old,
            new,
            at_height,
        } => {
            if old == new {
                return Err(ContractError::invalid(
                    "node key",
                    "the old and the new key are the same",
                ));
            }
            let n = node(ctx, old)?.ok_or_else(|| ContractError::not_found("node key", old))?;
            active_org(ctx, &n.org)?;
            check_new_node_key(ctx, new)?;
            refuse_replacing(ctx, "node key", &[*old])?;
            check_activation_height(ctx, "node key", *at_height)?;
            room_for_node(ctx, &n.org)?;
            let set: ValidatorSet = ctx
                .get(keys::VALIDATORS)?
                .ok_or_else(|| ContractError::not_found("validator set", "current"))?;
            if set.index_of(old).is_some() {
                // Its seat moves to the new key: that is the one change.
                refuse_second_set_change(ctx, "node key")?;
            } else if let Some(pending) = scheduled(ctx)? {
                if pending.validators.index_of(old).is_some() {
                    return Err(ContractError::invalid(
                        "node key",
                        format!(
                            "{old} joins the validator set at height {}; replace it once that \
                             set is in force",
                            pending.at_height
                        ),
                    ));
                }
            }
        }
        GovAction::SetCrossCheck { check } => {
            if check.description.as_str().trim().is_empty() {
                return Err(ContractError::invalid(
                    "cross-check",
                    "needs a description",
                ));
            }
            if check.when.is_empty() || check.when.len() > MAX_CROSS_CHECK_TESTS {
                return Err(ContractError::invalid(
                    "cross-check",
                    format!("1 to {MAX_CROSS_CHECK_TESTS} tests, got {}", check.when.len()),
                ));
            }
            let mut pairs: Vec<(&Slug, &OrgId)> =
                check.when.iter().map(|t| (&t.claim, &t.by)).collect();
            pairs.sort();
            pairs.dedup();
            if pairs.len() != check.when.len() {
                return Err(ContractError::invalid(
                    "cross-check",
                    "two tests on the same claim by the same organisation",
                ));
            }
            for t in &check.when {
                org(ctx, &t.by)?;
            }
            if !ctx.exists(&keys::cross_check(&check.id))? {
                let n = ctx
                    .scan(keys::CROSS_CHECK_PREFIX, None, MAX_CROSS_CHECKS + 1)?
                    .len();
                room_for_one_more("cross-checks", n, MAX_CROSS_CHECKS)?;
            }
        }
        GovAction::RemoveCrossCheck { id } => {
            if !ctx.exists(&keys::cross_check(id))? {
                return Err(ContractError::not_found("cross-check", id));
            }
        }
        GovAction::SetParam { param } => match param {
            ParamValue::GovernanceThreshold(t) if *t == 0 || *t > 100 => {
                return Err(ContractError::invalid(
                    "governance threshold",
                    "must be 1 to 100",
                ))
            }
            ParamValue::GovernanceThreshold(t) => {
                let (_, active) = org_counts(ctx, None)?;
                check_threshold(*t, active, &format!("a threshold of {t}"))?;
            }
            ParamValue::PlanApprovals(n) if *n == 0 || *n as usize > MAX_ORGS => {
                return Err(ContractError::invalid(
                    "plan approvals",
                    format!(
                        "must be 1 to {MAX_ORGS}: a plan without an application always needs a second person"
                    ),
                ))
            }
            ParamValue::IdleBlockIntervalMs(v)
                if !(IDLE_BLOCK_INTERVAL_MIN_MS..=IDLE_BLOCK_INTERVAL_MAX_MS).contains(v) =>
            {
                return Err(ContractError::invalid(
                    "idle block interval",
                    format!(
                        "must be {IDLE_BLOCK_INTERVAL_MIN_MS} to {IDLE_BLOCK_INTERVAL_MAX_MS} ms (1 s to 7 days)"
                    ),
                ))
            }
            ParamValue::ActivationDelayBlocks(v)
                if !(ACTIVATION_DELAY_MIN_BLOCKS..=ACTIVATION_DELAY_MAX_BLOCKS).contains(v) =>
            {
                return Err(ContractError::invalid(
                    "activation delay",
                    format!(
                        "must be {ACTIVATION_DELAY_MIN_BLOCKS} to {ACTIVATION_DELAY_MAX_BLOCKS} blocks"
                    ),
                ))
            }
            ParamValue::BlockTimeDriftMs(0)
            | ParamValue::SettlementDeadlineMs(0)
            | ParamValue::MaxPendingTranches(0)
            | ParamValue::MaxPendingTranchesPerProgram(0)
            | ParamValue::EntitlementBatch(0) => {
                return Err(ContractError::invalid(
                    "parameter",
                    "must be greater than zero",
                ))
            }
            _ => {}
        },
    }
    Ok(())
}

fn execute(ctx: &mut Ctx<'_, '_>, action: &GovAction) -> Result<(), ContractError> {
    check_action(ctx, action)?;
    match action {
        GovAction::AddOrg { id, name, kind } => {
            let o = Org {
                id: id.clone(),
                name: name.clone(),
                kind: *kind,
                status: Status::Active,
            };
            ctx.put(keys::org(id), &o)?;
            ctx.emit(EventBody::OrgChanged { org: id.clone() });
        }
        GovAction::UpdateOrg {
            id,
            name,
            kind,
            status,
        } => {
            let o = Org {
                id: id.clone(),
                name: name.clone(),
                kind: *kind,
                status: *status,
            };
            ctx.put(keys::org(id), &o)?;
            ctx.emit(EventBody::OrgChanged { org: id.clone() });
        }
        GovAction::AddAccount { key, org, roles } => {
            let a = Account {
                key: *key,
                org: org.clone(),
                roles: normalise_roles(roles.clone())?,
                nonce: 0,
                status: Status::Active,
            };
            index_admin(ctx, None, Some(&a))?;
            ctx.put(keys::account(key), &a)?;
            ctx.emit(EventBody::AccountChanged { key: *key });
        }
        GovAction::SetRoles { key, roles } => {
            let mut a =
                account(ctx, key)?.ok_or_else(|| ContractError::not_found("account", key))?;
            let before = a.clone();
            a.roles = normalise_roles(roles.clone())?;
            index_admin(ctx, Some(&before), Some(&a))?;
            check_admins_after(ctx, &format!("new roles for {key}"))?;
            ctx.put(keys::account(key), &a)?;
            ctx.emit(EventBody::AccountChanged { key: *key });
        }
        GovAction::SetAccountStatus { key, status } => {
            let mut a =
                account(ctx, key)?.ok_or_else(|| ContractError::not_found("account", key))?;
            let before = a.clone();
            a.status = *status;
            index_admin(ctx, Some(&before), Some(&a))?;
            check_admins_after(ctx, &format!("a new status for {key}"))?;
            ctx.put(keys::account(key), &a)?;
            ctx.emit(EventBody::AccountChanged { key: *key });
        }
        GovAction::RotateKey { old, new } => {
            let mut a =
                account(ctx, old)?.ok_or_else(|| ContractError::not_found("account", old))?;
            let before = a.clone();
            // The nonce carries over so the account's history stays one
            // sequence; the old key can sign nothing from now on.
            a.key = *new;
            index_admin(ctx, Some(&before), Some(&a))?;
            ctx.delete(keys::account(old))?;
            ctx.put(
                keys::retired_key(old),
                &RetiredKey {
                    successor: *new,
                    nonce: a.nonce,
                },
            )?;
            ctx.put(keys::account(new), &a)?;
            ctx.emit(EventBody::KeyRotated {
                old: *old,
                new: *new,
            });
        }
        GovAction::SetValidators {
            validators,
            at_height,
        } => {
            schedule_set(ctx, validators.clone(), *at_height)?;
        }
        GovAction::AddNode { org: o, key } => {
            ctx.put(
                keys::node(key),
                &NodeRecord {
                    key: *key,
                    org: o.clone(),
                    added_height: ctx.height,
                },
            )?;
            ctx.emit(EventBody::NodeAdded {
                org: o.clone(),
                key: *key,
            });
        }
        GovAction::RemoveNode { key } => {
            let n = node(ctx, key)?.ok_or_else(|| ContractError::not_found("node key", key))?;
            ctx.delete(keys::node(key))?;
            ctx.put(
                keys::retired_node(key),
                &RetiredNode {
                    org: n.org.clone(),
                    height: ctx.height,
                    successor: None,
                },
            )?;
            ctx.emit(EventBody::NodeRemoved {
                org: n.org,
                key: *key,
            });
        }
        GovAction::CancelValidatorSet { at_height } => {
            let pending = scheduled(ctx)?
                .ok_or_else(|| ContractError::not_found("validator set", "scheduled"))?;
            ctx.delete(keys::VALIDATORS_SCHEDULED.to_vec())?;
            ctx.emit(EventBody::ValidatorSetCancelled {
                hash: pending.validators.hash(),
                at_height: *at_height,
            });
        }
        GovAction::ScheduleUpgrade { modules, at_height } => {
            let mut modules = modules.clone();
            modules.sort_by_key(|m| crate::MODULE_ORDER.iter().position(|n| *n == m.name));
            ctx.put(
                keys::UPGRADE_SCHEDULED.to_vec(),
                &ScheduledUpgrade {
                    modules: modules.clone(),
                    at_height: *at_height,
                },
            )?;
            ctx.emit(EventBody::UpgradeScheduled {
                modules,
                at_height: *at_height,
            });
        }
        GovAction::CancelUpgrade { at_height } => {
            let pending = scheduled_upgrade(ctx)?
                .ok_or_else(|| ContractError::not_found("upgrade", "scheduled"))?;
            ctx.delete(keys::UPGRADE_SCHEDULED.to_vec())?;
            ctx.emit(EventBody::UpgradeCancelled {
                modules: pending.modules,
                at_height: *at_height,
            });
        }
        GovAction::ReplaceNodeKey {
            old,
            new,
            at_height,
        } => {
            let n = node(ctx, old)?.ok_or_else(|| ContractError::not_found("node key", old))?;
            ctx.put(
                keys::node(new),
                &NodeRecord {
                    key: *new,
                    org: n.org.clone(),
                    added_height: ctx.height,
                },
            )?;
            ctx.put(
                keys::node_replacing(old),
                &NodeReplacement {
                    old: *old,
                    new: *new,
                    at_height: *at_height,
                },
            )?;
            let set: ValidatorSet = ctx
                .get(keys::VALIDATORS)?
                .ok_or_else(|| ContractError::not_found("validator set", "current"))?;
            if let Some(i) = set.index_of(old) {
                let mut seats = set.validators().to_vec();
                seats[i].key = *new;
                let validators = ValidatorSet::new(seats)
                    .map_err(|e| ContractError::invalid("validator set", e.to_string()))?;
                schedule_set(ctx, validators, *at_height)?;
            }
            ctx.emit(EventBody::NodeKeyReplacementScheduled {
                org: n.org,
                old: *old,
                new: *new,
                at_height: *at_height,
            });
        }
        GovAction::SetCrossCheck { check } => {
            ctx.put(keys::cross_check(&check.id), check)?;
            ctx.emit(EventBody::CrossCheckChanged {
                id: check.id.clone(),
                active: true,
            });
        }
        GovAction::RemoveCrossCheck { id } => {
            ctx.delete(keys::cross_check(id))?;
            ctx.emit(EventBody::CrossCheckChanged {
                id: id.clone(),
                active: false,
            });
        }
        GovAction::SetParam { param } => {
            let mut p = params(ctx)?;
            let name = match param {
                ParamValue::GovernanceThreshold(v) => {
                    p.governance_threshold = *v;
                    "governance-threshold"
                }
                ParamValue::BlockTimeDriftMs(v) => {
                    p.block_time_drift_ms = *v;
                    "block-time-drift-ms"
                }
                ParamValue::SettlementDeadlineMs(v) => {
                    p.settlement_deadline_ms = *v;
                    "settlement-deadline-ms"
                }
                ParamValue::IdleBlockIntervalMs(v) => {
                    p.idle_block_interval_ms = *v;
                    "idle-block-interval-ms"
                }
                ParamValue::ActivationDelayBlocks(v) => {
                    p.activation_delay_blocks = *v;
                    "activation-delay-blocks"
                }
                ParamValue::MaxPendingTranches(v) => {
                    p.max_pending_tranches = *v;
                    "max-pending-tranches"
                }
                ParamValue::MaxPendingTranchesPerProgram(v) => {
                    p.max_pending_tranches_per_program = *v;
                    "max-pending-tranches-per-program"
                }
                ParamValue::EntitlementBatch(v) => {
                    p.entitlement_batch = *v;
                    "entitlement-batch"
                }
                ParamValue::PlanApprovals(v) => {
                    p.plan_approvals = *v;
                    "plan-approvals"
                }
                ParamValue::AnomalySecondReviewFrom(v) => {
                    p.anomaly_second_review_from = *v;
                    "anomaly-second-review-from"
                }
            };
            ctx.put(keys::PARAMS.to_vec(), &p)?;
            ctx.emit(EventBody::ParamChanged { name: name.into() });
        }
    }
    Ok(())
}

/// Executes the proposal if it has enough approvals from organisations
/// that are active now (a suspended organisation's earlier approval no
/// longer counts). The action is checked again against the state of the
/// moment: two proposals each fine alone may not be fine together.
fn maybe_execute(ctx: &mut Ctx<'_, '_>, mut p: Proposal) -> Result<(), ContractError> {
    let threshold = params(ctx)?.governance_threshold as usize;
    let mut live = 0usize;
    for o in &p.approvals {
        if org(ctx, o)?.status == Status::Active {
            live += 1;
        }
    }
    if live >= threshold {
        check_action(ctx, &p.action)?;
        execute(ctx, &p.action)?;
        p.status = ProposalStatus::Executed;
        ctx.emit(EventBody::ProposalExecuted { proposal: p.id });
    }
    ctx.put(keys::proposal(p.id), &p)
}

impl Module for Governance {
    fn name(&self) -> &'static str {
        "governance"
    }
    fn version(&self) -> u32 {
        // 3: the node registry, AddNode, RemoveNode and ReplaceNodeKey, and
        // validator sets scheduled at a height (ADR 017).
        3
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[keys::GOV]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::GovPropose, TxKind::GovApprove]
    }

    fn end_block(&self, ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
        activate_scheduled(ctx)?;
        retire_replaced(ctx)
    }

    /// A scheduled validator-set change or node-key replacement keeps the
    /// chain moving until its height: the heights are what it waits for.
    fn next_time(
        &self,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<(aidledger_types::Timestamp, crate::model::DueReason)>, ContractError> {
        let waiting = scheduled(ctx)?.is_some()
            || !ctx
                .scan_t::<NodeReplacement>(keys::NODE_REPLACING_PREFIX, None, 1)?
                .is_empty();
        Ok(waiting.then_some((ctx.time, crate::model::DueReason::Activation)))
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let signer_org = ctx.signer()?.org.clone();
        crate::access::require(ctx, payload.kind(), &[])?;
        match payload {
            Payload::GovPropose(p) => {
                check_action(ctx, &p.action)?;
                let id = ctx.next_seq(keys::PROPOSAL_SEQ)?;
                let proposal = Proposal {
                    id,
                    action: p.action.clone(),
                    approvals: vec![signer_org.clone()],
                    status: ProposalStatus::Open,
                    created_height: ctx.height,
                };
                ctx.emit(EventBody::ProposalCreated {
                    proposal: id,
                    org: signer_org,
                });
                maybe_execute(ctx, proposal)
            }
            Payload::GovApprove(a) => {
                let mut p: Proposal = ctx
                    .get(&keys::proposal(a.proposal))?
                    .ok_or_else(|| ContractError::not_found("proposal", a.proposal))?;
                if p.status != ProposalStatus::Open {
                    return Err(ContractError::WrongStatus {
                        what: "proposal",
                        id: a.proposal.to_string(),
                        status: "executed".into(),
                        expected: "open",
                    });
                }
                if p.approvals.contains(&signer_org) {
                    return Err(ContractError::AlreadyVoted {
                        org: signer_org,
                        proposal: p.id,
                    });
                }
                p.approvals.push(signer_org.clone());
                p.approvals.sort();
                ctx.emit(EventBody::ProposalApproved {
                    proposal: p.id,
                    org: signer_org,
                    approvals: p.approvals.len() as u32,
                });
                maybe_execute(ctx, p)
            }
            _ => Err(ContractError::Invariant {
                what: "governance got a foreign payload".into(),
            }),
        }
    }
}
