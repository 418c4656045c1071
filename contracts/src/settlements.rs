//! Releases and settlements. A release is made by the contracts at the end
//! of a block (a tranche whose condition holds, or an entitlement payment);
//! the bank then confirms it executed the payment off-chain with a
//! settlement. A settlement whose amount differs from its release raises a
//! `settlement-mismatch` anomaly; a release still unsettled
//! `params.settlement_deadline_ms` after it was made raises a
//! `settlement-overdue` anomaly at the end of a block.
//!
//! Owns `release/`, `unsettled/`, `release-meta/`.

use aidledger_types::{Amount, Timestamp, TxKind};

use crate::ctx::Ctx;
use crate::error::add;
use crate::events::{EventBody, MoneyFlow, Party};
use crate::keys;
use crate::model::DueReason;
use crate::model::{
    AnomalyKind, Program, Recipient, Release, ReleaseSource, SettlementRecord, SettlementStatus,
    Subject,
};
use crate::payload::Payload;
use crate::programs::{self, MoneyRefs};
use crate::{access, anomalies, gov, ContractError, Module};

pub struct Settlements;

/// Most overdue checks per block; the rest wait for the next block.
const OVERDUE_BATCH: usize = 1_000;

fn party(r: &Recipient) -> Party {
    match r {
        Recipient::Org(o) => Party::Org(o.clone()),
        Recipient::Household(h) => Party::Household(*h),
    }
}

/// Makes a release: moves the money to `released`, writes the release
/// record and the disbursement to the program's ledger. The caller stores
/// the program.
pub fn create_release(
    ctx: &mut Ctx<'_, '_>,
    program: &mut Program,
    source: ReleaseSource,
    recipient: Recipient,
    amount: Amount,
) -> Result<u64, ContractError> {
    let from_committed = matches!(source, ReleaseSource::Tranche { .. });
    programs::release_from(program, amount, from_committed)?;
    let id = ctx.next_seq(keys::RELEASE_SEQ)?;
    let mut refs = MoneyRefs {
        release: Some(id),
        ..MoneyRefs::default()
    };
    match &source {
        ReleaseSource::Tranche { plan, tranche } => {
            refs.plan = Some(plan.clone());
            refs.tranche = Some(tranche.clone());
        }
        ReleaseSource::Entitlement {
            entitlement,
            period,
        } => {
            refs.entitlement = Some(entitlement.clone());
            refs.period = Some(*period);
        }
    }
    let to = party(&recipient);
    let from = Party::Program(program.id.clone());
    programs::record_money(
        ctx,
        program,
        MoneyFlow::Disbursement,
        amount,
        from,
        to,
        refs,
    )?;
    let r = Release {
        id,
        program: program.id.clone(),
        source,
        recipient,
        amount,
        height: ctx.height,
        time: ctx.time,
        settlement: None,
        overdue_flagged: false,
    };
    ctx.put(keys::release(id), &r)?;
    ctx.put(keys::unsettled(id), &())?;
    Ok(id)
}

