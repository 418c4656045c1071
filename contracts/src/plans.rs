//! Disbursement plans: tranches with an amount, a recipient and a release
//! condition. Creating a plan commits its full amount out of the program's
//! available funds. At the end of every block each pending tranche whose
//! condition holds at the block's time is released, unless its recipient
//! (or the plan's application) has an open anomaly, in which case it is
//! held until the anomaly is resolved. No one submits a release.
//!
//! Owns `plan/`, `pending/`, `plan-meta/`.

use std::collections::BTreeMap;

use aidledger_types::{Amount, Slug, Timestamp, TxKind};

use crate::condition::{eval, EvalEnv};
use crate::ctx::Ctx;
use crate::error::{add, sub};
use crate::events::{EventBody, MoneyFlow, Party};
use crate::keys;
use crate::model::DueReason;
use crate::model::{
    AnomalyKind, ApplicationStatus, Plan, PlanApproval, Recipient, ReleaseSource, Status, Subject,
    Tranche, TrancheStatus,
};
use crate::payload::Payload;
use crate::programs::{self, MoneyRefs};
use crate::{access, anomalies, applications, gov, households, settlements, ContractError, Module};

/// Most tranches in one plan.
pub const MAX_TRANCHES: usize = 32;

/// The plans module. Its versions differ only in the condition language
/// that `create-plan` accepts (see [`Condition::validate`]); everything
/// else, including how a condition in state is evaluated, is shared, so a
/// plan created under one version behaves the same under the next.
///
/// [`Condition::validate`]: crate::Condition::validate
pub struct Plans {
    version: u32,
}

/// `plans@3`: the condition language of the first release.
pub static PLANS_V3: Plans = Plans { version: 3 };
/// `plans@4`: adds `attested_value(claim, by: org, subject: s, value: v)`.
pub static PLANS_V4: Plans = Plans { version: 4 };

pub fn get(ctx: &mut Ctx<'_, '_>, id: &Slug) -> Result<Plan, ContractError> {
    ctx.get(&keys::plan(id))?
        .ok_or_else(|| ContractError::not_found("plan", id))
}

fn pending_count(ctx: &mut Ctx<'_, '_>) -> Result<u32, ContractError> {
    Ok(ctx.get(keys::PENDING_COUNT)?.unwrap_or(0))
}

fn set_pending_count(ctx: &mut Ctx<'_, '_>, n: u32) -> Result<(), ContractError> {
    ctx.put(keys::PENDING_COUNT.to_vec(), &n)
}

fn program_pending(ctx: &mut Ctx<'_, '_>, program: &Slug) -> Result<u32, ContractError> {
    Ok(ctx.get(&keys::program_pending_count(program))?.unwrap_or(0))
}

/// Takes `n` tranches of `program` out of its pending count.
fn program_pending_done(
    ctx: &mut Ctx<'_, '_>,
    program: &Slug,
    n: u32,
) -> Result<(), ContractError> {
    let left = program_pending(ctx, program)?.saturating_sub(n);
    let k = keys::program_pending_count(program);
    if left == 0 {
        ctx.delete(k)
    } else {
        ctx.put(k, &left)
    }
}

fn index_of(plan: &Plan, i: usize) -> Result<u16, ContractError> {
    u16::try_from(i).map_err(|_| ContractError::Invariant {
        what: format!("tranche index {i} in plan {}", plan.id),
    })
}

/// Marks the plan's application completed or cancelled once no tranche is
/// pending any more.
fn settle_application_status(ctx: &mut Ctx<'_, '_>, plan: &Plan) -> Result<(), ContractError> {
    let Some(app_id) = &plan.application else {
        return Ok(());
    };
    if plan
        .tranches
        .iter()
        .any(|t| matches!(t.status, TrancheStatus::Pending { .. }))
    {
        return Ok(());
    }
    let app = applications::get(ctx, app_id)?;
    if app.status != ApplicationStatus::Funded {
        return Ok(());
    }
    let any_released = plan
        .tranches
        .iter()
        .any(|t| matches!(t.status, TrancheStatus::Released { .. }));
    let status = if any_released {
        ApplicationStatus::Completed
    } else {
        ApplicationStatus::Cancelled
    };
    applications::put_with_status(ctx, app, status)
}

