//! Release conditions: a small, bounded expression tree.
//!
//! In the canonical (binary) encoding a condition is a flat postfix list of
//! nodes, so decoding never recurses and a hostile payload cannot overflow
//! the stack; the tree is rebuilt with an explicit stack that enforces
//! [`MAX_NODES`] and [`MAX_DEPTH`]. Every `Condition` in memory therefore
//! respects the bounds. In human-readable encodings (JSON) a condition is
//! its text form (see `condition_text` and docs/contracts.md).

use aidledger_types::{OrgId, Slug, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::model::{Application, AttestValue, Attestation, Plan, Subject, TrancheStatus};
use crate::ContractError;

/// Most nodes in one condition.
pub const MAX_NODES: usize = 64;
/// Deepest nesting: a leaf alone has depth 1.
pub const MAX_DEPTH: usize = 8;
/// Most children of one `all` or `any`.
pub const MAX_CHILDREN: usize = 16;
/// Most organisations named in one `approvals`.
pub const MAX_APPROVAL_ORGS: usize = 16;

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    /// Holds from this instant on (block time >= t).
    After(Timestamp),
    /// Holds strictly before this instant (block time < t).
    Before(Timestamp),
    /// At least `k` of the named organisations approved the plan's
    /// application.
    Approvals {
        k: u32,
        of: Vec<OrgId>,
    },
    /// The organisation attested the claim about the subject (any value).
    Attested {
        claim: Slug,
        by: OrgId,
        subject: Subject,
    },
    /// The named tranche of the same plan has been released.
    Released(Slug),
    /// The named tranche of the same plan has a confirmed settlement.
    Settled(Slug),
    /// The subject has no open anomaly.
    NoOpenAnomaly(Subject),
    /// The organisation attested the claim about the subject with exactly
    /// this value (`plans@4`).
    AttestedValue {
        claim: Slug,
        by: OrgId,
        subject: Subject,
        value: AttestValue,
    },
}

/// The first `plans` version whose conditions may use `attested_value`.
pub const ATTESTED_VALUE_SINCE: u32 = 4;

impl Condition {
    /// Every date the condition names (`after`, `before`), in any order.
    pub fn dates(&self, out: &mut Vec<Timestamp>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.dates(out)),
            Condition::Not(c) => c.dates(out),
            Condition::After(t) | Condition::Before(t) => out.push(*t),
            Condition::Approvals { .. }
            | Condition::Attested { .. }
            | Condition::AttestedValue { .. }
            | Condition::Released(_)
            | Condition::Settled(_)
            | Condition::NoOpenAnomaly(_) => {}
        }
    }
}

/// One node of the postfix encoding. `All(n)`/`Any(n)` take the previous
/// `n` built conditions as children; `Not` takes one.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
enum Node {
    All(u16),
    Any(u16),
    Not,
    After(Timestamp),
    Before(Timestamp),
    Approvals {
        k: u32,
        of: Vec<OrgId>,
    },
    Attested {
        claim: Slug,
        by: OrgId,
        subject: Subject,
    },
    Released(Slug),
    Settled(Slug),
    NoOpenAnomaly(Subject),
    AttestedValue {
        claim: Slug,
        by: OrgId,
        subject: Subject,
        value: AttestValue,
    },
}

fn cond_err(reason: impl Into<String>) -> ContractError {
    ContractError::Condition {
        reason: reason.into(),
    }
}

