//! Anomalies: raised by the cross-check rules of the other modules (never
//! by a transaction directly), resolved by an auditor or a program officer
//! with a note, of an organisation other than the one that would receive
//! the money the anomaly holds (a recipient never lifts its own hold), and
//! by two people where the amount held is large (see [`held`]).
//! While a subject has an open anomaly, releases and entitlement payments
//! to it are held.
//!
//! Owns `anomaly/`, `anomaly-open/`, `anomaly-meta/`.

use aidledger_types::authz::Relation;
use aidledger_types::{Amount, OrgId, TxKind};

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::{
    Anomaly, AnomalyKind, AnomalyReview, AnomalyStatus, Application, Recipient, Release, Subject,
};
use crate::payload::Payload;
use crate::{access, gov, ContractError, Module};

pub struct Anomalies;

/// What an anomaly about `subject` holds: the organisation that would
/// receive the money (the applicant of an application, the recipient
/// organisation of a release; none for a household, whose payments go to
/// the household) and the amount (an application's requested amount, a
/// release's amount; none for a household, whose every payment it holds).
fn held(
    ctx: &mut Ctx<'_, '_>,
    subject: &Subject,
) -> Result<(Option<OrgId>, Option<Amount>), ContractError> {
    Ok(match subject {
        Subject::Application(id) => match ctx.get::<Application>(&keys::application(id))? {
            Some(a) => (Some(a.applicant), Some(a.requested)),
            None => (None, None),
        },
        Subject::Release(id) => match ctx.get::<Release>(&keys::release(*id))? {
            Some(r) => {
                let org = match r.recipient {
                    Recipient::Org(o) => Some(o),
                    Recipient::Household(_) => None,
                };
                (org, Some(r.amount))
            }
            None => (None, None),
        },
        Subject::Household(_) => (None, None),
    })
}

/// Raises an anomaly and indexes it as open under its subject.
pub fn raise(
    ctx: &mut Ctx<'_, '_>,
    subject: Subject,
    kind: AnomalyKind,
) -> Result<u64, ContractError> {
    let id = ctx.next_seq(keys::ANOMALY_SEQ)?;
    let code = kind.code().to_string();
    let a = Anomaly {
        id,
        subject: subject.clone(),
        kind,
        raised_height: ctx.height,
        raised_time: ctx.time,
        status: AnomalyStatus::Open,
        first_review: None,
    };
    ctx.put(keys::anomaly(id), &a)?;
    ctx.put(keys::anomaly_open(&subject, id), &())?;
    ctx.emit(EventBody::AnomalyRaised {
        anomaly: id,
        subject,
        code,
    });
    Ok(id)
}

/// The open anomalies about `subject` (at most 64, oldest first).
pub fn open_of(ctx: &mut Ctx<'_, '_>, subject: &Subject) -> Result<Vec<Anomaly>, ContractError> {
    let prefix = keys::anomaly_open_prefix(subject);
    let mut out = Vec::new();
    for (k, _) in ctx.scan(&prefix, None, 64)? {
        let id_bytes: [u8; 8] = k
            .get(prefix.len()..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ContractError::Invariant {
                what: "malformed open-anomaly key".into(),
            })?;
        let id = u64::from_be_bytes(id_bytes);
        if let Some(a) = ctx.get::<Anomaly>(&keys::anomaly(id))? {
            out.push(a);
        }
    }
    Ok(out)
}

pub fn has_open(ctx: &mut Ctx<'_, '_>, subject: &Subject) -> Result<bool, ContractError> {
    Ok(!ctx
        .scan(&keys::anomaly_open_prefix(subject), None, 1)?
        .is_empty())
}

impl Module for Anomalies {
    fn name(&self) -> &'static str {
        "anomalies"
    }
    fn version(&self) -> u32 {
        2
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[
            keys::ANOMALY_PREFIX,
            keys::ANOMALY_OPEN_PREFIX,
            b"anomaly-meta/",
        ]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::ResolveAnomaly]
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let Payload::ResolveAnomaly(r) = payload else {
            return Err(ContractError::Invariant {
                what: "anomalies got a foreign payload".into(),
            });
        };
        let signer = ctx.signer()?.clone();
        let mut a: Anomaly = ctx
            .get(&keys::anomaly(r.anomaly))?
            .ok_or_else(|| ContractError::not_found("anomaly", r.anomaly))?;
        if a.status != AnomalyStatus::Open {
            return Err(ContractError::WrongStatus {
                what: "anomaly",
                id: r.anomaly.to_string(),
                status: "resolved".into(),
                expected: "open",
            });
        }
        let (beneficiary, amount) = held(ctx, &a.subject)?;
        // A recipient never lifts its own hold.
        let rels: &[Relation] = if beneficiary.as_ref() == Some(&signer.org) {
            &[Relation::Beneficiary]
        } else {
            &[]
        };
        access::require(ctx, TxKind::ResolveAnomaly, rels)?;
        if r.note.as_str().trim().is_empty() {
            return Err(ContractError::invalid("note", "a resolution needs a note"));
        }
        // Two people where the amount held is large; a household anomaly
        // holds every payment to the household and always takes two.
        let from = gov::params(ctx)?.anomaly_second_review_from;
        if amount.is_none_or(|x| x.0 >= from) {
            match &a.first_review {
                None => {
                    // The first of two people: recorded, still open.
                    a.first_review = Some(AnomalyReview {
                        by: signer.key,
                        org: signer.org.clone(),
                        note: r.note.clone(),
                        height: ctx.height,
                    });
                    ctx.put(keys::anomaly(a.id), &a)?;
                    ctx.emit(EventBody::AnomalyReviewed {
                        anomaly: a.id,
                        org: signer.org,
                    });
                    return Ok(());
                }
                Some(first) if gov::same_person(ctx, &first.by, &signer.key)? => {
                    return Err(ContractError::NotPermitted {
                        org: signer.org,
                        action: "resolve this anomaly",
                        why: format!(
                            "it holds a large amount and this account already reviewed it at height {}; a second person must confirm",
                            first.height
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        a.status = AnomalyStatus::Resolved {
            by: signer.key,
            org: signer.org.clone(),
            note: r.note.clone(),
            height: ctx.height,
        };
        ctx.delete(keys::anomaly_open(&a.subject, a.id))?;
        ctx.put(keys::anomaly(a.id), &a)?;
        ctx.emit(EventBody::AnomalyResolved {
            anomaly: a.id,
            org: signer.org,
        });
        Ok(())
    }
}
