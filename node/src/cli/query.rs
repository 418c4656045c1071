//! `aidledger query ...` and `aidledger status`: read from a node's API.
//!
//! `--output json` passes the node's JSON through (pretty); text output is
//! for people, with amounts in the program's currency. If an answer does
//! not have the expected shape, the text output falls back to the JSON.

use std::process::ExitCode;

use aidledger_contracts::model::{
    Account, Anomaly, AnomalyKind, AnomalyStatus, Application, Household, Org, Plan, Program,
    Recipient, Release, ReleaseSource, TrancheStatus,
};
use aidledger_contracts::{condition_text, Party, TxOutcome};
use aidledger_types::{Amount, Hash, OrgId, PublicKey, Slug};
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{args, print_json, usage, Ctx};
use crate::api_types::{BlockView, NodeStatus, ProgramTrace, TxStatus};
use crate::client::Client;
use aidledger_audit::report::kebab;
use aidledger_audit::trace::{ApplicationTrace, HouseholdTrace};

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(subcommand)]
    what: QueryCmd,
}

#[derive(Subcommand, Debug)]
enum QueryCmd {
    /// Height, view, leader, peers, roots.
    Status,
    /// A block by height, or `latest`.
    Block { height: String },
    /// A transaction's status and receipt.
    Tx {
        #[arg(value_parser = args::hash)]
        id: Hash,
    },
    /// A program and its balances.
    Program {
        #[arg(value_parser = args::slug)]
        id: Slug,
    },
    /// Every program.
    Programs,
    /// An application and its votes.
    Application {
        #[arg(value_parser = args::slug)]
        id: Slug,
    },
    /// A disbursement plan and its tranches.
    Plan {
        #[arg(value_parser = args::slug)]
        id: Slug,
    },
    /// A household file (by its 64-hex id).
    Household {
        #[arg(value_parser = args::hash)]
        id: Hash,
    },
    /// A release (a disbursement made by the contracts) and its settlement.
    Release { id: u64 },
    /// Every member organisation.
    Orgs,
    /// Anomalies raised by the cross-checks.
    Anomalies {
        /// Only those still open.
        #[arg(long)]
        open: bool,
    },
    /// An account (by its public key).
    Account {
        #[arg(value_parser = args::public_key)]
        key: PublicKey,
    },
    /// An organisation.
    Org {
        #[arg(value_parser = args::org)]
        id: OrgId,
    },
    /// Follow one program's money from deposit through to settlement, or
    /// one application (--application) or household (--household) through
    /// its attestations, plan, releases, payments and anomalies.
    Trace {
        /// The program to follow.
        #[arg(
            value_parser = args::slug,
            required_unless_present_any = ["application", "household"],
            conflicts_with_all = ["application", "household"]
        )]
        program: Option<Slug>,
        /// Follow this application instead.
        #[arg(long, value_parser = args::slug, conflicts_with = "household")]
        application: Option<Slug>,
        /// Follow this household (its 64-hex id) instead.
        #[arg(long, value_parser = args::hash)]
        household: Option<Hash>,
    },
}

/// Decodes `v` as `T`, or prints it as JSON and returns `None`.
fn typed<T: DeserializeOwned>(v: &Value) -> Result<Option<T>> {
    match serde_json::from_value(v.clone()) {
        Ok(t) => Ok(Some(t)),
        Err(_) => {
            print_json(v)?;
            Ok(None)
        }
    }
}

/// A list answer: a JSON array, or an object holding one array.
fn list<T: DeserializeOwned>(v: &Value) -> Option<Vec<T>> {
    let arr = match v {
        Value::Array(_) => v.clone(),
        Value::Object(m) => m.values().find(|x| x.is_array()).cloned()?,
        _ => return None,
    };
    serde_json::from_value(arr).ok()
}

pub fn amount(a: Amount, p: &Program) -> String {
    format!("{} {}", a.to_decimal(u32::from(p.decimals)), p.currency)
}

fn recipient(r: &Recipient) -> String {
    match r {
        Recipient::Org(o) => format!("org:{o}"),
        Recipient::Household(h) => format!("household:{}", h.to_hex()),
    }
}

fn party(p: &Party) -> String {
    match p {
        Party::Org(o) => format!("org:{o}"),
        Party::Household(h) => format!("household:{}", h.short()),
        Party::Program(p) => format!("program:{p}"),
    }
}