impl Module for Settlements {
    fn name(&self) -> &'static str {
        "settlements"
    }
    fn version(&self) -> u32 {
        1
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[
            keys::RELEASE_PREFIX,
            keys::UNSETTLED_PREFIX,
            b"release-meta/",
        ]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::Settle]
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let Payload::Settle(s) = payload else {
            return Err(ContractError::Invariant {
                what: "settlements got a foreign payload".into(),
            });
        };
        let org = ctx.signer()?.org.clone();
        let mut r: Release = ctx
            .get(&keys::release(s.release))?
            .ok_or_else(|| ContractError::not_found("release", s.release))?;
        let mut p = programs::get(ctx, &r.program)?;
        let own = r.recipient == Recipient::Org(org.clone());
        access::require_for_program(ctx, TxKind::Settle, &p, own)?;
        if r.is_settled() {
            return Err(ContractError::WrongStatus {
                what: "release",
                id: r.id.to_string(),
                status: "settled".into(),
                expected: "unsettled or disputed",
            });
        }
        let status = if s.amount == r.amount {
            SettlementStatus::Confirmed
        } else {
            SettlementStatus::Disputed
        };
        r.settlement = Some(SettlementRecord {
            amount: s.amount,
            bank_ref: s.bank_ref,
            org: org.clone(),
            height: ctx.height,
            status,
        });
        ctx.emit(EventBody::Settled {
            release: r.id,
            amount: s.amount,
            status,
        });
        match status {
            SettlementStatus::Confirmed => {
                p.balances.settled = add(p.balances.settled, r.amount, "settled")?;
                let mut refs = MoneyRefs {
                    release: Some(r.id),
                    ..MoneyRefs::default()
                };
                match &r.source {
                    ReleaseSource::Tranche { plan, tranche } => {
                        refs.plan = Some(plan.clone());
                        refs.tranche = Some(tranche.clone());
                    }
                    ReleaseSource::Entitlement {
                        entitlement,
                        period,
                    } => {
                        refs.entitlement = Some(entitlement.clone());
                        refs.period = Some(*period);
                    }
                }
                let to = party(&r.recipient);
                programs::record_money(
                    ctx,
                    &mut p,
                    MoneyFlow::Expenditure,
                    r.amount,
                    Party::Org(org),
                    to,
                    refs,
                )?;
                programs::put(ctx, &p)?;
                ctx.delete(keys::unsettled(r.id))?;
            }
            SettlementStatus::Disputed => {
                anomalies::raise(
                    ctx,
                    Subject::Release(r.id),
                    AnomalyKind::SettlementMismatch {
                        release: r.id,
                        expected: r.amount,
                        got: s.amount,
                    },
                )?;
            }
        }
        ctx.put(keys::release(r.id), &r)
    }

    /// The oldest unsettled release becomes overdue one millisecond after
    /// its deadline (releases are numbered in block-time order).
    fn next_time(
        &self,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<(Timestamp, DueReason)>, ContractError> {
        let deadline_ms = gov::params(ctx)?.settlement_deadline_ms;
        let first: Vec<(Vec<u8>, ())> = ctx.scan_t(keys::UNSETTLED_PREFIX, None, 1)?;
        let Some((key, ())) = first.into_iter().next() else {
            return Ok(None);
        };
        let id_bytes: [u8; 8] = key[keys::UNSETTLED_PREFIX.len()..]
            .try_into()
            .map_err(|_| ContractError::Invariant {
                what: "malformed unsettled key".into(),
            })?;
        let id = u64::from_be_bytes(id_bytes);
        let r: Release = ctx
            .get(&keys::release(id))?
            .ok_or_else(|| ContractError::Invariant {
                what: format!("unsettled release {id} missing"),
            })?;
        let at = r.time.saturating_add_ms(deadline_ms.saturating_add(1));
        Ok(Some((at.max(ctx.time), DueReason::SettlementDeadline)))
    }

    fn end_block(&self, ctx: &mut Ctx<'_, '_>) -> Result<(), ContractError> {
        let deadline_ms = gov::params(ctx)?.settlement_deadline_ms;
        let due: Vec<(Vec<u8>, ())> = ctx.scan_t(keys::UNSETTLED_PREFIX, None, OVERDUE_BATCH)?;
        for (key, ()) in due {
            let id_bytes: [u8; 8] =
                key[keys::UNSETTLED_PREFIX.len()..]
                    .try_into()
                    .map_err(|_| ContractError::Invariant {
                        what: "malformed unsettled key".into(),
                    })?;
            let id = u64::from_be_bytes(id_bytes);
            let mut r: Release =
                ctx.get(&keys::release(id))?
                    .ok_or_else(|| ContractError::Invariant {
                        what: format!("unsettled release {id} missing"),
                    })?;
            // Releases are numbered in block order and block time never
            // goes back, so the first one not yet overdue ends the scan.
            if ctx.time.0.saturating_sub(r.time.0) <= deadline_ms {
                break;
            }
            r.overdue_flagged = true;
            ctx.put(keys::release(id), &r)?;
            ctx.delete(key)?;
            anomalies::raise(
                ctx,
                Subject::Release(id),
                AnomalyKind::SettlementOverdue {
                    release: id,
                    released_at: r.time,
                    deadline_ms,
                },
            )?;
        }
        Ok(())
    }
}
