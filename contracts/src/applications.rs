//! Applications (project requests): submitted by an implementing unit,
//! approved or rejected under the program's policy with one vote per
//! organisation, funded by a plan, then completed or cancelled.
//!
//! Statuses: submitted -> approved | rejected; approved -> funded (a plan
//! is created); funded -> completed (every tranche released or cancelled,
//! at least one released) | cancelled (every tranche cancelled).
//!
//! Owns `app/`.

use aidledger_types::{Slug, TxKind};

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::{Application, ApplicationStatus, Vote};
use crate::payload::Payload;
use crate::{access, gov, programs, ContractError, Module};

pub struct Applications;

pub fn get(ctx: &mut Ctx<'_, '_>, id: &Slug) -> Result<Application, ContractError> {
    ctx.get(&keys::application(id))?
        .ok_or_else(|| ContractError::not_found("application", id))
}

/// Stores the application, emitting a status event if the status changed.
pub fn put_with_status(
    ctx: &mut Ctx<'_, '_>,
    mut a: Application,
    status: ApplicationStatus,
) -> Result<(), ContractError> {
    if a.status != status {
        a.status = status;
        ctx.emit(EventBody::ApplicationStatusChanged {
            application: a.id.clone(),
            status,
        });
    }
    ctx.put(keys::application(&a.id), &a)
}

fn wrong_status(a: &Application, expected: &'static str) -> ContractError {
    ContractError::WrongStatus {
        what: "application",
        id: a.id.to_string(),
        status: a.status.to_string(),
        expected,
    }
}

impl Module for Applications {
    fn name(&self) -> &'static str {
        "applications"
    }
    fn version(&self) -> u32 {
        1
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[keys::APPLICATION_PREFIX]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[
            TxKind::SubmitApplication,
            TxKind::ApproveApplication,
            TxKind::RejectApplication,
        ]
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let signer = ctx.signer()?.clone();
        match payload {
            Payload::SubmitApplication(s) => {
                let p = programs::open(ctx, &s.program)?;
                // An organisation applies only for itself.
                access::require_for_program(
                    ctx,
                    TxKind::SubmitApplication,
                    &p,
                    s.applicant == signer.org,
                )?;
                gov::active_org(ctx, &s.applicant)?;
                if ctx.exists(&keys::application(&s.id))? {
                    return Err(ContractError::exists("application", &s.id));
                }
                if !p.region_scope.covers(&s.region) {
                    return Err(ContractError::invalid(
                        "region",
                        format!(
                            "{} is outside program {}'s scope {}",
                            s.region, p.id, p.region_scope
                        ),
                    ));
                }
                if s.requested.is_zero() || s.requested > p.budget_ceiling {
                    return Err(ContractError::invalid(
                        "requested amount",
                        format!(
                            "must be more than zero and at most the budget ceiling {}",
                            programs::money(&p, p.budget_ceiling)
                        ),
                    ));
                }
                let a = Application {
                    id: s.id.clone(),
                    program: s.program.clone(),
                    applicant: s.applicant.clone(),
                    region: s.region.clone(),
                    requested: s.requested,
                    purpose: s.purpose.clone(),
                    doc_hash: s.doc_hash,
                    status: ApplicationStatus::Submitted,
                    votes: Default::default(),
                    plan: None,
                    submitted_height: ctx.height,
                };
                ctx.put(keys::application(&a.id), &a)?;
                ctx.emit(EventBody::ApplicationSubmitted {
                    application: a.id,
                    program: a.program,
                });
                Ok(())
            }
            Payload::ApproveApplication(v) | Payload::RejectApplication(v) => {
                let approve = matches!(payload, Payload::ApproveApplication(_));
                let mut a = get(ctx, &v.application)?;
                let p = programs::get(ctx, &a.program)?;
                // The applicant never votes on its own application.
                access::require_for_program(ctx, payload.kind(), &p, a.applicant == signer.org)?;
                // Late approvals still count: a tranche may wait for more
                // approvals than the policy needed to approve the request.
                let open = if approve {
                    matches!(
                        a.status,
                        ApplicationStatus::Submitted
                            | ApplicationStatus::Approved
                            | ApplicationStatus::Funded
                    )
                } else {
                    a.status == ApplicationStatus::Submitted
                };
                if !open {
                    return Err(wrong_status(
                        &a,
                        if approve {
                            "submitted, approved or funded"
                        } else {
                            "submitted"
                        },
                    ));
                }
                if a.votes.contains_key(&signer.org) {
                    return Err(ContractError::AlreadyVotedApplication {
                        org: signer.org,
                        application: a.id.to_string(),
                    });
                }
                a.votes.insert(
                    signer.org.clone(),
                    Vote {
                        approve,
                        by: signer.key,
                        height: ctx.height,
                        note: v.note.clone(),
                    },
                );
                ctx.emit(EventBody::ApplicationVoted {
                    application: a.id.clone(),
                    org: signer.org,
                    approve,
                });
                let k = p.policy.threshold as usize;
                let n = p.policy.orgs.len();
                let approvals = a.approvals_among(&p.policy.orgs);
                let rejections = a.votes.values().filter(|v| !v.approve).count();
                let status = if a.status == ApplicationStatus::Submitted && approvals >= k {
                    ApplicationStatus::Approved
                } else if a.status == ApplicationStatus::Submitted && rejections > n - k {
                    // The threshold can no longer be reached.
                    ApplicationStatus::Rejected
                } else {
                    a.status
                };
                put_with_status(ctx, a, status)
            }
            _ => Err(ContractError::Invariant {
                what: "applications got a foreign payload".into(),
            }),
        }
    }
}