impl Condition {
    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        match self {
            Condition::All(cs) | Condition::Any(cs) => {
                1 + cs.iter().map(Condition::node_count).sum::<usize>()
            }
            Condition::Not(c) => 1 + c.node_count(),
            _ => 1,
        }
    }

    /// Nesting depth; a leaf has depth 1.
    pub fn depth(&self) -> usize {
        match self {
            Condition::All(cs) | Condition::Any(cs) => {
                1 + cs.iter().map(Condition::depth).max().unwrap_or(0)
            }
            Condition::Not(c) => 1 + c.depth(),
            _ => 1,
        }
    }

    /// Every organisation the condition names.
    pub fn orgs(&self) -> Vec<OrgId> {
        let mut out = Vec::new();
        self.visit(&mut |c| match c {
            Condition::Approvals { of, .. } => out.extend(of.iter().cloned()),
            Condition::Attested { by, .. } | Condition::AttestedValue { by, .. } => {
                out.push(by.clone())
            }
            _ => {}
        });
        out.sort();
        out.dedup();
        out
    }

    /// Every organisation named in an `approvals(..)`.
    pub fn approval_orgs(&self) -> Vec<OrgId> {
        let mut out = Vec::new();
        self.visit(&mut |c| {
            if let Condition::Approvals { of, .. } = c {
                out.extend(of.iter().cloned());
            }
        });
        out.sort();
        out.dedup();
        out
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Condition)) {
        f(self);
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.visit(f)),
            Condition::Not(c) => c.visit(f),
            _ => {}
        }
    }

    /// Checks the structural bounds and the shape of every node. Called
    /// when a condition enters state (plan creation), after decoding.
    ///
    /// `tranches` are the ids in the same plan, `this` the tranche that
    /// carries the condition, `has_application` whether the plan funds an
    /// application (needed by `approvals`), `plans_version` the version
    /// of the plans module in force (it decides which functions exist).
    pub fn validate(
        &self,
        tranches: &[Slug],
        this: &Slug,
        has_application: bool,
        plans_version: u32,
    ) -> Result<(), ContractError> {
        let n = self.node_count();
        if n > MAX_NODES {
            return Err(cond_err(format!("{n} nodes, the limit is {MAX_NODES}")));
        }
        let d = self.depth();
        if d > MAX_DEPTH {
            return Err(cond_err(format!("depth {d}, the limit is {MAX_DEPTH}")));
        }
        // Every condition in state has a text form that parses back: the
        // CLI and the API show it, and an operator may copy it.
        let text = crate::condition_text::print(self).len();
        if text > crate::condition_text::MAX_TEXT_LEN {
            return Err(cond_err(format!(
                "{text} bytes as text, the limit is {}",
                crate::condition_text::MAX_TEXT_LEN
            )));
        }
        let mut err: Option<ContractError> = None;
        self.visit(&mut |c| {
            if err.is_some() {
                return;
            }
            err = match c {
                Condition::All(cs) | Condition::Any(cs) if cs.is_empty() => {
                    Some(cond_err("all/any need at least one condition"))
                }
                Condition::All(cs) | Condition::Any(cs) if cs.len() > MAX_CHILDREN => {
                    Some(cond_err(format!(
                        "all/any have {} conditions, the limit is {MAX_CHILDREN}",
                        cs.len()
                    )))
                }
                Condition::Approvals { k, of } => {
                    let mut sorted = of.clone();
                    sorted.sort();
                    sorted.dedup();
                    if !has_application {
                        Some(cond_err(
                            "approvals(..) needs a plan that funds an application",
                        ))
                    } else if of.is_empty() || of.len() > MAX_APPROVAL_ORGS {
                        Some(cond_err(format!(
                            "approvals names {} organisations; 1 to {MAX_APPROVAL_ORGS} allowed",
                            of.len()
                        )))
                    } else if sorted.len() != of.len() {
                        Some(cond_err("approvals names an organisation twice"))
                    } else if *k == 0 || *k as usize > of.len() {
                        Some(cond_err(format!(
                            "approvals({k}, ..) must need 1 to {} approvals",
                            of.len()
                        )))
                    } else {
                        None
                    }
                }
                Condition::AttestedValue { .. } if plans_version < ATTESTED_VALUE_SINCE => {
                    Some(cond_err(format!(
                        "attested_value(..) needs plans@{ATTESTED_VALUE_SINCE}; this chain runs \
                         plans@{plans_version} (governance can schedule the upgrade: \
                         gov-propose schedule-upgrade)"
                    )))
                }
                Condition::Released(t) | Condition::Settled(t) => {
                    if t == this {
                        Some(cond_err(format!("tranche {t} refers to itself")))
                    } else if !tranches.contains(t) {
                        Some(cond_err(format!("no tranche {t} in this plan")))
                    } else {
                        None
                    }
                }
                _ => None,
            };
        });
        err.map_or(Ok(()), Err)
    }

    fn to_postfix(&self, out: &mut Vec<Node>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => {
                for c in cs {
                    c.to_postfix(out);
                }
                // Bounded by MAX_CHILDREN on every constructed condition;
                // saturate rather than wrap for hand-built oversized ones,
                // which then fail to decode instead of decoding differently.
                let n = u16::try_from(cs.len()).unwrap_or(u16::MAX);
                out.push(if matches!(self, Condition::All(_)) {
                    Node::All(n)
                } else {
                    Node::Any(n)
                });
            }
            Condition::Not(c) => {
                c.to_postfix(out);
                out.push(Node::Not);
            }
            Condition::After(t) => out.push(Node::After(*t)),
            Condition::Before(t) => out.push(Node::Before(*t)),
            Condition::Approvals { k, of } => out.push(Node::Approvals {
                k: *k,
                of: of.clone(),
            }),
            Condition::Attested { claim, by, subject } => out.push(Node::Attested {
                claim: claim.clone(),
                by: by.clone(),
                subject: subject.clone(),
            }),
            Condition::Released(t) => out.push(Node::Released(t.clone())),
            Condition::Settled(t) => out.push(Node::Settled(t.clone())),
            Condition::NoOpenAnomaly(s) => out.push(Node::NoOpenAnomaly(s.clone())),
            Condition::AttestedValue {
                claim,
                by,
                subject,
                value,
            } => out.push(Node::AttestedValue {
                claim: claim.clone(),
                by: by.clone(),
                subject: subject.clone(),
                value: value.clone(),
            }),
        }
    }

    fn from_postfix(nodes: Vec<Node>) -> Result<Condition, String> {
        if nodes.len() > MAX_NODES {
            return Err(format!("{} nodes, the limit is {MAX_NODES}", nodes.len()));
        }
        let mut stack: Vec<(Condition, usize)> = Vec::new();
        for node in nodes {
            let built = match node {
                Node::All(n) | Node::Any(n) => {
                    let n = n as usize;
                    if n == 0 || n > MAX_CHILDREN || n > stack.len() {
                        return Err(format!("all/any with {n} children is malformed"));
                    }
                    let children = stack.split_off(stack.len() - n);
                    let depth = 1 + children.iter().map(|(_, d)| *d).max().unwrap_or(0);
                    let cs = children.into_iter().map(|(c, _)| c).collect();
                    let c = if matches!(node, Node::All(_)) {
                        Condition::All(cs)
                    } else {
                        Condition::Any(cs)
                    };
                    (c, depth)
                }
                Node::Not => {
                    let (c, d) = stack.pop().ok_or("not without an operand")?;
                    (Condition::Not(Box::new(c)), d + 1)
                }
                Node::After(t) => (Condition::After(t), 1),
                Node::Before(t) => (Condition::Before(t), 1),
                Node::Approvals { k, of } => (Condition::Approvals { k, of }, 1),
                Node::Attested { claim, by, subject } => {
                    (Condition::Attested { claim, by, subject }, 1)
                }
                Node::Released(t) => (Condition::Released(t), 1),
                Node::Settled(t) => (Condition::Settled(t), 1),
                Node::NoOpenAnomaly(s) => (Condition::NoOpenAnomaly(s), 1),
                Node::AttestedValue {
                    claim,
                    by,
                    subject,
                    value,
                } => (
                    Condition::AttestedValue {
                        claim,
                        by,
                        subject,
                        value,
                    },
                    1,
                ),
            };
            if built.1 > MAX_DEPTH {
                return Err(format!("depth over the limit of {MAX_DEPTH}"));
            }
            stack.push(built);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some((c, _)), true) => Ok(c),
            _ => Err("a condition must be exactly one expression".into()),
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&crate::condition_text::print(self))
        } else {
            let mut nodes = Vec::with_capacity(self.node_count());
            self.to_postfix(&mut nodes);
            nodes.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            crate::condition_text::parse(&text).map_err(serde::de::Error::custom)
        } else {
            let nodes = Vec::<Node>::deserialize(d)?;
            Condition::from_postfix(nodes).map_err(serde::de::Error::custom)
        }
    }
}

