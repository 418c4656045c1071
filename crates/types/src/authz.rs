//! Who may sign what: one table of transaction kind × role × the signer's
//! organisation's relation to the subject. Admission checks the roles,
//! block execution checks roles and relations, the CLI's help and
//! `docs/contracts.md` print the same table; nothing else decides.
//!
//! A signer's organisation may stand in several relations to a subject at
//! once (a program's owner may also sit in its approval policy). A kind is
//! permitted when the organisation holds at least one of the kind's
//! `allowed` relations and none of its `refused` ones. Person-level rules
//! (a plan's creator never approves it; a second reviewer differs from the
//! first) are stated in `also` and checked by the module.

use std::fmt::Write as _;

use crate::{Role, TxKind};

/// How the signer's organisation stands to the subject of a transaction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Relation {
    /// Manages the program (created it): plans, entitlements, closing.
    Owner,
    /// One of the program's funding organisations: deposits, settlements.
    Funder,
    /// In the program's approval policy: approves applications and plans.
    Policy,
    /// Would receive the money, or is the subject: the applicant of an
    /// application, a recipient organisation of a plan or release, the
    /// organisation that registered a household.
    Beneficiary,
    /// None of the above.
    Other,
}

impl Relation {
    pub const ALL: [Relation; 5] = [
        Relation::Owner,
        Relation::Funder,
        Relation::Policy,
        Relation::Beneficiary,
        Relation::Other,
    ];

