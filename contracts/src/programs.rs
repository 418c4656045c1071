//! Programs (funds): creation, deposits, closing, and the per-program money
//! ledger that every money movement is written to.
//!
//! Owns `prog/` and `ledger/`.

use aidledger_types::{Amount, OrgId, Slug, TxKind};

use crate::ctx::Ctx;
use crate::error::{add, sub};
use crate::events::{EventBody, MoneyEvent, MoneyFlow, Party};
use crate::keys;
use crate::model::{Balances, Program, ProgramStatus};
use crate::payload::Payload;
use crate::{access, gov, ContractError, Module};

/// Most funding organisations of one program.
pub const MAX_FUNDING_ORGS: usize = 32;
/// Most organisations in an approval policy.
pub const MAX_POLICY_ORGS: usize = 32;
/// Most fractional digits a currency may declare.
pub const MAX_DECIMALS: u8 = 8;

pub struct Programs;

/// References that tie a money movement to the objects behind it.
#[derive(Default, Clone)]
pub struct MoneyRefs {
    pub plan: Option<Slug>,
    pub tranche: Option<Slug>,
    pub entitlement: Option<Slug>,
    pub period: Option<u32>,
    pub release: Option<u64>,
}

/// An amount as people read it: in the program's decimals and currency,
/// e.g. `1250.00 CNY` (messages never show raw minor units).
pub fn money(p: &Program, a: Amount) -> String {
    format!("{} {}", a.to_decimal(u32::from(p.decimals)), p.currency)
}

pub fn get(ctx: &mut Ctx<'_, '_>, id: &Slug) -> Result<Program, ContractError> {
    ctx.get(&keys::program(id))?
        .ok_or_else(|| ContractError::not_found("program", id))
}

pub fn open(ctx: &mut Ctx<'_, '_>, id: &Slug) -> Result<Program, ContractError> {
    let p = get(ctx, id)?;
    if p.status != ProgramStatus::Open {
        return Err(ContractError::WrongStatus {
            what: "program",
            id: id.to_string(),
            status: "closed".into(),
            expected: "open",
        });
    }
    Ok(p)
}

/// Stores the program after checking conservation: a failure here is a
/// bug, so it aborts the block instead of becoming a rejection.
pub fn put(ctx: &mut Ctx<'_, '_>, p: &Program) -> Result<(), ContractError> {
    if !p.balances.conserved() {
        return Err(ContractError::Invariant {
            what: format!("program {} balances not conserved: {:?}", p.id, p.balances),
        });
    }
    ctx.put(keys::program(&p.id), p)
}

/// Appends a money movement to the program's ledger and emits it. The
/// caller has already changed the balances and stores the program after.
pub fn record_money(
    ctx: &mut Ctx<'_, '_>,
    p: &mut Program,
    flow: MoneyFlow,
    amount: Amount,
    from: Party,
    to: Party,
    refs: MoneyRefs,
) -> Result<(), ContractError> {
    let seq = p.ledger_seq;
    p.ledger_seq = seq.checked_add(1).ok_or(ContractError::Overflow {
        what: "ledger sequence",
    })?;
    let ev = MoneyEvent {
        program: p.id.clone(),
        seq,
        flow,
        amount,
        currency: p.currency,
        from,
        to,
        plan: refs.plan,
        tranche: refs.tranche,
        entitlement: refs.entitlement,
        period: refs.period,
        release: refs.release,
        height: ctx.height,
        time: ctx.time,
        tx: ctx.tx_id(),
    };
    ctx.put(keys::ledger(&p.id, seq), &ev)?;
    ctx.emit(EventBody::Money(ev));
    Ok(())
}

fn sorted_distinct(
    mut v: Vec<OrgId>,
    field: &'static str,
    max: usize,
) -> Result<Vec<OrgId>, ContractError> {
    let n = v.len();
    v.sort();
    v.dedup();
    if v.len() != n {
        return Err(ContractError::invalid(
            field,
            "an organisation is named twice",
        ));
    }
    if v.is_empty() || v.len() > max {
        return Err(ContractError::invalid(
            field,
            format!("1 to {max} organisations allowed, got {n}"),
        ));
    }
    Ok(v)
}

