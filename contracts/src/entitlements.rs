//! Entitlements: periodic subsidies to eligible households, paid by the
//! contracts at the end of a block once a period has started.
//!
//! Each (entitlement, household) pair keeps the next period it has not been
//! paid for, so no period is ever paid twice. A household is first seen by
//! the scan of the period in force at that time and is paid from that
//! period on. While the household has an open anomaly (or the program
//! lacks funds) its payment is held; the entitlement keeps rescanning each
//! block and pays every missed period once the hold lifts. Inactive or
//! unregistered households forfeit the periods they were ineligible for.
//!
//! Work per block is bounded: one entitlement visits at most
//! `params.entitlement_batch` households per block (an unfinished scan
//! resumes from a cursor) and pays at most [`MAX_CATCH_UP`] periods to one
//! household per block.
//!
//! Owns `ent/`, `ent-hh/`, `ent-active/`, `ent-meta/`.

use aidledger_types::{Hash, Slug, TxKind};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::{
    Eligibility, Entitlement, EntitlementStatus, HouseholdStatus, ProgramStatus, Recipient,
    ReleaseSource, Subject,
};
use crate::payload::Payload;
use crate::{anomalies, gov, households, programs, settlements, ContractError, Module};

/// Most periods in one entitlement.
pub const MAX_PERIODS: u32 = 1_200;
/// Most households in an explicit list.
pub const MAX_LIST: usize = 1_000;
/// Most active entitlements consortium-wide; bounds end-of-block work.
pub const MAX_ACTIVE: usize = 256;
/// Most missed periods paid to one household in one block.
pub const MAX_CATCH_UP: u32 = 12;

const ACTIVE_PREFIX: &[u8] = b"ent-active/";

fn active_key(id: &Slug) -> Vec<u8> {
    let mut k = ACTIVE_PREFIX.to_vec();
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

/// Per-household progress under one entitlement.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// The first period not yet paid (or forfeited).
    pub next_period: u32,
    /// The period a hold event was last emitted for, so a hold is reported
    /// once rather than every block.
    pub held_reported: Option<u32>,
}

pub struct Entitlements;

pub fn get(ctx: &mut Ctx<'_, '_>, id: &Slug) -> Result<Entitlement, ContractError> {
    ctx.get(&keys::entitlement(id))?
        .ok_or_else(|| ContractError::not_found("entitlement", id))
}

fn set(ctx: &mut Ctx<'_, '_>, s: &crate::payload::SetEntitlement) -> Result<(), ContractError> {
    let program = programs::open(ctx, &s.program)?;
    programs::require_owner(ctx, &program, "set an entitlement")?;
    if ctx.exists(&keys::entitlement(&s.id))? {
        return Err(ContractError::exists("entitlement", &s.id));
    }
    if s.amount.is_zero() {
        return Err(ContractError::invalid(
            "amount",
            "must be greater than zero",
        ));
    }
    if s.period_ms == 0 {
        return Err(ContractError::invalid(
            "period",
            "must be greater than zero",
        ));
    }
    if s.periods == 0 || s.periods > MAX_PERIODS {
        return Err(ContractError::invalid(
            "periods",
            format!("1 to {MAX_PERIODS} allowed"),
        ));
    }
    if s.start
        .0
        .checked_add(s.period_ms.saturating_mul(u64::from(s.periods)))
        .is_none()
    {
        return Err(ContractError::invalid(
            "schedule",
            "ends beyond the representable time",
        ));
    }
    let eligibility = match &s.eligibility {
        Eligibility::Region(r) => {
            if !program.region_scope.covers(r) {
                return Err(ContractError::invalid(
                    "region",
                    format!(
                        "{r} is outside program {}'s scope {}",
                        program.id, program.region_scope
                    ),
                ));
            }
            Eligibility::Region(r.clone())
        }
        Eligibility::List(l) => {
            let mut l = l.clone();
            let n = l.len();
            l.sort();
            l.dedup();
            if l.len() != n {
                return Err(ContractError::invalid(
                    "households",
                    "a household is listed twice",
                ));
            }
            if l.is_empty() || l.len() > MAX_LIST {
                return Err(ContractError::invalid(
                    "households",
                    format!("1 to {MAX_LIST} allowed, got {n}"),
                ));
            }
            Eligibility::List(l)
        }
    };
    let active = ctx.scan(ACTIVE_PREFIX, None, MAX_ACTIVE)?.len();
    if active >= MAX_ACTIVE {
        return Err(ContractError::Limit {
            what: "active entitlements",
            got: active as u64 + 1,
            limit: MAX_ACTIVE as u64,
        });
    }
    let e = Entitlement {
        id: s.id.clone(),
        program: s.program.clone(),
        amount: s.amount,
        period_ms: s.period_ms,
        start: s.start,
        periods: s.periods,
        eligibility,
        status: EntitlementStatus::Active,
        scanned_through: None,
        cursor: None,
        has_held: false,
    };
    ctx.put(keys::entitlement(&e.id), &e)?;
    ctx.put(active_key(&e.id), &())?;
    ctx.emit(EventBody::EntitlementSet {
        entitlement: e.id,
        program: e.program,
    });
    Ok(())
}

