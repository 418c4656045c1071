//! The authorisation table (`aidledger_types::authz`) applied in execution:
//! each module works out how the signer's organisation stands to the
//! subject and asks the table. Roles are checked before the module runs
//! (`check_envelope`), from the same table.

use aidledger_types::authz::{refusal, Relation};
use aidledger_types::{OrgId, TxKind};

use crate::ctx::Ctx;
use crate::model::Program;
use crate::ContractError;

/// The relations `org` holds to program `p`: owner, funder, policy.
pub fn program_relations(org: &OrgId, p: &Program) -> Vec<Relation> {
    let mut v = Vec::new();
    if &p.owner == org {
        v.push(Relation::Owner);
    }
    if p.funding_orgs.contains(org) {
        v.push(Relation::Funder);
    }
    if p.policy.orgs.contains(org) {
        v.push(Relation::Policy);
    }
    v
}

/// Refuses with `not-permitted` unless the table allows `kind` to an
/// organisation holding `relations` to the subject (none: `other`).
pub fn require(
    ctx: &Ctx<'_, '_>,
    kind: TxKind,
    relations: &[Relation],
) -> Result<(), ContractError> {
    match refusal(kind, relations) {
        None => Ok(()),
        Some(why) => Err(ContractError::NotPermitted {
            org: ctx.signer()?.org.clone(),
            action: kind.as_str(),
            why,
        }),
    }
}

/// [`require`] for a subject that is program `p`, with `beneficiary` added
/// when the signer's organisation would receive the money.
pub fn require_for_program(
    ctx: &Ctx<'_, '_>,
    kind: TxKind,
    p: &Program,
    beneficiary: bool,
) -> Result<(), ContractError> {
    let org = ctx.signer()?.org.clone();
    let mut rels = program_relations(&org, p);
    if beneficiary {
        rels.push(Relation::Beneficiary);
    }
    require(ctx, kind, &rels)
}
