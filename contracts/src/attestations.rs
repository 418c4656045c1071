//! Attestations: a department states a coded value or a hash for a claim
//! about a subject. Each organisation attests a (subject, claim) once; a
//! second organisation stating a different value raises a
//! `conflicting-attestation` anomaly against the subject automatically.
//!
//! Owns `att/`.

use aidledger_types::TxKind;

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::{AnomalyKind, AttestValue, Attestation, Subject};
use crate::payload::Payload;
use crate::{access, anomalies, gov, ContractError, Module};

pub struct Attestations;

/// Most attestations compared for one (subject, claim): one per
/// organisation, and the consortium is far smaller than this.
const MAX_ATTESTERS: usize = 256;

pub fn subject_exists(ctx: &mut Ctx<'_, '_>, s: &Subject) -> Result<bool, ContractError> {
    match s {
        Subject::Household(h) => ctx.exists(&keys::household(h)),
        Subject::Application(a) => ctx.exists(&keys::application(a)),
        Subject::Release(r) => ctx.exists(&keys::release(*r)),
    }
}

/// Evaluates the governance-set cross-department checks that test this
/// attestation's claim and organisation, for its subject, against every
/// attestation on record; raises a `cross-check` anomaly for each that now
/// holds entirely, unless one for the same check is already open on the
/// subject. Bounded: at most 32 checks of at most 4 tests, one read each.
fn cross_check(ctx: &mut Ctx<'_, '_>, att: &Attestation) -> Result<(), ContractError> {
    for check in gov::cross_checks(ctx)? {
        if !check
            .when
            .iter()
            .any(|t| t.claim == att.claim && t.by == att.org)
        {
            continue;
        }
        let mut holds = true;
        for t in &check.when {
            let on_record: Option<Attestation> =
                ctx.get(&keys::attestation(&att.subject, &t.claim, &t.by))?;
            if !matches!(on_record, Some(Attestation { value: AttestValue::Code(v), .. }) if v == t.value)
            {
                holds = false;
                break;
            }
        }
        if !holds {
            continue;
        }
        let already = anomalies::open_of(ctx, &att.subject)?
            .into_iter()
            .any(|a| matches!(&a.kind, AnomalyKind::CrossCheck { rule, .. } if *rule == check.id));
        if !already {
            anomalies::raise(
                ctx,
                att.subject.clone(),
                AnomalyKind::CrossCheck {
                    rule: check.id.clone(),
                    description: check.description.clone(),
                },
            )?;
        }
    }
    Ok(())
}

impl Module for Attestations {
    fn name(&self) -> &'static str {
        "attestations"
    }
    fn version(&self) -> u32 {
        2
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[keys::ATTESTATION_PREFIX]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::Attest]
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let Payload::Attest(a) = payload else {
            return Err(ContractError::Invariant {
                what: "attestations got a foreign payload".into(),
            });
        };
        let signer = ctx.signer()?.clone();
        access::require(ctx, TxKind::Attest, &[])?;
        if !subject_exists(ctx, &a.subject)? {
            return Err(ContractError::not_found("subject", &a.subject));
        }
        let key = keys::attestation(&a.subject, &a.claim, &signer.org);
        if ctx.exists(&key)? {
            return Err(ContractError::AlreadyExists {
                what: "attestation",
                id: format!("{} {} by {}", a.subject, a.claim, signer.org),
            });
        }
        let others: Vec<(Vec<u8>, Attestation)> = ctx.scan_t(
            &keys::attestation_prefix(&a.subject, &a.claim),
            None,
            MAX_ATTESTERS,
        )?;
        let att = Attestation {
            subject: a.subject.clone(),
            claim: a.claim.clone(),
            org: signer.org.clone(),
            value: a.value.clone(),
            by: signer.key,
            height: ctx.height,
        };
        ctx.put(key, &att)?;
        ctx.emit(EventBody::Attested {
            subject: a.subject.clone(),
            claim: a.claim.clone(),
            org: signer.org.clone(),
        });
        cross_check(ctx, &att)?;
        if let Some((_, first)) = others.into_iter().find(|(_, o)| o.value != a.value) {
            anomalies::raise(
                ctx,
                a.subject.clone(),
                AnomalyKind::ConflictingAttestation {
                    claim: a.claim.clone(),
                    first_org: first.org,
                    first: first.value,
                    second_org: signer.org,
                    second: a.value.clone(),
                },
            )?;
        }
        Ok(())
    }
}