/// What a condition is evaluated against.
pub struct EvalEnv<'p> {
    pub plan: &'p Plan,
    pub application: Option<&'p Application>,
}

/// Evaluates `c` at the context's block time. Reads state through the
/// context, so each node costs steps.
pub fn eval(
    c: &Condition,
    ctx: &mut Ctx<'_, '_>,
    env: &EvalEnv<'_>,
) -> Result<bool, ContractError> {
    ctx.charge(1, "condition evaluation")?;
    Ok(match c {
        Condition::All(cs) => {
            for c in cs {
                if !eval(c, ctx, env)? {
                    return Ok(false);
                }
            }
            true
        }
        Condition::Any(cs) => {
            for c in cs {
                if eval(c, ctx, env)? {
                    return Ok(true);
                }
            }
            false
        }
        Condition::Not(c) => !eval(c, ctx, env)?,
        Condition::After(t) => ctx.time >= *t,
        Condition::Before(t) => ctx.time < *t,
        Condition::Approvals { k, of } => env
            .application
            .is_some_and(|a| a.approvals_among(of) >= *k as usize),
        Condition::Attested { claim, by, subject } => {
            ctx.exists(&crate::keys::attestation(subject, claim, by))?
        }
        Condition::Released(t) => env
            .plan
            .tranches
            .iter()
            .any(|tr| &tr.id == t && matches!(tr.status, TrancheStatus::Released { .. })),
        Condition::Settled(t) => {
            let release = env.plan.tranches.iter().find_map(|tr| match tr.status {
                TrancheStatus::Released { release } if &tr.id == t => Some(release),
                _ => None,
            });
            match release {
                None => false,
                Some(id) => {
                    let r: Option<crate::model::Release> = ctx.get(&crate::keys::release(id))?;
                    r.is_some_and(|r| r.is_settled())
                }
            }
        }
        Condition::NoOpenAnomaly(s) => !crate::anomalies::has_open(ctx, s)?,
        Condition::AttestedValue {
            claim,
            by,
            subject,
            value,
        } => {
            let a: Option<Attestation> = ctx.get(&crate::keys::attestation(subject, claim, by))?;
            a.is_some_and(|a| &a.value == value)
        }
    })
}