impl Module for Programs {
    fn name(&self) -> &'static str {
        "programs"
    }
    fn version(&self) -> u32 {
        1
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[keys::PROGRAM_PREFIX, keys::LEDGER_PREFIX]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::CreateProgram, TxKind::Deposit, TxKind::CloseProgram]
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        match payload {
            Payload::CreateProgram(c) => {
                access::require(ctx, TxKind::CreateProgram, &[])?;
                let owner = ctx.signer()?.org.clone();
                if ctx.exists(&keys::program(&c.id))? {
                    return Err(ContractError::exists("program", &c.id));
                }
                if c.decimals > MAX_DECIMALS {
                    return Err(ContractError::invalid(
                        "decimals",
                        format!("at most {MAX_DECIMALS}"),
                    ));
                }
                if c.budget_ceiling.is_zero() {
                    return Err(ContractError::invalid(
                        "budget ceiling",
                        "must be greater than zero",
                    ));
                }
                let funding =
                    sorted_distinct(c.funding_orgs.clone(), "funding orgs", MAX_FUNDING_ORGS)?;
                for o in &funding {
                    gov::active_org(ctx, o)?;
                }
                let mut policy = c.policy.clone();
                policy.orgs = sorted_distinct(policy.orgs, "approval policy", MAX_POLICY_ORGS)?;
                for o in &policy.orgs {
                    gov::active_org(ctx, o)?;
                }
                if policy.threshold == 0 || policy.threshold as usize > policy.orgs.len() {
                    return Err(ContractError::invalid(
                        "approval policy",
                        format!(
                            "threshold must be 1 to {}, got {}",
                            policy.orgs.len(),
                            policy.threshold
                        ),
                    ));
                }
                let p = Program {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    currency: c.currency,
                    decimals: c.decimals,
                    owner,
                    funding_orgs: funding,
                    budget_ceiling: c.budget_ceiling,
                    policy,
                    region_scope: c.region_scope.clone(),
                    status: ProgramStatus::Open,
                    balances: Balances::default(),
                    ledger_seq: 0,
                    created_height: ctx.height,
                };
                put(ctx, &p)?;
                ctx.emit(EventBody::ProgramCreated {
                    program: c.id.clone(),
                });
                Ok(())
            }
            Payload::Deposit(d) => {
                let mut p = open(ctx, &d.program)?;
                access::require_for_program(ctx, TxKind::Deposit, &p, false)?;
                let org = ctx.signer()?.org.clone();
                if d.amount.is_zero() {
                    return Err(ContractError::invalid(
                        "amount",
                        "must be greater than zero",
                    ));
                }
                let deposited = add(p.balances.deposited, d.amount, "deposited")?;
                if deposited > p.budget_ceiling {
                    return Err(ContractError::CeilingExceeded {
                        program: p.id.to_string(),
                        ceiling: money(&p, p.budget_ceiling),
                        deposited: money(&p, p.balances.deposited),
                        amount: money(&p, d.amount),
                    });
                }
                p.balances.deposited = deposited;
                p.balances.available = add(p.balances.available, d.amount, "available")?;
                let to = Party::Program(p.id.clone());
                record_money(
                    ctx,
                    &mut p,
                    MoneyFlow::IncomingFunds,
                    d.amount,
                    Party::Org(org),
                    to,
                    MoneyRefs::default(),
                )?;
                put(ctx, &p)
            }
            Payload::CloseProgram(c) => {
                let mut p = open(ctx, &c.program)?;
                access::require_for_program(ctx, TxKind::CloseProgram, &p, false)?;
                if !p.balances.committed.is_zero() {
                    return Err(ContractError::WrongStatus {
                        what: "program",
                        id: p.id.to_string(),
                        status: format!(
                            "holding {} committed to pending tranches",
                            p.balances.committed
                        ),
                        expected: "nothing committed (cancel or release the tranches first)",
                    });
                }
                let amount = p.balances.available;
                p.balances.available = Amount::ZERO;
                p.balances.returned = add(p.balances.returned, amount, "returned")?;
                p.status = ProgramStatus::Closed;
                if !amount.is_zero() {
                    // Funds go back to the program's first funding org in
                    // the ledger's view; the split between funders is an
                    // off-chain matter recorded by the banks.
                    let to = Party::Org(
                        p.funding_orgs
                            .first()
                            .cloned()
                            .unwrap_or_else(|| p.owner.clone()),
                    );
                    let from = Party::Program(p.id.clone());
                    record_money(
                        ctx,
                        &mut p,
                        MoneyFlow::FundsReturned,
                        amount,
                        from,
                        to,
                        MoneyRefs::default(),
                    )?;
                }
                put(ctx, &p)?;
                ctx.emit(EventBody::ProgramClosed {
                    program: p.id.clone(),
                });
                Ok(())
            }
            _ => Err(ContractError::Invariant {
                what: "programs got a foreign payload".into(),
            }),
        }
    }
}

/// Moves `amount` from available to released (an entitlement payment,
/// which commits and disburses at once) or from committed to released (a
/// tranche). The caller records the money movement and stores the program.
pub fn release_from(
    p: &mut Program,
    amount: Amount,
    from_committed: bool,
) -> Result<(), ContractError> {
    let b = &mut p.balances;
    if from_committed {
        b.committed = sub(b.committed, amount, "committed")?;
    } else {
        b.available = sub(b.available, amount, "available")?;
    }
    b.released = add(b.released, amount, "released")?;
    Ok(())
}