fn create(
    ctx: &mut Ctx<'_, '_>,
    c: &crate::payload::CreatePlan,
    version: u32,
) -> Result<(), ContractError> {
    let mut program = programs::open(ctx, &c.program)?;
    access::require_for_program(ctx, TxKind::CreatePlan, &program, false)?;
    if ctx.exists(&keys::plan(&c.id))? {
        return Err(ContractError::exists("plan", &c.id));
    }
    if c.tranches.is_empty() || c.tranches.len() > MAX_TRANCHES {
        return Err(ContractError::invalid(
            "tranches",
            format!("1 to {MAX_TRANCHES} allowed, got {}", c.tranches.len()),
        ));
    }
    let ids: Vec<Slug> = c.tranches.iter().map(|t| t.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != ids.len() {
        return Err(ContractError::invalid(
            "tranches",
            "two tranches share an id",
        ));
    }
    let mut total = Amount::ZERO;
    for t in &c.tranches {
        if t.amount.is_zero() {
            return Err(ContractError::invalid(
                "tranche amount",
                format!("tranche {} is zero", t.id),
            ));
        }
        total = add(total, t.amount, "plan total")?;
        t.condition
            .validate(&ids, &t.id, c.application.is_some(), version)
            .map_err(|e| ContractError::Condition {
                reason: format!("tranche {}: {e}", t.id),
            })?;
        for o in t.condition.orgs() {
            gov::org(ctx, &o)?;
        }
        // Only policy organisations can vote, so naming any other in
        // `approvals(..)` would make the tranche wait forever.
        if let Some(o) = t
            .condition
            .approval_orgs()
            .into_iter()
            .find(|o| !program.policy.orgs.contains(o))
        {
            return Err(ContractError::Condition {
                reason: format!(
                    "tranche {}: {o} is not in program {}'s approval policy, so it cannot approve",
                    t.id, program.id
                ),
            });
        }
        if let Recipient::Org(o) = &t.recipient {
            gov::active_org(ctx, o)?;
        }
    }
    let params = gov::params(ctx)?;
    // A plan without an approved application waits for the program's
    // policy organisations (four eyes by default): one officer alone never
    // moves money.
    let approvals_needed = if c.application.is_some() {
        0
    } else {
        let needed = params.plan_approvals;
        let mut can_approve = 0u32;
        for o in &program.policy.orgs {
            if gov::org(ctx, o)?.status == Status::Active {
                can_approve += 1;
            }
        }
        if can_approve < needed {
            return Err(ContractError::NotPermitted {
                org: ctx.signer()?.org.clone(),
                action: "create a plan without an application",
                why: format!(
                    "it needs approvals from {needed} organisations of program {}'s approval policy, which has {can_approve} active",
                    program.id
                ),
            });
        }
        needed
    };
    let mut app = None;
    if let Some(app_id) = &c.application {
        let a = applications::get(ctx, app_id)?;
        if a.program != c.program {
            return Err(ContractError::invalid(
                "application",
                format!("{} belongs to program {}", a.id, a.program),
            ));
        }
        if a.status != ApplicationStatus::Approved {
            return Err(ContractError::WrongStatus {
                what: "application",
                id: a.id.to_string(),
                status: a.status.to_string(),
                expected: "approved",
            });
        }
        if total > a.requested {
            return Err(ContractError::invalid(
                "plan total",
                format!(
                    "{} is more than application {} requested ({})",
                    programs::money(&program, total),
                    a.id,
                    programs::money(&program, a.requested)
                ),
            ));
        }
        app = Some(a);
    }
    let max_pending = params.max_pending_tranches;
    let pending = pending_count(ctx)?;
    let after = pending.saturating_add(c.tranches.len() as u32);
    if after > max_pending {
        return Err(ContractError::Limit {
            what: "pending tranches",
            got: u64::from(after),
            limit: u64::from(max_pending),
        });
    }
    // One program cannot take the consortium-wide room from the others.
    let quota = params.max_pending_tranches_per_program;
    let mine = program_pending(ctx, &c.program)?.saturating_add(c.tranches.len() as u32);
    if mine > quota {
        return Err(ContractError::Limit {
            what: "pending tranches of one program",
            got: u64::from(mine),
            limit: u64::from(quota),
        });
    }
    ctx.put(keys::program_pending_count(&c.program), &mine)?;
    if program.balances.available < total {
        return Err(ContractError::InsufficientFunds {
            program: program.id.to_string(),
            needed: programs::money(&program, total),
            available: programs::money(&program, program.balances.available),
        });
    }
    program.balances.available = sub(program.balances.available, total, "available")?;
    program.balances.committed = add(program.balances.committed, total, "committed")?;
    let owner = program.owner.clone();
    let mut tranches = Vec::with_capacity(c.tranches.len());
    for (i, t) in c.tranches.iter().enumerate() {
        let to = match &t.recipient {
            Recipient::Org(o) => Party::Org(o.clone()),
            Recipient::Household(h) => Party::Household(*h),
        };
        let refs = MoneyRefs {
            plan: Some(c.id.clone()),
            tranche: Some(t.id.clone()),
            ..MoneyRefs::default()
        };
        programs::record_money(
            ctx,
            &mut program,
            MoneyFlow::Commitment,
            t.amount,
            Party::Org(owner.clone()),
            to,
            refs,
        )?;
        let idx = u16::try_from(i).map_err(|_| ContractError::Invariant {
            what: "tranche index".into(),
        })?;
        ctx.put(keys::pending(&c.id, idx), &())?;
        tranches.push(Tranche {
            id: t.id.clone(),
            amount: t.amount,
            recipient: t.recipient.clone(),
            condition: t.condition.clone(),
            status: TrancheStatus::Pending { held: false },
        });
    }
    set_pending_count(ctx, after)?;
    programs::put(ctx, &program)?;
    let plan = Plan {
        id: c.id.clone(),
        program: c.program.clone(),
        application: c.application.clone(),
        tranches,
        created_height: ctx.height,
        created_by: ctx.signer()?.key,
        approvals_needed,
        approvals: Vec::new(),
    };
    ctx.put(keys::plan(&plan.id), &plan)?;
    ctx.emit(EventBody::PlanCreated {
        plan: plan.id.clone(),
        program: plan.program.clone(),
        total,
        approvals_needed: plan.approvals_needed,
    });
    if let Some(mut a) = app {
        a.plan = Some(plan.id.clone());
        applications::put_with_status(ctx, a, ApplicationStatus::Funded)?;
    }
    Ok(())
}

/// An approval of a plan without an application, by an approver of one
/// of the program's policy organisations other than the plan's creator.
fn approve(ctx: &mut Ctx<'_, '_>, a: &crate::payload::ApprovePlan) -> Result<(), ContractError> {
    let signer = ctx.signer()?.clone();
    let mut plan = get(ctx, &a.plan)?;
    let program = programs::get(ctx, &plan.program)?;
    if plan.approvals_needed == 0 {
        return Err(ContractError::WrongStatus {
            what: "plan",
            id: plan.id.to_string(),
            status: "funded from an approved application".into(),
            expected: "awaiting approval",
        });
    }
    if plan.approved() {
        return Err(ContractError::WrongStatus {
            what: "plan",
            id: plan.id.to_string(),
            status: "approved".into(),
            expected: "awaiting approval",
        });
    }
    if !plan
        .tranches
        .iter()
        .any(|t| matches!(t.status, TrancheStatus::Pending { .. }))
    {
        return Err(ContractError::WrongStatus {
            what: "plan",
            id: plan.id.to_string(),
            status: "without a pending tranche".into(),
            expected: "awaiting approval",
        });
    }
    let recipient = plan
        .tranches
        .iter()
        .any(|t| t.recipient == Recipient::Org(signer.org.clone()));
    access::require_for_program(ctx, TxKind::ApprovePlan, &program, recipient)?;
    if gov::same_person(ctx, &plan.created_by, &signer.key)? {
        return Err(ContractError::NotPermitted {
            org: signer.org,
            action: "approve this plan",
            why: "its creator cannot approve it; a second person must (four eyes)".into(),
        });
    }
    if plan.approvals.iter().any(|v| v.org == signer.org) {
        return Err(ContractError::exists(
            "approval",
            format!("by {} of plan {}", signer.org, plan.id),
        ));
    }
    plan.approvals.push(PlanApproval {
        org: signer.org.clone(),
        by: signer.key,
        height: ctx.height,
    });
    ctx.emit(EventBody::PlanApproved {
        plan: plan.id.clone(),
        org: signer.org,
        approvals: plan.approvals.len() as u32,
        needed: plan.approvals_needed,
        approved: plan.approved(),
    });
    ctx.put(keys::plan(&plan.id), &plan)
}

fn cancel(ctx: &mut Ctx<'_, '_>, c: &crate::payload::CancelTranche) -> Result<(), ContractError> {
    let mut plan = get(ctx, &c.plan)?;
    let mut program = programs::get(ctx, &plan.program)?;
    access::require_for_program(ctx, TxKind::CancelTranche, &program, false)?;
    let i = plan
        .tranches
        .iter()
        .position(|t| t.id == c.tranche)
        .ok_or_else(|| ContractError::not_found("tranche", format!("{}/{}", c.plan, c.tranche)))?;
    if !matches!(plan.tranches[i].status, TrancheStatus::Pending { .. }) {
        return Err(ContractError::WrongStatus {
            what: "tranche",
            id: format!("{}/{}", c.plan, c.tranche),
            status: format!("{:?}", plan.tranches[i].status),
            expected: "pending",
        });
    }
    let amount = plan.tranches[i].amount;
    plan.tranches[i].status = TrancheStatus::Cancelled;
    program.balances.committed = sub(program.balances.committed, amount, "committed")?;
    program.balances.available = add(program.balances.available, amount, "available")?;
    let refs = MoneyRefs {
        plan: Some(plan.id.clone()),
        tranche: Some(c.tranche.clone()),
        ..MoneyRefs::default()
    };
    let from = match &plan.tranches[i].recipient {
        Recipient::Org(o) => Party::Org(o.clone()),
        Recipient::Household(h) => Party::Household(*h),
    };
    let to = Party::Program(program.id.clone());
    programs::record_money(
        ctx,
        &mut program,
        MoneyFlow::CommitmentCancelled,
        amount,
        from,
        to,
        refs,
    )?;
    programs::put(ctx, &program)?;
    let idx = index_of(&plan, i)?;
    ctx.delete(keys::pending(&plan.id, idx))?;
    let n = pending_count(ctx)?;
    set_pending_count(ctx, n.saturating_sub(1))?;
    program_pending_done(ctx, &plan.program, 1)?;
    ctx.put(keys::plan(&plan.id), &plan)?;
    settle_application_status(ctx, &plan)
}

/// Why a tranche whose condition holds cannot be paid yet, if it cannot.
fn hold_reason(
    ctx: &mut Ctx<'_, '_>,
    plan: &Plan,
    t: &Tranche,
) -> Result<Option<String>, ContractError> {
    if let Some(app) = &plan.application {
        let s = Subject::Application(app.clone());
        if anomalies::has_open(ctx, &s)? {
            return Ok(Some(format!("open anomaly on {s}")));
        }
    }
    match &t.recipient {
        Recipient::Household(h) => {
            let s = Subject::Household(*h);
            if anomalies::has_open(ctx, &s)? {
                return Ok(Some(format!("open anomaly on {s}")));
            }
            let program = programs::get(ctx, &plan.program)?;
            let why = households::ineligibility(ctx, h, &program.region_scope, None)?;
            if let Some(reason) = why {
                anomalies::raise(
                    ctx,
                    s,
                    AnomalyKind::IneligibleRecipient {
                        program: program.id,
                        reason: reason.clone(),
                    },
                )?;
                return Ok(Some(reason));
            }
        }
        Recipient::Org(o) => {
            if gov::org(ctx, o)?.status != Status::Active {
                return Ok(Some(format!("recipient organisation {o} is not active")));
            }
        }
    }
    Ok(None)
}

/// The earliest date after the block time named in a pending tranche of
/// an approved plan: the only thing that can change a condition's value
/// between transactions is the block time crossing one of its dates.
fn next_time(ctx: &mut Ctx<'_, '_>) -> Result<Option<(Timestamp, DueReason)>, ContractError> {
    let limit = (gov::params(ctx)?.max_pending_tranches).max(pending_count(ctx)?) as usize;
    let pending: Vec<(Vec<u8>, ())> = ctx.scan_t(keys::PENDING_PREFIX, None, limit.max(1))?;
    let mut earliest: Option<Timestamp> = None;
    let mut last_plan: Option<(Slug, Option<Plan>)> = None;
    for (key, ()) in pending {
        let (plan_id, idx) = parse_pending_key(&key)?;
        if last_plan.as_ref().map(|(id, _)| id) != Some(&plan_id) {
            let plan = get(ctx, &plan_id)?;
            last_plan = Some((plan_id, plan.approved().then_some(plan)));
        }
        let Some((_, Some(plan))) = &last_plan else {
            continue;
        };
        if let Some(t) = plan.tranches.get(idx as usize) {
            let mut dates = Vec::new();
            t.condition.dates(&mut dates);
            for d in dates.into_iter().filter(|d| *d > ctx.time) {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
            }
        }
    }
    Ok(earliest.map(|t| (t, DueReason::Tranche)))
}

fn parse_pending_key(key: &[u8]) -> Result<(Slug, u16), ContractError> {
    let rest = &key[keys::PENDING_PREFIX.len()..];
    let split = rest
        .len()
        .checked_sub(3)
        .ok_or_else(|| ContractError::Invariant {
            what: "malformed pending key".into(),
        })?;
    let name = std::str::from_utf8(&rest[..split]).map_err(|_| ContractError::Invariant {
        what: "pending key".into(),
    })?;
    let plan = Slug::new(name).map_err(|e| ContractError::Invariant {
        what: e.to_string(),
    })?;
    Ok((plan, u16::from_be_bytes([rest[split + 1], rest[split + 2]])))
}

fn end_block(ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
    // Governance may lower the limit below the current count; every
    // pending tranche is still evaluated, so none starves.
    let limit = (gov::params(ctx)?.max_pending_tranches).max(pending_count(ctx)?) as usize;
    let pending: Vec<(Vec<u8>, ())> = ctx.scan_t(keys::PENDING_PREFIX, None, limit.max(1))?;
    // Group the pending tranches by plan, in key order.
    let mut by_plan: BTreeMap<Slug, Vec<u16>> = BTreeMap::new();
    for (key, ()) in pending {
        let (plan, idx) = parse_pending_key(&key)?;
        by_plan.entry(plan).or_default().push(idx);
    }
    let mut released_count: u32 = 0;
    for (plan_id, idxs) in by_plan {
        let mut plan = get(ctx, &plan_id)?;
        if !plan.approved() {
            // Awaiting its approvals: its money stays committed, and no
            // condition is evaluated.
            continue;
        }
        let app = match &plan.application {
            Some(a) => Some(applications::get(ctx, a)?),
            None => None,
        };
        let mut changed = false;
        for idx in idxs {
            let i = idx as usize;
            let t = plan
                .tranches
                .get(i)
                .cloned()
                .ok_or_else(|| ContractError::Invariant {
                    what: format!("pending tranche {idx} missing from plan {plan_id}"),
                })?;
            let TrancheStatus::Pending { held } = t.status else {
                return Err(ContractError::Invariant {
                    what: format!("tranche {} of {plan_id} indexed as pending", t.id),
                });
            };
            // Tranches earlier in the plan released in this block are seen
            // by later ones (`released(..)`), since `plan` is updated in place.
            let env = EvalEnv {
                plan: &plan,
                application: app.as_ref(),
            };
            if !eval(&t.condition, ctx, &env)? {
                continue;
            }
            if let Some(reason) = hold_reason(ctx, &plan, &t)? {
                if !held {
                    plan.tranches[i].status = TrancheStatus::Pending { held: true };
                    changed = true;
                    ctx.emit(EventBody::TrancheHeld {
                        plan: plan.id.clone(),
                        tranche: t.id.clone(),
                        reason,
                    });
                }
                continue;
            }
            let mut program = programs::get(ctx, &plan.program)?;
            let release = settlements::create_release(
                ctx,
                &mut program,
                ReleaseSource::Tranche {
                    plan: plan.id.clone(),
                    tranche: t.id.clone(),
                },
                t.recipient.clone(),
                t.amount,
            )?;
            programs::put(ctx, &program)?;
            plan.tranches[i].status = TrancheStatus::Released { release };
            ctx.delete(keys::pending(&plan.id, idx))?;
            program_pending_done(ctx, &plan.program, 1)?;
            released_count += 1;
            changed = true;
        }
        if changed {
            ctx.put(keys::plan(&plan.id), &plan)?;
            settle_application_status(ctx, &plan)?;
        }
    }
    if released_count > 0 {
        let n = pending_count(ctx)?;
        set_pending_count(ctx, n.saturating_sub(released_count))?;
    }
    Ok(())
}

impl Module for Plans {
    fn name(&self) -> &'static str {
        "plans"
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[keys::PLAN_PREFIX, keys::PENDING_PREFIX, b"plan-meta/"]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[
            TxKind::CreatePlan,
            TxKind::ApprovePlan,
            TxKind::CancelTranche,
        ]
    }
    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        match payload {
            Payload::CreatePlan(c) => create(ctx, c, self.version),
            Payload::ApprovePlan(a) => approve(ctx, a),
            Payload::CancelTranche(c) => cancel(ctx, c),
            _ => Err(ContractError::Invariant {
                what: "plans got a foreign payload".into(),
            }),
        }
    }
    fn end_block(&self, ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
        end_block(ctx)
    }
    fn next_time(
        &self,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<(Timestamp, DueReason)>, ContractError> {
        next_time(ctx)
    }
}