fn end(ctx: &mut Ctx<'_, '_>, mut e: Entitlement) -> Result<(), ContractError> {
    e.status = EntitlementStatus::Ended;
    e.cursor = None;
    ctx.delete(active_key(&e.id))?;
    ctx.emit(EventBody::EntitlementEnded {
        entitlement: e.id.clone(),
    });
    ctx.put(keys::entitlement(&e.id), &e)
}

/// The next batch of candidate households after `cursor`, and the cursor
/// to resume from (`None` when the scan is complete).
fn batch(
    ctx: &mut Ctx<'_, '_>,
    e: &Entitlement,
    limit: usize,
) -> Result<(Vec<Hash>, Option<Vec<u8>>), ContractError> {
    match &e.eligibility {
        Eligibility::Region(r) => {
            let rows = ctx.scan(
                &keys::household_region_prefix(r),
                e.cursor.as_deref(),
                limit,
            )?;
            let next = if rows.len() == limit {
                rows.last().map(|(k, _)| k.clone())
            } else {
                None
            };
            let ids = rows
                .iter()
                .map(|(k, _)| {
                    keys::household_from_region_key(k).ok_or_else(|| ContractError::Invariant {
                        what: "region index key".into(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((ids, next))
        }
        Eligibility::List(l) => {
            let start = match &e.cursor {
                None => 0,
                Some(c) => l
                    .iter()
                    .position(|h| h.0.as_slice() == c.as_slice())
                    .map_or(l.len(), |p| p + 1),
            };
            let end = start.saturating_add(limit).min(l.len());
            let ids = l[start..end].to_vec();
            let next = if end < l.len() {
                ids.last().map(|h| h.0.to_vec())
            } else {
                None
            };
            Ok((ids, next))
        }
    }
}

/// Pays one household what it is due up to `due`. Returns true if some
/// payment is still outstanding (held, or catch-up capped).
fn pay_household(
    ctx: &mut Ctx<'_, '_>,
    e: &Entitlement,
    h: Hash,
    due: u32,
) -> Result<bool, ContractError> {
    let pkey = keys::entitlement_progress(&e.id, &h);
    let mut prog: Progress = ctx.get(&pkey)?.unwrap_or(Progress {
        next_period: due,
        held_reported: None,
    });
    if prog.next_period > due {
        return Ok(false);
    }
    let eligible = households::get(ctx, &h)?.is_some_and(|hh| {
        hh.status == HouseholdStatus::Active
            && match &e.eligibility {
                Eligibility::Region(r) => r.covers(&hh.region),
                Eligibility::List(_) => true,
            }
    });
    if !eligible {
        // Forfeit the periods the household was not eligible for.
        prog.next_period = due.saturating_add(1);
        return ctx.put(pkey, &prog).map(|()| false);
    }
    let mut outstanding = false;
    let hold = if anomalies::has_open(ctx, &Subject::Household(h))? {
        Some(format!("open anomaly on {}", Subject::Household(h)))
    } else {
        None
    };
    let mut paid = 0u32;
    let mut reason = hold;
    if reason.is_none() {
        let mut program = programs::get(ctx, &e.program)?;
        while prog.next_period <= due {
            if paid >= MAX_CATCH_UP {
                outstanding = true;
                break;
            }
            if program.balances.available < e.amount {
                reason = Some(format!(
                    "program {} has {} available, {} needed",
                    program.id, program.balances.available, e.amount
                ));
                break;
            }
            settlements::create_release(
                ctx,
                &mut program,
                ReleaseSource::Entitlement {
                    entitlement: e.id.clone(),
                    period: prog.next_period,
                },
                Recipient::Household(h),
                e.amount,
            )?;
            prog.next_period = prog.next_period.saturating_add(1);
            paid += 1;
        }
        if paid > 0 {
            programs::put(ctx, &program)?;
        }
    }
    if let Some(reason) = reason {
        outstanding = true;
        if prog.held_reported != Some(prog.next_period) {
            prog.held_reported = Some(prog.next_period);
            ctx.emit(EventBody::EntitlementHeld {
                entitlement: e.id.clone(),
                household: h,
                period: prog.next_period,
                reason,
            });
        }
    }
    ctx.put(pkey, &prog)?;
    Ok(outstanding)
}

fn run(ctx: &mut Ctx<'_, '_>, mut e: Entitlement, batch_size: usize) -> Result<(), ContractError> {
    let program = programs::get(ctx, &e.program)?;
    if program.status == ProgramStatus::Closed {
        return end(ctx, e);
    }
    if ctx.time < e.start {
        return Ok(());
    }
    let last = e.periods - 1;
    let due = e.period_at(ctx.time).unwrap_or(last);
    let past_end = e.period_at(ctx.time).is_none();
    let scan_needed = e.cursor.is_some() || e.scanned_through != Some(due) || e.has_held;
    if !scan_needed {
        if past_end {
            return end(ctx, e);
        }
        return Ok(());
    }
    // `has_held` accumulates over the batches of one scan; a fresh scan
    // starts clean.
    let fresh = e.cursor.is_none();
    let (ids, next) = batch(ctx, &e, batch_size)?;
    let mut held = if fresh { false } else { e.has_held };
    for h in ids {
        held |= pay_household(ctx, &e, h, due)?;
    }
    e.cursor = next;
    if e.cursor.is_none() {
        e.scanned_through = Some(due);
    }
    e.has_held = held;
    ctx.put(keys::entitlement(&e.id), &e)
}

impl Module for Entitlements {
    fn name(&self) -> &'static str {
        "entitlements"
    }
    fn version(&self) -> u32 {
        1
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[
            keys::ENTITLEMENT_PREFIX,
            keys::ENTITLEMENT_PROGRESS_PREFIX,
            ACTIVE_PREFIX,
        ]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::SetEntitlement]
    }
    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let Payload::SetEntitlement(s) = payload else {
            return Err(ContractError::Invariant {
                what: "entitlements got a foreign payload".into(),
            });
        };
        set(ctx, s)
    }
    fn end_block(&self, ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
        let batch_size = (gov::params(ctx)?.entitlement_batch as usize).max(1);
        let active = ctx.scan(ACTIVE_PREFIX, None, MAX_ACTIVE)?;
        for (k, _) in active {
            let name = std::str::from_utf8(&k[ACTIVE_PREFIX.len()..]).map_err(|_| {
                ContractError::Invariant {
                    what: "entitlement index key".into(),
                }
            })?;
            let id = Slug::new(name).map_err(|e| ContractError::Invariant {
                what: e.to_string(),
            })?;
            let e = get(ctx, &id)?;
            run(ctx, e, batch_size)?;
        }
        Ok(())
    }
}