fn program(c: &Client, id: &Slug) -> Result<Option<Program>> {
    c.get_opt(&format!("/v1/programs/{id}"))
}

pub fn status(ctx: &Ctx) -> Result<ExitCode> {
    let c = ctx.client()?;
    let v = c.get_json("/v1/status")?;
    if ctx.json() {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(s) = typed::<NodeStatus>(&v)? {
        println!("node         {}", c.base());
        println!("chain        {}", s.chain_id);
        println!(
            "org          {} ({})",
            s.org,
            if s.validator { "validator" } else { "observer" }
        );
        println!("node key     {}", s.node_key);
        if !s.peer_id.is_empty() {
            println!("peer id      {}", s.peer_id);
        }
        println!("height       {}", s.height);
        if s.base > 1 {
            println!(
                "history      from height {} (joined from a snapshot; a pruned node)",
                s.base
            );
        }
        println!("block        {}", s.block_hash);
        println!("state root   {}", s.state_root);
        println!("view         {}", s.view);
        if s.validator {
            println!(
                "voting       {}",
                if s.voting {
                    "yes"
                } else {
                    "no (abstaining until the consortium has moved past the heights it may have voted at; see the operator guide, Restore)"
                }
            );
        }
        println!(
            "leader       {}",
            s.leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into())
        );
        println!("peers        {}", s.peers);
        if let (Some(at), Some(why)) = (s.next_due_ms, &s.next_due_reason) {
            println!("next due     {} ({why})", aidledger_types::Timestamp(at));
        }
        println!("mempool      {} txs", s.mempool_txs);
        if !s.modules.is_empty() {
            println!("modules      {}", s.modules.join(", "));
        }
        if let Some(u) = &s.upgrade {
            println!(
                "upgrade      {} from height {}{}",
                u.modules.join(", "),
                u.at_height,
                if u.missing.is_empty() {
                    " (this build carries it)".to_string()
                } else {
                    format!(
                        " -- THIS BUILD LACKS {}: install a release that carries it before \
                         height {}, or the node stops there",
                        u.missing.join(", "),
                        u.at_height
                    )
                }
            );
        }
        println!(
            "last block   {}",
            aidledger_types::Timestamp(s.last_block_time_ms).iso8601()
        );
        println!("genesis      {}", s.genesis_hash);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(ctx: &Ctx, a: QueryArgs) -> Result<ExitCode> {
    if let QueryCmd::Status = a.what {
        return status(ctx);
    }
    let path = match &a.what {
        QueryCmd::Status => "/v1/status".to_string(),
        QueryCmd::Block { height } => {
            let h = height.trim();
            if h != "latest" && h.parse::<u64>().is_err() {
                return Err(usage(format!("block {h:?}: expected a height or `latest`")));
            }
            format!("/v1/blocks/{h}")
        }
        QueryCmd::Tx { id } => format!("/v1/txs/{}", id.to_hex()),
        QueryCmd::Program { id } => format!("/v1/programs/{id}"),
        QueryCmd::Programs => "/v1/programs".to_string(),
        QueryCmd::Application { id } => format!("/v1/applications/{id}"),
        QueryCmd::Plan { id } => format!("/v1/plans/{id}"),
        QueryCmd::Household { id } => format!("/v1/households/{}", id.to_hex()),
        QueryCmd::Release { id } => format!("/v1/releases/{id}"),
        QueryCmd::Orgs => "/v1/orgs".to_string(),
        QueryCmd::Anomalies { open } => {
            if *open {
                "/v1/anomalies?open=true".to_string()
            } else {
                "/v1/anomalies".to_string()
            }
        }
        QueryCmd::Account { key } => format!("/v1/accounts/{}", key.to_hex()),
        QueryCmd::Org { id } => format!("/v1/orgs/{id}"),
        QueryCmd::Trace {
            program,
            application,
            household,
        } => match (program, application, household) {
            (_, Some(a), _) => format!("/v1/applications/{a}/trace"),
            (_, _, Some(h)) => format!("/v1/households/{}/trace", h.to_hex()),
            (Some(p), _, _) => format!("/v1/programs/{p}/trace"),
            (None, None, None) => {
                return Err(usage(
                    "trace needs a program, --application ID or --household ID",
                ))
            }
        },
    };
    let c = ctx.client()?;
    // Lists and the program trace come in pages (ADR 019): gather them all.
    let v = match &a.what {
        QueryCmd::Programs | QueryCmd::Orgs | QueryCmd::Anomalies { .. } => {
            Value::Array(c.get_all(&path)?)
        }
        QueryCmd::Trace {
            application: None,
            household: None,
            ..
        } => c.get_trace(&path, &["ledger", "releases", "anomalies"])?,
        QueryCmd::Trace { .. } => {
            c.get_trace(&path, &["attestations", "releases", "ledger", "anomalies"])?
        }
        _ => c.get_json(&path)?,
    };
    if ctx.json() {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    match a.what {
        QueryCmd::Status => {}
        QueryCmd::Block { .. } => {
            if let Some(b) = typed::<BlockView>(&v)? {
                print_block(&b);
            }
        }
        QueryCmd::Tx { .. } => {
            if let Some(t) = typed::<TxStatus>(&v)? {
                print_tx(&t);
            }
        }
        QueryCmd::Program { .. } => {
            if let Some(p) = typed::<Program>(&v)? {
                print_program(&p);
            }
        }
        QueryCmd::Programs => match list::<Program>(&v) {
            Some(ps) => print_programs(&ps),
            None => print_json(&v)?,
        },
        QueryCmd::Application { .. } => {
            if let Some(app) = typed::<Application>(&v)? {
                let p = program(&c, &app.program)?;
                print_application(&app, p.as_ref());
            }
        }
        QueryCmd::Plan { .. } => {
            if let Some(plan) = typed::<Plan>(&v)? {
                let p = program(&c, &plan.program)?;
                print_plan(&plan, p.as_ref());
            }
        }
        QueryCmd::Household { .. } => {
            if let Some(h) = typed::<Household>(&v)? {
                println!("household     {}", h.id);
                println!("region        {}", h.region);
                println!("status        {}", kebab(&h.status));
                println!(
                    "registered    by {} at height {}",
                    h.registered_by, h.registered_height
                );
                println!("updated       height {}", h.updated_height);
            }
        }
        QueryCmd::Release { .. } => {
            if let Some(r) = typed::<Release>(&v)? {
                let p = program(&c, &r.program)?;
                print_release(&r, p.as_ref());
            }
        }
        QueryCmd::Orgs => match list::<Org>(&v) {
            Some(orgs) => {
                let mut t = super::table::table(&["ORG", "KIND", "STATUS", "NAME"], &[]);
                for o in orgs {
                    t.add_row([
                        o.id.to_string(),
                        kebab(&o.kind),
                        kebab(&o.status),
                        o.name.to_string(),
                    ]);
                }
                super::table::print(&t);
            }
            None => print_json(&v)?,
        },
        QueryCmd::Anomalies { .. } => match list::<Anomaly>(&v) {
            Some(list) => print_anomalies(&list),
            None => print_json(&v)?,
        },
        QueryCmd::Account { .. } => {
            if let Some(acc) = typed::<Account>(&v)? {
                let roles: Vec<&str> = acc.roles.iter().map(|r| r.as_str()).collect();
                println!("account  {}", acc.key);
                println!("org      {}", acc.org);
                println!("roles    {}", roles.join(", "));
                println!("nonce    {}", acc.nonce);
                println!("status   {}", kebab(&acc.status));
            }
        }
        QueryCmd::Org { .. } => {
            if let Some(o) = typed::<Org>(&v)? {
                println!("org      {}", o.id);
                println!("name     {}", o.name);
                println!("kind     {}", kebab(&o.kind));
                println!("status   {}", kebab(&o.status));
            }
        }
        QueryCmd::Trace {
            application: Some(_),
            ..
        } => {
            if let Some(t) = typed::<ApplicationTrace>(&v)? {
                print_application_trace(&t);
            }
        }
        QueryCmd::Trace {
            household: Some(_), ..
        } => {
            if let Some(t) = typed::<HouseholdTrace>(&v)? {
                let programs = programs_of(&c, &t.releases)?;
                print_household_trace(&t, &programs);
            }
        }
        QueryCmd::Trace { .. } => {
            if let Some(t) = typed::<ProgramTrace>(&v)? {
                print_trace(&t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_block(b: &BlockView) {
    let h = &b.header;
    println!("height      {}", h.height);
    println!("hash        {}", b.hash);
    println!("time        {}", h.timestamp.iso8601());
    println!("view        {}", h.view);
    println!("proposer    {}", h.proposer);
    println!("parent      {}", h.parent_hash);
    println!("state root  {}", h.state_root);
    println!("tx root     {}", h.tx_root);
    println!("validators  {}", h.validator_set_hash);
    if h.next_validator_set_hash != h.validator_set_hash {
        println!(
            "next set    {} (the validator set changes after this block)",
            h.next_validator_set_hash
        );
    }
    match &b.certificate {
        Some(c) => println!(
            "certified   {} signatures (view {})",
            c.signatures.len(),
            c.view
        ),
        None => println!("certified   -"),
    }
    println!("txs         {}", b.txs.len());
    for t in &b.txs {
        println!(
            "  {}  {:<20} nonce {:<6} signer {}  {}",
            t.id.short(),
            t.kind.as_str(),
            t.nonce,
            t.signer.short(),
            if t.applied { "applied" } else { "rejected" }
        );
    }
}

fn print_tx(t: &TxStatus) {
    println!("id       {}", t.id);
    println!("status   {}", kebab(&t.status));
    if let Some(h) = t.height {
        println!("height   {h}");
    }
    if let Some(i) = t.index {
        println!("index    {i}");
    }
    if let Some(r) = &t.receipt {
        println!("kind     {}", r.kind);
        println!("signer   {}", r.signer);
        match &r.outcome {
            TxOutcome::Applied => println!("outcome  applied"),
            TxOutcome::Rejected { code, reason } => {
                println!("outcome  rejected: {code}: {reason}")
            }
        }
        println!("events   {}", r.events.len());
        for e in &r.events {
            println!("  {}", kebab(&e.body));
        }
    }
}

fn print_program(p: &Program) {
    let b = &p.balances;
    let orgs = |v: &[OrgId]| v.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ");
    println!("program     {} ({})", p.id, kebab(&p.status));
    println!("title       {}", p.title);
    println!("owner       {}", p.owner);
    println!("currency    {} ({} decimals)", p.currency, p.decimals);
    println!("funded by   {}", orgs(&p.funding_orgs));
    println!(
        "approval    {} of [{}]",
        p.policy.threshold,
        orgs(&p.policy.orgs)
    );
    println!("region      {}", p.region_scope);
    println!("ceiling     {}", amount(p.budget_ceiling, p));
    println!("deposited   {}", amount(b.deposited, p));
    println!("available   {}", amount(b.available, p));
    println!("committed   {}", amount(b.committed, p));
    println!("released    {}", amount(b.released, p));
    println!("settled     {}", amount(b.settled, p));
    println!("returned    {}", amount(b.returned, p));
}

fn print_programs(ps: &[Program]) {
    if ps.is_empty() {
        println!("no programs");
        return;
    }
    let mut t = super::table::table(
        &[
            "PROGRAM",
            "STATUS",
            "OWNER",
            "DEPOSITED",
            "AVAILABLE",
            "RELEASED",
        ],
        &[3, 4, 5],
    );
    for p in ps {
        t.add_row([
            p.id.to_string(),
            kebab(&p.status),
            p.owner.to_string(),
            amount(p.balances.deposited, p),
            amount(p.balances.available, p),
            amount(p.balances.released, p),
        ]);
    }
    super::table::print(&t);
}

/// An amount with the program's decimals, or raw minor units without it.
fn amount_opt(a: Amount, p: Option<&Program>) -> String {
    match p {
        Some(p) => amount(a, p),
        None => format!("{} (minor units)", a.0),
    }
}

fn print_application(a: &Application, p: Option<&Program>) {
    println!("application  {} ({})", a.id, a.status);
    println!("program      {}", a.program);
    println!("applicant    {}", a.applicant);
    println!("region       {}", a.region);
    println!("requested    {}", amount_opt(a.requested, p));
    println!("purpose      {}", a.purpose);
    println!("documents    {}", a.doc_hash);
    println!(
        "plan         {}",
        a.plan.as_ref().map(|s| s.as_str()).unwrap_or("-")
    );
    println!("submitted    height {}", a.submitted_height);
    println!("votes        {}", a.votes.len());
    for (org, v) in &a.votes {
        let note = if v.note.as_str().is_empty() {
            String::new()
        } else {
            format!(": {}", v.note)
        };
        println!(
            "  {:<18} {} at height {}{note}",
            org.as_str(),
            if v.approve { "approved" } else { "rejected" },
            v.height
        );
    }
}

fn print_plan(plan: &Plan, p: Option<&Program>) {
    println!("plan         {}", plan.id);
    println!("program      {}", plan.program);
    println!(
        "application  {}",
        plan.application.as_ref().map(|s| s.as_str()).unwrap_or("-")
    );
    println!("created      height {}", plan.created_height);
    println!("tranches     {}", plan.tranches.len());
    for t in &plan.tranches {
        let status = match &t.status {
            TrancheStatus::Pending { held: false } => "pending".to_string(),
            TrancheStatus::Pending { held: true } => "held".to_string(),
            TrancheStatus::Released { release } => format!("released (release {release})"),
            TrancheStatus::Cancelled => "cancelled".to_string(),
        };
        println!(
            "  {:<12} {:>20}  to {}  {status}",
            t.id.as_str(),
            amount_opt(t.amount, p),
            recipient(&t.recipient)
        );
        println!("      when {}", condition_text::print(&t.condition));
    }
}

fn anomaly_detail(a: &Anomaly) -> String {
    match &a.kind {
        AnomalyKind::ConflictingAttestation {
            claim,
            first_org,
            second_org,
            ..
        } => format!("{claim}: {first_org} and {second_org} disagree"),
        AnomalyKind::DuplicateHousehold {
            first_by,
            second_by,
        } => format!("registered by {first_by}, again by {second_by}"),
        AnomalyKind::IneligibleRecipient { program, reason } => format!("{program}: {reason}"),
        AnomalyKind::SettlementMismatch {
            release,
            expected,
            got,
        } => format!(
            "release {release}: expected {} got {} (minor units)",
            expected.0, got.0
        ),
        AnomalyKind::SettlementOverdue {
            release,
            released_at,
            ..
        } => format!(
            "release {release} made {} is not settled",
            released_at.iso8601()
        ),
        AnomalyKind::CrossCheck { rule, description } => {
            format!("cross-check {rule}: {description}")
        }
    }
}

fn print_anomalies(list: &[Anomaly]) {
    if list.is_empty() {
        println!("no anomalies");
        return;
    }
    let mut t = super::table::table(
        &["ID", "KIND", "STATUS", "HEIGHT", "SUBJECT", "DETAIL"],
        &[0, 3],
    );
    for a in list {
        let status = match &a.status {
            AnomalyStatus::Open => "open".to_string(),
            AnomalyStatus::Resolved { org, .. } => format!("resolved by {org}"),
        };
        t.add_row([
            a.id.to_string(),
            a.kind.code().to_string(),
            status,
            a.raised_height.to_string(),
            a.subject.to_string(),
            anomaly_detail(a),
        ]);
    }
    super::table::print(&t);
}

fn release_source(r: &Release) -> String {
    match &r.source {
        ReleaseSource::Tranche { plan, tranche } => format!("plan {plan} tranche {tranche}"),
        ReleaseSource::Entitlement {
            entitlement,
            period,
        } => format!("entitlement {entitlement} period {period}"),
    }
}

fn settlement(r: &Release, p: Option<&Program>) -> String {
    match &r.settlement {
        None => "not settled".to_string(),
        Some(s) => format!(
            "{} {} by {} at height {}",
            kebab(&s.status),
            amount_opt(s.amount, p),
            s.org,
            s.height
        ),
    }
}

fn print_release(r: &Release, p: Option<&Program>) {
    println!("release     {}", r.id);
    println!("program     {}", r.program);
    println!("source      {}", release_source(r));
    println!("recipient   {}", recipient(&r.recipient));
    println!("amount      {}", amount_opt(r.amount, p));
    println!("made        height {} at {}", r.height, r.time.iso8601());
    println!("settlement  {}", settlement(r, p));
}

fn print_trace(t: &ProgramTrace) {
    let p = &t.program;
    print_program(p);
    println!();
    println!("ledger ({} movements)", t.ledger.len());
    print_movements(&t.ledger, Some(p));
    println!();
    print_releases(&t.releases, Some(p));
    if !t.anomalies.is_empty() {
        println!();
        println!("anomalies ({})", t.anomalies.len());
        print_anomalies(&t.anomalies);
    }
}

fn print_releases(releases: &[Release], p: Option<&Program>) {
    println!("releases ({})", releases.len());
    for r in releases {
        println!(
            "  release {:<4} h{:<6} {:>18} to {}  ({}); {}",
            r.id,
            r.height,
            amount_opt(r.amount, p),
            recipient(&r.recipient),
            release_source(r),
            settlement(r, p)
        );
    }
}

fn print_movements(ledger: &[aidledger_contracts::MoneyEvent], p: Option<&Program>) {
    for m in ledger {
        let sign = if m.flow.is_reversal() { "-" } else { "" };
        let refs: Vec<String> = [
            m.plan.as_ref().map(|x| format!("plan {x}")),
            m.tranche.as_ref().map(|x| format!("tranche {x}")),
            m.entitlement.as_ref().map(|x| format!("entitlement {x}")),
            m.period.map(|x| format!("period {x}")),
            m.release.map(|x| format!("release {x}")),
            m.tx.map(|x| format!("tx {}", x.short())),
        ]
        .into_iter()
        .flatten()
        .collect();
        println!(
            "  {}#{:<4} h{:<6} {} {:<21} {:>1}{:>18}  {} -> {}  {}",
            m.program,
            m.seq,
            m.height,
            m.time.iso8601(),
            kebab(&m.flow),
            sign,
            amount_opt(m.amount, p),
            party(&m.from),
            party(&m.to),
            refs.join(", ")
        );
    }
}

fn print_attestations(list: &[aidledger_contracts::Attestation]) {
    println!("attestations ({})", list.len());
    for a in list {
        let value = match &a.value {
            aidledger_contracts::AttestValue::Code(c) => c.to_string(),
            aidledger_contracts::AttestValue::Hash(h) => h.to_hex(),
        };
        println!(
            "  h{:<6} {:<28} = {:<24} by {}",
            a.height, a.claim, value, a.org
        );
    }
}

fn print_application_trace(t: &ApplicationTrace) {
    let p = t.program.as_ref();
    print_application(&t.application, p);
    println!();
    print_attestations(&t.attestations);
    println!();
    match &t.plan {
        Some(plan) => print_plan(plan, p),
        None => println!("plan        none yet"),
    }
    println!();
    print_releases(&t.releases, p);
    println!();
    println!("ledger ({} movements)", t.ledger.len());
    print_movements(&t.ledger, p);
    if !t.anomalies.is_empty() {
        println!();
        println!("anomalies ({})", t.anomalies.len());
        print_anomalies(&t.anomalies);
    }
}

/// The programs of some releases, for formatting their amounts.
fn programs_of(c: &Client, releases: &[Release]) -> Result<Vec<Program>> {
    let mut ids: Vec<&Slug> = releases.iter().map(|r| &r.program).collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        if let Some(p) = program(c, id)? {
            out.push(p);
        }
    }
    Ok(out)
}

fn print_household_trace(t: &HouseholdTrace, programs: &[Program]) {
    let h = &t.household;
    let find = |id: &Slug| programs.iter().find(|p| &p.id == id);
    println!("household     {}", h.id);
    println!("region        {}", h.region);
    println!("status        {}", kebab(&h.status));
    println!(
        "registered    by {} at height {}",
        h.registered_by, h.registered_height
    );
    println!();
    print_attestations(&t.attestations);
    println!();
    println!("releases ({})", t.releases.len());
    for r in &t.releases {
        let p = find(&r.program);
        println!(
            "  release {:<4} h{:<6} {:<16} {:>18}  ({}); {}",
            r.id,
            r.height,
            r.program,
            amount_opt(r.amount, p),
            release_source(r),
            settlement(r, p)
        );
    }
    println!();
    println!("ledger ({} movements)", t.ledger.len());
    for m in &t.ledger {
        print_movements(std::slice::from_ref(m), find(&m.program));
    }
    if !t.anomalies.is_empty() {
        println!();
        println!("anomalies ({})", t.anomalies.len());
        print_anomalies(&t.anomalies);
    }
}

/// Used by `testnet status`: a node's status, or why it could not be read.
pub fn node_status(url: &str) -> Result<NodeStatus> {
    Client::new(url)?
        .get::<NodeStatus>("/v1/status")
        .map_err(|e| anyhow!("{e:#}"))
}