/// In JSON a condition is its text (docs/contracts.md, "Conditions").
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Condition {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A release condition in the condition language, e.g. \
                 `attested(\"completion\") and date >= 2026-06-01`",
            ))
            .build()
            .into()
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Condition {}

/// One leaf of a condition (anything but `all`, `any` and `not`) and
/// whether it holds.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeafState {
    /// The leaf in the condition language.
    pub condition: String,
    pub holds: bool,
}

/// Whether a condition holds, and which of its leaves do, as the
/// contracts would evaluate it at `time` over `store` (through [`eval`]
/// itself, in a throwaway overlay: nothing is written). This is what a
/// reader is told about a tranche that waits: which part of its condition
/// is not met yet.
pub fn explain(
    c: &Condition,
    store: &dyn crate::store::StoreRead,
    height: u64,
    time: Timestamp,
    env: &EvalEnv<'_>,
) -> Result<(bool, Vec<LeafState>), ContractError> {
    let mut overlay = crate::store::Overlay::new(store);
    let mut ctx = Ctx::new(&mut overlay, height, time, None, crate::TX_STEP_LIMIT);
    let holds = eval(c, &mut ctx, env)?;
    // A leaf under an odd number of `not`s is shown negated, so that
    // `holds` always says whether it counts for the condition.
    let mut leaves = Vec::new();
    let mut stack = vec![(c, false)];
    while let Some((n, negated)) = stack.pop() {
        match n {
            Condition::All(cs) | Condition::Any(cs) => {
                stack.extend(cs.iter().rev().map(|c| (c, negated)))
            }
            Condition::Not(inner) => stack.push((inner, !negated)),
            leaf => leaves.push((leaf, negated)),
        }
    }
    let mut out = Vec::with_capacity(leaves.len());
    for (leaf, negated) in leaves {
        let holds = eval(leaf, &mut ctx, env)? != negated;
        let condition = if negated {
            crate::condition_text::print(&Condition::Not(Box::new(leaf.clone())))
        } else {
            crate::condition_text::print(leaf)
        };
        out.push(LeafState { condition, holds });
    }
    Ok((holds, out))
}
