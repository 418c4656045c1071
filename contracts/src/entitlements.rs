//! Entitlements: periodic subsidies to eligible households, paid by the
//! contracts at the end of a block once a period has started.
//!
//! Each (entitlement, household) pair keeps the next period it has not been
//! paid for, so no period is ever paid twice. A household is first seen by
//! the scan of the period in force at that time and is paid from that
//! period on. While the household has an open anomaly (or the program
//! lacks funds) its payment is held; the entitlement keeps rescanning each
//! block and pays every held period once the hold lifts.
//!
//! Eligibility is the plans' rule, for region and list entitlements alike:
//! registered, active, inside the program's scope (and, for a region
//! entitlement, inside its region). An ineligible household forfeits the
//! period; a listed one also raises an `ineligible-recipient` anomaly, once.
//! A household that a completed scan did not find eligible (it had moved
//! out, or was inactive) forfeits every unpaid period before the one in
//! which it is found eligible again. And one program never pays one
//! household twice for the same time: each payment's window is recorded
//! per (program, household), and a period overlapping a paid window is
//! forfeited (two overlapping entitlements pay once).
//!
//! Work per block is bounded: one entitlement visits at most
//! `params.entitlement_batch` households per block (an unfinished scan
//! resumes from a cursor) and pays at most [`MAX_CATCH_UP`] periods to one
//! household per block.
//!
//! Owns `ent/`, `ent-hh/`, `ent-active/`, `ent-meta/`.

use aidledger_types::{Hash, Slug, Timestamp, TxKind};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::DueReason;
use crate::model::{
    AnomalyKind, Eligibility, Entitlement, EntitlementStatus, ProgramStatus, Recipient,
    ReleaseSource, Subject,
};
use crate::payload::Payload;
use crate::{access, anomalies, gov, households, programs, settlements, ContractError, Module};

/// Most periods in one entitlement.
pub const MAX_PERIODS: u32 = 1_200;
/// Most households in an explicit list.
pub const MAX_LIST: usize = 1_000;
/// Most active entitlements consortium-wide; bounds end-of-block work.
pub const MAX_ACTIVE: usize = 256;
/// Most missed periods paid to one household in one block.
pub const MAX_CATCH_UP: u32 = 12;
/// Most paid windows remembered per (program, household); contiguous
/// periods merge into one, so this is reached only by many disjoint
/// entitlements. The oldest window is dropped first.
pub const MAX_PAID_WINDOWS: usize = 64;

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
    /// The last period whose scan found the household eligible; `None`
    /// when its last visit found it ineligible (or it is new).
    pub seen: Option<u32>,
    /// An `ineligible-recipient` anomaly was raised for this listed
    /// household under this entitlement (raised once, not every period).
    pub flagged: bool,
}