    /// How a message names an organisation in this relation.
    pub fn phrase(self) -> &'static str {
        match self {
            Relation::Owner => "the owner",
            Relation::Funder => "a funding organisation",
            Relation::Policy => "in the approval policy",
            Relation::Beneficiary => "the beneficiary",
            Relation::Other => "unrelated",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Owner => "owner",
            Relation::Funder => "funder",
            Relation::Policy => "policy",
            Relation::Beneficiary => "beneficiary",
            Relation::Other => "other",
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Rule {
    pub kind: TxKind,
    /// Roles of which the signing account must hold one.
    pub roles: &'static [Role],
    /// What the subject is, in words.
    pub subject: &'static str,
    /// Relations of which the signer's organisation must hold one.
    pub allowed: &'static [Relation],
    /// Relations the signer's organisation must not hold.
    pub refused: &'static [Relation],
    /// Rules the table cannot express, checked by the module.
    pub also: &'static str,
}

use Relation::*;
use Role::*;

const ANY: &[Relation] = &Relation::ALL;

/// The table, one row per kind, in `TxKind::ALL` order.
pub static TABLE: [Rule; 17] = [
    Rule {
        kind: TxKind::GovPropose,
        roles: &[Admin],
        subject: "the consortium",
        allowed: ANY,
        refused: &[],
        also: "the proposer's organisation is the first approval",
    },
    Rule {
        kind: TxKind::GovApprove,
        roles: &[Admin],
        subject: "a proposal",
        allowed: ANY,
        refused: &[],
        also: "one approval per organisation",
    },
    Rule {
        kind: TxKind::CreateProgram,
        roles: &[ProgramOfficer],
        subject: "the new program",
        allowed: ANY,
        refused: &[],
        also: "the signer's organisation becomes the owner",
    },
    Rule {
        kind: TxKind::Deposit,
        roles: &[Disburser],
        subject: "the program",
        allowed: &[Funder],
        refused: &[],
        also: "",
    },
    Rule {
        kind: TxKind::SubmitApplication,
        roles: &[ProgramOfficer, Registrar],
        subject: "the application",
        allowed: &[Beneficiary],
        refused: &[],
        also: "an organisation applies only for itself",
    },
    Rule {
        kind: TxKind::ApproveApplication,
        roles: &[Approver],
        subject: "the application",
        allowed: &[Policy],
        refused: &[Beneficiary],
        also: "",
    },
    Rule {
        kind: TxKind::RejectApplication,
        roles: &[Approver],
        subject: "the application",
        allowed: &[Policy],
        refused: &[Beneficiary],
        also: "",
    },
    Rule {
        kind: TxKind::CreatePlan,
        roles: &[ProgramOfficer],
        subject: "the program",
        allowed: &[Owner],
        refused: &[],
        also: "without an application the plan awaits approve-plan",
    },
    Rule {
        kind: TxKind::Attest,
        roles: &[Attester],
        subject: "a household or application",
        allowed: ANY,
        refused: &[],
        also: "one attestation per claim and organisation",
    },
    Rule {
        kind: TxKind::RegisterHousehold,
        roles: &[Registrar],
        subject: "the household",
        allowed: ANY,
        refused: &[],
        also: "a second registration raises duplicate-household",
    },
    Rule {
        kind: TxKind::UpdateHousehold,
        roles: &[Registrar],
        subject: "the household",
        allowed: &[Beneficiary],
        refused: &[],
        also: "only the organisation that registered it",
    },
    Rule {
        kind: TxKind::SetEntitlement,
        roles: &[ProgramOfficer],
        subject: "the program",
        allowed: &[Owner],
        refused: &[],
        also: "",
    },
    Rule {
        kind: TxKind::Settle,
        roles: &[Disburser],
        subject: "the release's program",
        allowed: &[Funder],
        refused: &[Beneficiary],
        also: "",
    },
    Rule {
        kind: TxKind::CancelTranche,
        roles: &[ProgramOfficer],
        subject: "the plan's program",
        allowed: &[Owner],
        refused: &[],
        also: "",
    },
    Rule {
        kind: TxKind::ResolveAnomaly,
        roles: &[Auditor, ProgramOfficer],
        subject: "the money the anomaly holds",
        allowed: &[Owner, Funder, Policy, Other],
        refused: &[Beneficiary],
        also: "large amounts and households: two people",
    },
    Rule {
        kind: TxKind::CloseProgram,
        roles: &[ProgramOfficer],
        subject: "the program",
        allowed: &[Owner],
        refused: &[],
        also: "",
    },
    Rule {
        kind: TxKind::ApprovePlan,
        roles: &[Approver],
        subject: "the plan",
        allowed: &[Policy],
        refused: &[Beneficiary],
        also: "never the plan's creator",
    },
];

/// The row of `kind`.
pub fn rule(kind: TxKind) -> &'static Rule {
    // TABLE is in TxKind::ALL order; a test holds it so.
    let i = TxKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    &TABLE[i]
}

/// Why an organisation with `relations` to the subject may not sign
/// `kind`, or `None` if it may. An empty `relations` counts as `other`.
pub fn refusal(kind: TxKind, relations: &[Relation]) -> Option<String> {
    let r = rule(kind);
    let held: Vec<Relation> = if relations.is_empty() {
        vec![Other]
    } else {
        relations.to_vec()
    };
    if let Some(bad) = held.iter().find(|x| r.refused.contains(x)) {
        return Some(format!(
            "it is {} ({}), who may never {kind}",
            bad.phrase(),
            r.subject,
        ));
    }
    if !held.iter().any(|x| r.allowed.contains(x)) {
        let phrases =
            |v: &[Relation], sep: &str| v.iter().map(|x| x.phrase()).collect::<Vec<_>>().join(sep);
        return Some(format!(
            "it must be {} ({}); it is {}",
            phrases(r.allowed, " or "),
            r.subject,
            phrases(&held, " and ")
        ));
    }
    None
}

fn names(rels: &[Relation], sep: &str) -> String {
    rels.iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(sep)
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn relations_text(r: &Rule) -> String {
    if r.allowed.len() + r.refused.len() == Relation::ALL.len() {
        "any".to_string()
    } else {
        names(r.allowed, ", ")
    }
}

/// One line for the CLI's help of `kind`.
pub fn help_line(kind: TxKind) -> String {
    let r = rule(kind);
    let mut s = format!(
        "Who may sign: role {}; organisation: {} of {}",
        roles_text(r.roles),
        relations_text(r),
        r.subject
    );
    if !r.refused.is_empty() {
        let _ = write!(s, ", never the {}", names(r.refused, " or "));
    }
    if !r.also.is_empty() {
        let _ = write!(s, "; {}", r.also);
    }
    s.push('.');
    s
}

/// The whole table as text, for `aidledger tx --help`.
pub fn help_table() -> String {
    let mut s =
        String::from("Who may sign what (kind: roles; organisation's relation to the subject):\n");
    for r in &TABLE {
        let _ = write!(
            s,
            "  {:<20} {}; {}",
            r.kind.as_str(),
            roles_text(r.roles),
            relations_text(r)
        );
        if !r.refused.is_empty() {
            let _ = write!(s, ", not {}", names(r.refused, "/"));
        }
        s.push('\n');
    }
    s
}

/// The whole table in Markdown, as `docs/contracts.md` holds it.
pub fn markdown() -> String {
    let mut s = String::from(
        "| kind | roles | subject | organisation must be | never | also |\n|---|---|---|---|---|---|\n",
    );
    for r in &TABLE {
        let never = if r.refused.is_empty() {
            "".to_string()
        } else {
            names(r.refused, ", ")
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            r.kind.as_str(),
            roles_text(r.roles),
            r.subject,
            relations_text(r),
            never,
            r.also
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_kind_in_order() {
        assert_eq!(TABLE.len(), TxKind::ALL.len());
        for (r, k) in TABLE.iter().zip(TxKind::ALL) {
            assert_eq!(r.kind, k);
            assert!(!r.roles.is_empty() && !r.allowed.is_empty());
            assert!(
                r.allowed.iter().all(|a| !r.refused.contains(a)),
                "{k}: a relation both allowed and refused"
            );
        }
    }

    #[test]
    fn refusals_follow_the_table() {
        assert!(refusal(TxKind::Deposit, &[Funder]).is_none());
        assert!(refusal(TxKind::Deposit, &[Owner]).is_some());
        assert!(refusal(TxKind::Deposit, &[]).is_some());
        assert!(refusal(TxKind::ApprovePlan, &[Policy]).is_none());
        let why = refusal(TxKind::ApprovePlan, &[Policy, Beneficiary]).unwrap();
        assert!(why.contains("beneficiary"), "{why}");
        assert!(refusal(TxKind::GovPropose, &[]).is_none());
    }
}