/// Merges `[s, e)` into the sorted, disjoint `windows`.
fn add_window(windows: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    windows.push((s, e));
    windows.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(windows.len());
    for (a, b) in windows.drain(..) {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    while merged.len() > MAX_PAID_WINDOWS {
        merged.remove(0);
    }
    *windows = merged;
}

fn overlaps(windows: &[(u64, u64)], s: u64, e: u64) -> bool {
    windows.iter().any(|(a, b)| s < *b && *a < e)
}

pub struct Entitlements;

pub fn get(ctx: &mut Ctx<'_, '_>, id: &Slug) -> Result<Entitlement, ContractError> {
    ctx.get(&keys::entitlement(id))?
        .ok_or_else(|| ContractError::not_found("entitlement", id))
}

fn set(ctx: &mut Ctx<'_, '_>, s: &crate::payload::SetEntitlement) -> Result<(), ContractError> {
    let program = programs::open(ctx, &s.program)?;
    access::require_for_program(ctx, TxKind::SetEntitlement, &program, false)?;
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
            for h in &l {
                if households::get(ctx, h)?.is_none() {
                    return Err(ContractError::invalid(
                        "households",
                        format!("household {h} is not registered"),
                    ));
                }
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
        seen: None,
        flagged: false,
    });
    if prog.next_period > due {
        return Ok(false);
    }
    let program = programs::get(ctx, &e.program)?;
    let region = match &e.eligibility {
        Eligibility::Region(r) => Some(r),
        Eligibility::List(_) => None,
    };
    let why_not = households::ineligibility(ctx, &h, &program.region_scope, region)?;
    if let Some(reason) = why_not {
        // Forfeit the periods the household was not eligible for.
        if matches!(e.eligibility, Eligibility::List(_)) {
            // A list names the household: that it cannot be paid is a
            // finding for an auditor, not a silent skip.
            if !prog.flagged {
                prog.flagged = true;
                anomalies::raise(
                    ctx,
                    Subject::Household(h),
                    AnomalyKind::IneligibleRecipient {
                        program: program.id.clone(),
                        reason: reason.clone(),
                    },
                )?;
            }
            ctx.emit(EventBody::EntitlementForfeited {
                entitlement: e.id.clone(),
                household: h,
                from: prog.next_period,
                through: due,
                reason,
            });
        }
        prog.next_period = due.saturating_add(1);
        // Not found eligible at this visit: until a scan finds it
        // eligible, what it was not paid is forfeited (below).
        prog.seen = None;
        return ctx.put(pkey, &prog).map(|()| false);
    }
    // A completed scan that did not find it eligible: it was away (or
    // inactive) then, and forfeits what it was not paid before now.
    // Also when its last visit found it ineligible (`seen` is None); a
    // household first seen now has `next_period == due`, so nothing before.
    let absent = match prog.seen {
        Some(s) => e.scanned_through.is_some_and(|q| s < q),
        None => true,
    };
    if absent && prog.next_period < due {
        ctx.emit(EventBody::EntitlementForfeited {
            entitlement: e.id.clone(),
            household: h,
            from: prog.next_period,
            through: due - 1,
            reason: "absent from an earlier period's scan (moved out or inactive)".into(),
        });
        prog.next_period = due;
    }
    prog.seen = Some(due);
    let mut outstanding = false;
    let hold = if anomalies::has_open(ctx, &Subject::Household(h))? {
        Some(format!("open anomaly on {}", Subject::Household(h)))
    } else {
        None
    };
    let mut paid = 0u32;
    let mut reason = hold;
    if reason.is_none() {
        let mut program = program;
        let paid_key = keys::entitlement_paid(&e.program, &h);
        let mut windows: Vec<(u64, u64)> = ctx.get(&paid_key)?.unwrap_or_default();
        let before = windows.clone();
        while prog.next_period <= due {
            if paid >= MAX_CATCH_UP {
                outstanding = true;
                break;
            }
            let (ws, we) = e.window(prog.next_period);
            if overlaps(&windows, ws, we) {
                ctx.emit(EventBody::EntitlementForfeited {
                    entitlement: e.id.clone(),
                    household: h,
                    from: prog.next_period,
                    through: prog.next_period,
                    reason: format!(
                        "program {} already paid this household for that time",
                        program.id
                    ),
                });
                prog.next_period = prog.next_period.saturating_add(1);
                continue;
            }
            if program.balances.available < e.amount {
                reason = Some(format!(
                    "program {} has {} available, {} needed",
                    program.id,
                    programs::money(&program, program.balances.available),
                    programs::money(&program, e.amount)
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
            add_window(&mut windows, ws, we);
            prog.next_period = prog.next_period.saturating_add(1);
            paid += 1;
        }
        if paid > 0 {
            programs::put(ctx, &program)?;
        }
        if windows != before {
            ctx.put(paid_key, &windows)?;
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

/// The active entitlements' ids, from the index, in key order.
fn active(ctx: &mut Ctx<'_, '_>) -> Result<Vec<Slug>, ContractError> {
    ctx.scan(ACTIVE_PREFIX, None, MAX_ACTIVE)?
        .into_iter()
        .map(|(k, _)| {
            let name = std::str::from_utf8(&k[ACTIVE_PREFIX.len()..]).map_err(|_| {
                ContractError::Invariant {
                    what: "entitlement index key".into(),
                }
            })?;
            Slug::new(name).map_err(|e| ContractError::Invariant {
                what: e.to_string(),
            })
        })
        .collect()
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
        3
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[
            keys::ENTITLEMENT_PREFIX,
            keys::ENTITLEMENT_PROGRESS_PREFIX,
            keys::ENTITLEMENT_PAID_PREFIX,
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
    /// An entitlement not yet started is due at its start; a running one
    /// at its next period boundary (the end, after the last period). A
    /// scan in progress wrote its cursor, so the block that left it was a
    /// change and the next one is due at once anyway.
    fn next_time(
        &self,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<(Timestamp, DueReason)>, ContractError> {
        let mut earliest: Option<Timestamp> = None;
        for id in active(ctx)? {
            let e = get(ctx, &id)?;
            let at = if ctx.time < e.start {
                e.start
            } else {
                match e.period_at(ctx.time) {
                    // Past the end and still active: due now.
                    None => ctx.time,
                    Some(k) => {
                        let ms = (u64::from(k) + 1).saturating_mul(e.period_ms);
                        e.start.saturating_add_ms(ms)
                    }
                }
            };
            earliest = Some(earliest.map_or(at, |x| x.min(at)));
        }
        Ok(earliest.map(|t| (t, DueReason::EntitlementPeriod)))
    }
    fn end_block(&self, ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
        let batch_size = (gov::params(ctx)?.entitlement_batch as usize).max(1);
        for id in active(ctx)? {
            let e = get(ctx, &id)?;
            run(ctx, e, batch_size)?;
        }
        Ok(())
    }
}
