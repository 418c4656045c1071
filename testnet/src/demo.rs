//! `aidledger testnet demo`: a whole aid-fund lifecycle on a live local
//! consortium, every step through the `aidledger` CLI against the node of
//! the organisation that acts.
//!
//! The steps (docs/testnet.md tells the story):
//! 1. the poverty office creates a program whose approval policy needs the
//!    poverty office and the development bank;
//! 2. the state bank deposits;
//! 3. the county unit registers households and applies for a village road;
//! 4. two departments attest household data; one pair conflicts, which
//!    raises an anomaly that holds that household's payments;
//! 5. approvals arrive from two organisations;
//! 6. a plan commits the funds in three tranches, conditioned on approvals,
//!    a milestone attestation and a date;
//! 7. releases happen on their own as their conditions come to hold; one
//!    waits for a date that passes while the demo runs;
//! 8. the bank settles the releases;
//! 9. per-household entitlements pay out for two periods (the household
//!    under anomaly is held);
//! 10. the anomaly is resolved and the held payments go out.
//!
//! It ends with the program's trace and balances, and the auditor's replay
//! of one node's data. Any step that does not do what it should ends the
//! demo with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aidledger_contracts::model::{Recipient, ReleaseSource, TrancheStatus};
use aidledger_contracts::{Plan, Program};
use aidledger_types::{Amount, Timestamp};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::testnet::{read_testnet, TestnetOrg};
use aidledger_node::api_types::ProgramTrace;
use aidledger_node::cli::{print_json, wall_clock_ms, Ctx};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// The testnet directory: initialised if it holds no testnet.json,
    /// reused (and started) otherwise.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Seconds until the date-conditioned tranche may release.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub date_delay: u64,
    /// Length of one entitlement period, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub period: u64,
    /// Leave the nodes running at the end (default: leave them running
    /// too; pass --stop to stop them).
    #[arg(long)]
    pub stop: bool,
}

/// One step of the story, for `--output json`.
#[derive(Debug, Clone, Serialize)]
struct StepRecord {
    step: usize,
    title: String,
    actions: Vec<Action>,
    checks: Vec<String>,
    seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Action {
    org: String,
    role: String,
    node: String,
    command: String,
    tx: Option<String>,
    height: Option<u64>,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    dir: String,
    program: String,
    steps: Vec<StepRecord>,
    balances: Value,
    trace: Value,
    audit: Value,
    ok: bool,
}

const STEPS: usize = 10;
/// Longest the demo waits for anything to commit or release.
const WAIT: Duration = Duration::from_secs(120);

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    orgs: Vec<TestnetOrg>,
    json: bool,
    steps: Vec<StepRecord>,
    current: Option<StepRecord>,
    started: std::time::Instant,
    step_started: std::time::Instant,
    date_delay_ms: u64,
    period_s: u64,
    /// Height of the last transaction the demo saw commit: reads wait
    /// until the node they ask has reached it (read-your-writes).
    seen_height: u64,
}

#[allow(clippy::disallowed_methods)] // the demo waits on the wall clock
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A whole-second time in the condition syntax, `YYYY-MM-DDTHH:MM:SSZ`.
fn condition_time(ms: u64) -> String {
    let t = Timestamp(ms - ms % 1000);
    t.iso8601().replace(".000Z", "Z")
}

fn money(a: Amount) -> String {
    format!("{} CNY", a.to_decimal(2))
}

impl Demo {
    fn org(&self, id: &str) -> Result<&TestnetOrg> {
        self.orgs.iter().find(|o| o.id == id).ok_or_else(|| {
            anyhow!(
                "the testnet in {} has no organisation {id}",
                self.dir.display()
            )
        })
    }

    fn key(&self, org: &str, role: &str) -> Result<String> {
        let o = self.org(org)?;
        let p = o
            .clients
            .get(role)
            .ok_or_else(|| anyhow!("{org} has no {role} key in testnet.json"))?;
        Ok(p.display().to_string())
    }

    fn begin(&mut self, n: usize, title: &str) {
        self.current = Some(StepRecord {
            step: n,
            title: title.to_string(),
            actions: Vec::new(),
            checks: Vec::new(),
            seconds: 0.0,
        });
        self.step_started = now();
        if !self.json {
            println!();
            println!("[{n}/{STEPS}] {title}");
        }
    }

    fn end(&mut self) {
        if let Some(mut s) = self.current.take() {
            s.seconds = self.step_started.elapsed().as_secs_f64();
            self.steps.push(s);
        }
    }

    fn note(&mut self, line: String) {
        if !self.json {
            println!("      {line}");
        }
    }

    fn check(&mut self, what: String) {
        if !self.json {
            println!("      ok: {what}");
        }
        if let Some(s) = self.current.as_mut() {
            s.checks.push(what);
        }
    }

    /// Runs `aidledger --output json <args>` and returns its JSON output.
    fn cli(&self, args: &[String]) -> Result<Value> {
        let out = Command::new(&self.exe)
            .arg("--output")
            .arg("json")
            .args(args)
            .env_remove("AIDLEDGER_NODE")
            .env_remove("AIDLEDGER_HOME")
            .output()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let why = err.lines().last().unwrap_or("").trim().to_string();
            bail!(
                "`aidledger {}` failed ({}): {why}{}",
                args.join(" "),
                out.status,
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!(" {}", stdout.trim())
                }
            );
        }
        serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "`aidledger {}` did not print JSON: {stdout}",
                args.join(" ")
            )
        })
    }

    /// Signs and submits a transaction as `org`'s `role` at `org`'s own
    /// node (or `via`), waiting for the commit and an applied receipt.
    fn tx(&mut self, org: &str, role: &str, via: Option<&str>, args: &[&str]) -> Result<Value> {
        let node_org = via.unwrap_or(org);
        let node = self.org(node_org)?.api.clone();
        let key = self.key(org, role)?;
        let mut full: Vec<String> = vec!["tx".into()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.extend([
            "--node".into(),
            node.clone(),
            "--key".into(),
            key,
            "--wait".into(),
        ]);
        let v = self.cli(&full)?;
        let applied = v["receipt"]["outcome"] == "applied"
            || v["receipt"]["outcome"]["applied"].is_object()
            || v["receipt"]["outcome"].as_str() == Some("applied");
        if v["status"] != "committed" || !applied {
            bail!("`aidledger tx {}` did not apply: {v}", args.join(" "));
        }
        let id = v["id"].as_str().map(str::to_string);
        let height = v["height"].as_u64();
        self.seen_height = self.seen_height.max(height.unwrap_or(0));
        if !self.json {
            println!(
                "    {org:<15} {role:<16} tx {:<24} via {node_org:<15} committed at height {}",
                args.first().copied().unwrap_or(""),
                height.unwrap_or(0)
            );
        }
        if let Some(s) = self.current.as_mut() {
            s.actions.push(Action {
                org: org.into(),
                role: role.into(),
                node: node.clone(),
                command: format!("aidledger tx {}", args.join(" ")),
                tx: id,
                height,
            });
        }
        Ok(v)
    }

    /// Reads with `aidledger query ... --node <org's node>`.
    fn query(&self, org: &str, args: &[&str]) -> Result<Value> {
        let node = self.org(org)?.api.clone();
        self.caught_up(&node)?;
        let mut full: Vec<String> = vec!["query".into()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.extend(["--node".into(), node]);
        self.cli(&full)
    }

    /// Waits until `node` has committed everything the demo has seen.
    fn caught_up(&self, node: &str) -> Result<()> {
        let t0 = now();
        loop {
            let h = aidledger_node::cli::query::node_status(node)
                .map(|s| s.height)
                .unwrap_or(0);
            if h >= self.seen_height {
                return Ok(());
            }
            if t0.elapsed() > WAIT {
                bail!("{node} is stuck at height {h}, behind {}", self.seen_height);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn trace(&self, org: &str, program: &str) -> Result<(ProgramTrace, Value)> {
        let v = self.query(org, &["trace", program])?;
        let t: ProgramTrace =
            serde_json::from_value(v.clone()).context("unexpected trace from the node")?;
        Ok((t, v))
    }

    fn plan(&self, org: &str, plan: &str) -> Result<Plan> {
        let v = self.query(org, &["plan", plan])?;
        serde_json::from_value(v).context("unexpected plan from the node")
    }

    /// Polls `f` on the node of `org` until it returns Some, or fails after
    /// `WAIT` naming `what`.
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&Self) -> Result<Option<T>>) -> Result<T> {
        let t0 = now();
        let mut last_err = None;
        while t0.elapsed() < WAIT {
            match f(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_err = Some(e),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        match last_err {
            Some(e) => Err(e.context(format!("waiting for {what}"))),
            None => bail!("{what} did not happen within {} s", WAIT.as_secs()),
        }
    }
}

fn tranche_release(p: &Plan, tranche: &str) -> Option<u64> {
    p.tranches
        .iter()
        .find(|t| t.id.as_str() == tranche)
        .and_then(|t| match t.status {
            TrancheStatus::Released { release } => Some(release),
            _ => None,
        })
}

/// Entitlement payments to `household` in the trace, by period.
fn paid_periods(t: &ProgramTrace, ent: &str, household: &str) -> Vec<u32> {
    let mut v: Vec<u32> = t
        .releases
        .iter()
        .filter_map(|r| match (&r.source, &r.recipient) {
            (
                ReleaseSource::Entitlement {
                    entitlement,
                    period,
                },
                Recipient::Household(h),
            ) if entitlement.as_str() == ent && h.to_hex() == household => Some(*period),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

fn hh_id(d: &Demo, salt: &str, local: &str) -> Result<String> {
    let v = d.cli(&[
        "household-id".into(),
        "--salt".into(),
        salt.into(),
        "--local-id".into(),
        local.into(),
    ])?;
    v["household"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("household-id printed {v}"))
}

pub fn run(ctx: &Ctx, a: DemoArgs) -> Result<std::process::ExitCode> {
    let exe = std::env::current_exe().context("cannot find the aidledger executable")?;
    let json = ctx.json();
    let dir = a.dir.clone();
    if !dir.join("testnet.json").exists() {
        if !json {
            println!("initialising a local consortium in {}", dir.display());
        }
        let st = Command::new(&exe)
            .args(["--output", "json", "testnet", "init", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            bail!("`aidledger testnet init --dir {}` failed", dir.display());
        }
    }
    let (_pids, _children) = crate::testnet::start_missing(&dir, 90)?;
    let t = read_testnet(&dir)?;
    let mut d = Demo {
        exe,
        dir: dir.clone(),
        orgs: t.orgs.clone(),
        json,
        steps: Vec::new(),
        current: None,
        started: now(),
        step_started: now(),
        date_delay_ms: a.date_delay * 1000,
        period_s: a.period,
        seen_height: 0,
    };
    if !json {
        println!("consortium {} in {}:", t.chain_id, dir.display());
        for o in &t.orgs {
            println!(
                "  {:<15} {:<32} {} {}",
                o.id,
                o.name,
                o.api,
                if o.validator {
                    "validator"
                } else {
                    "member (observer node)"
                }
            );
        }
    }
    let result = lifecycle(&mut d);
    let ok = result.is_ok();
    let (program, balances, trace, audit) = match &result {
        Ok(r) => r.clone(),
        Err(_) => (String::new(), Value::Null, Value::Null, Value::Null),
    };
    if let Err(e) = &result {
        d.end();
        if json {
            print_json(&DemoReport {
                dir: dir.display().to_string(),
                program,
                steps: d.steps,
                balances,
                trace,
                audit,
                ok: false,
            })?;
        }
        eprintln!("error: the demo failed: {e:#}");
        eprintln!(
            "the nodes keep running: inspect them with `aidledger testnet status --dir {}`, stop them with `aidledger testnet down --dir {}`",
            dir.display(),
            dir.display()
        );
        return Ok(std::process::ExitCode::FAILURE);
    }
    if a.stop {
        let _ = Command::new(&d.exe)
            .args(["testnet", "down", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status();
    }
    if json {
        print_json(&DemoReport {
            dir: dir.display().to_string(),
            program,
            steps: d.steps,
            balances,
            trace,
            audit,
            ok,
        })?;
    } else {
        println!();
        println!(
            "the demo passed in {:.0} s: every step did what it should.",
            d.started.elapsed().as_secs_f64()
        );
        if !a.stop {
            if let Ok(o) = d.org("state-bank") {
                println!(
                    "open the explorer in a browser: {}/ (the state bank's node; every node serves it)",
                    o.api
                );
            }
            println!(
                "the consortium keeps running; stop it with `aidledger testnet down --dir {}`",
                dir.display()
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

type Finish = (String, Value, Value, Value);

fn lifecycle(d: &mut Demo) -> Result<Finish> {
    let tag = format!("{:04x}", rand::random::<u16>());
    let program = format!("village-fund-{tag}");
    let app = format!("village-road-{tag}");
    let plan = format!("road-plan-{tag}");
    let ent = format!("winter-subsidy-{tag}");
    let region = "gansu/linxia";
    let village = "gansu/linxia/dongxiang";

    // 1. The program.
    d.begin(1, "The poverty office creates a program; its approval policy needs the poverty office and the development bank");
    d.tx(
        "poverty-office",
        "program-officer",
        None,
        &[
            "create-program",
            "--id",
            &program,
            "--title",
            "Dongxiang village development fund",
            "--currency",
            "CNY",
            "--ceiling",
            "500000.00",
            "--funding-orgs",
            "state-bank",
            "--threshold",
            "2",
            "--policy-orgs",
            "poverty-office,dev-bank",
            "--region-scope",
            region,
        ],
    )?;
    let p: Program = serde_json::from_value(d.query("state-bank", &["program", &program])?)?;
    if p.policy.threshold != 2 {
        bail!(
            "program {program} has policy threshold {}",
            p.policy.threshold
        );
    }
    d.check(format!(
        "program {program} is visible at the state bank's node with a 2-of-2 policy"
    ));
    d.end();

    // 2. The deposit.
    d.begin(2, "The state bank deposits 200,000.00 CNY");
    d.tx(
        "state-bank",
        "disburser",
        None,
        &["deposit", "--program", &program, "--amount", "200000.00"],
    )?;
    let p: Program = serde_json::from_value(d.query("audit-office", &["program", &program])?)?;
    if p.balances.deposited != Amount(20_000_000) || p.balances.available != Amount(20_000_000) {
        bail!("after the deposit the balances are {:?}", p.balances);
    }
    d.check("deposited = available = 200000.00 CNY, read at the audit office's node".into());
    d.end();

    // 3. Households and the application.
    d.begin(3, "The county unit registers three households (salted ids, no personal data) and applies for a village road");
    let salt = format!("county-unit-demo-salt-{tag}");
    let hh: Vec<String> = ["household-0041", "household-0042", "household-0043"]
        .iter()
        .map(|l| hh_id(d, &salt, l))
        .collect::<Result<_>>()?;
    for h in &hh {
        d.tx(
            "county-unit",
            "registrar",
            None,
            &["register-household", "--household", h, "--region", village],
        )?;
    }
    // The documents stay off chain; only their SHA-256 goes in.
    let docs = d.dir.join("documents");
    std::fs::create_dir_all(&docs)?;
    let doc = docs.join(format!("{app}.txt"));
    std::fs::write(
        &doc,
        format!("Application {app}: gravel road, 4.2 km, three hamlets of Dongxiang county.\nBill of quantities and county engineer's estimate attached.\n"),
    )?;
    let doc = doc.display().to_string();
    d.tx(
        "county-unit",
        "program-officer",
        None,
        &[
            "submit-application",
            "--doc-file",
            &doc,
            "--id",
            &app,
            "--program",
            &program,
            "--region",
            village,
            "--amount",
            "120000.00",
            "--purpose",
            "Gravel road linking three hamlets to the county road",
        ],
    )?;
    d.check(format!(
        "households {}…, {}…, {}… registered; application {app} submitted",
        &hh[0][..8],
        &hh[1][..8],
        &hh[2][..8]
    ));
    d.end();

    // 4. Attestations; one pair conflicts.
    d.begin(4, "The poverty office and the finance bureau attest household incomes; they disagree about one household");
    for (i, h) in hh.iter().enumerate() {
        let subject = format!("hh:{h}");
        d.tx(
            "poverty-office",
            "attester",
            None,
            &[
                "attest",
                "--subject",
                &subject,
                "--claim",
                "income-band",
                "--value",
                "code:below-poverty-line",
            ],
        )?;
        let other = if i == 2 {
            "code:above-poverty-line"
        } else {
            "code:below-poverty-line"
        };
        d.tx(
            "finance-bureau",
            "attester",
            None,
            &[
                "attest",
                "--subject",
                &subject,
                "--claim",
                "income-band",
                "--value",
                other,
            ],
        )?;
    }
    let anomalies = d.query("audit-office", &["anomalies", "--open"])?;
    let held_hh = &hh[2];
    let anomaly_id = anomalies
        .as_array()
        .and_then(|a| {
            a.iter().find(|x| {
                x["subject"].to_string().contains(held_hh.as_str())
                    && x["kind"].to_string().contains("conflicting")
            })
        })
        .and_then(|x| x["id"].as_u64())
        .ok_or_else(|| {
            anyhow!("no open conflicting-attestation anomaly for household {held_hh}: {anomalies}")
        })?;
    d.check(format!("anomaly {anomaly_id} (conflicting attestation) is open against household {}…; its payments are held", &held_hh[..8]));
    d.end();

    // 5. Approvals.
    d.begin(
        5,
        "The poverty office and the development bank approve the application",
    );
    d.tx(
        "poverty-office",
        "approver",
        None,
        &[
            "approve-application",
            "--application",
            &app,
            "--note",
            "Fits the county plan",
        ],
    )?;
    d.tx(
        "dev-bank",
        "approver",
        None,
        &[
            "approve-application",
            "--application",
            &app,
            "--note",
            "Costs checked",
        ],
    )?;
    let a = d.query("finance-bureau", &["application", &app])?;
    if a["status"] != "approved" {
        bail!("application {app} is {} after two approvals", a["status"]);
    }
    d.check(format!(
        "application {app} is approved (2 of 2 policy organisations)"
    ));
    d.end();

    // 6. The plan.
    let date_ms = wall_clock_ms() + d.date_delay_ms;
    let date = condition_time(date_ms);
    d.begin(
        6,
        "The poverty office commits 120,000.00 CNY in a plan of three tranches",
    );
    let t1 = "id=t1, amount=40000.00, to=org:county-unit, when=approvals(2, of: [poverty-office, dev-bank])".to_string();
    let t2 = format!("id=t2, amount=50000.00, to=org:county-unit, when=all(released(t1), attested(road-phase-1-complete, by: county-unit, subject: app:{app}))");
    let t3 = format!("id=t3, amount=30000.00, to=org:county-unit, when=all(after({date}), settled(t1), no_open_anomaly(app:{app}))");
    d.note("t1  40000.00 when approvals(2, of: [poverty-office, dev-bank])".into());
    d.note(
        "t2  50000.00 when t1 is released and the county unit attests the first road phase".into(),
    );
    d.note(format!(
        "t3  30000.00 when the date {date} has passed and t1 is settled"
    ));
    d.tx(
        "poverty-office",
        "program-officer",
        None,
        &[
            "create-plan",
            "--id",
            &plan,
            "--program",
            &program,
            "--application",
            &app,
            "--tranche",
            &t1,
            "--tranche",
            &t2,
            "--tranche",
            &t3,
        ],
    )?;
    let p: Program = serde_json::from_value(d.query("dev-bank", &["program", &program])?)?;
    if p.balances.committed.0 + p.balances.released.0 != 12_000_000 {
        bail!("after the plan the balances are {:?}", p.balances);
    }
    d.check("the plan's 120000.00 CNY moved from available to committed".into());
    d.end();

    // 7. Releases on their own.
    d.begin(7, "Releases happen on their own when their conditions hold");
    let r1 = d.wait_for("tranche t1's release", |d| {
        Ok(tranche_release(&d.plan("county-unit", &plan)?, "t1"))
    })?;
    d.check(format!(
        "t1 released (release {r1}) with no one submitting it: the approvals were already in"
    ));
    if tranche_release(&d.plan("county-unit", &plan)?, "t2").is_some() {
        bail!("t2 released before its milestone was attested");
    }
    d.tx(
        "county-unit",
        "attester",
        None,
        &[
            "attest",
            "--subject",
            &format!("app:{app}"),
            "--claim",
            "road-phase-1-complete",
            "--value",
            "code:inspected",
        ],
    )?;
    let r2 = d.wait_for("tranche t2's release", |d| {
        Ok(tranche_release(&d.plan("state-bank", &plan)?, "t2"))
    })?;
    d.check(format!(
        "t2 released (release {r2}) in the block after the milestone attestation"
    ));
    d.end();

    // 8. Settlement, and the date.
    d.begin(
        8,
        "The state bank settles; the date-conditioned tranche waits for its date",
    );
    d.tx(
        "state-bank",
        "disburser",
        None,
        &[
            "settle",
            "--release",
            &r1.to_string(),
            "--amount",
            "40000.00",
            "--bank-ref",
            &format!("SB-{tag}-0001"),
            "--program",
            &program,
        ],
    )?;
    if wall_clock_ms() + 2000 < date_ms {
        if tranche_release(&d.plan("state-bank", &plan)?, "t3").is_some() {
            bail!("t3 released before its date {date}");
        }
        d.check(format!("t3 still pending: its date {date} has not passed"));
        d.note(format!(
            "waiting about {} s for {date}…",
            (date_ms.saturating_sub(wall_clock_ms())) / 1000 + 1
        ));
    }
    let r3 = d.wait_for("tranche t3's release after its date", |d| {
        Ok(tranche_release(&d.plan("finance-bureau", &plan)?, "t3"))
    })?;
    let (tr, _) = d.trace("finance-bureau", &program)?;
    let rel3 = tr
        .releases
        .iter()
        .find(|r| r.id == r3)
        .ok_or_else(|| anyhow!("release {r3} missing from the trace"))?;
    if rel3.time.0 < date_ms - date_ms % 1000 {
        bail!("t3 was released at {} before its date {date}", rel3.time);
    }
    d.check(format!(
        "t3 released (release {r3}) at block time {} once {date} had passed",
        rel3.time
    ));
    d.tx(
        "state-bank",
        "disburser",
        None,
        &[
            "settle",
            "--release",
            &r2.to_string(),
            "--amount",
            "50000.00",
            "--bank-ref",
            &format!("SB-{tag}-0002"),
            "--program",
            &program,
        ],
    )?;
    d.tx(
        "state-bank",
        "disburser",
        None,
        &[
            "settle",
            "--release",
            &r3.to_string(),
            "--amount",
            "30000.00",
            "--bank-ref",
            &format!("SB-{tag}-0003"),
            "--program",
            &program,
        ],
    )?;
    d.check("all three releases settled by the bank (expenditure recorded)".into());
    d.end();

    // 9. Entitlements for two periods.
    d.begin(
        9,
        "Per-household winter subsidies: 500.00 CNY per period for two periods",
    );
    let start = wall_clock_ms();
    let period = format!("{}s", d.period_s);
    d.tx(
        "poverty-office",
        "program-officer",
        None,
        &[
            "set-entitlement",
            "--id",
            &ent,
            "--program",
            &program,
            "--amount",
            "500.00",
            "--period",
            &period,
            "--start",
            &start.to_string(),
            "--periods",
            "2",
            "--households",
            &hh.join(","),
        ],
    )?;
    let (paid0, paid1) = (hh[0].clone(), hh[1].clone());
    d.wait_for(
        "two periods paid to the households without anomalies",
        |d| {
            let (t, _) = d.trace("poverty-office", &program)?;
            Ok((paid_periods(&t, &ent, &paid0) == [0, 1]
                && paid_periods(&t, &ent, &paid1) == [0, 1])
            .then_some(()))
        },
    )?;
    let (t, _) = d.trace("poverty-office", &program)?;
    if !paid_periods(&t, &ent, held_hh).is_empty() {
        bail!("household {held_hh} was paid despite its open anomaly");
    }
    d.check("households 1 and 2 paid for periods 0 and 1, each once".into());
    d.check(format!(
        "household {}… held: anomaly {anomaly_id} is open",
        &held_hh[..8]
    ));
    d.end();

    // 10. Resolve the anomaly.
    d.begin(
        10,
        "Two people resolve the anomaly (the audit office reviews, the poverty office confirms); the held payments go out",
    );
    d.note(
        "a household anomaly holds every payment to the household, so one person alone cannot lift it"
            .into(),
    );
    d.tx(
        "audit-office",
        "auditor",
        None,
        &[
            "resolve-anomaly",
            "--anomaly",
            &anomaly_id.to_string(),
            "--note",
            "Field visit confirmed income below the line",
        ],
    )?;
    let (t, _) = d.trace("audit-office", &program)?;
    if !paid_periods(&t, &ent, held_hh).is_empty() {
        bail!("household {held_hh} was paid after one review; a second person must confirm");
    }
    d.check("after the first review the anomaly is still open and the payments held".into());
    d.tx(
        "poverty-office",
        "program-officer",
        None,
        &[
            "resolve-anomaly",
            "--anomaly",
            &anomaly_id.to_string(),
            "--note",
            "Confirmed against the village committee's income survey",
        ],
    )?;
    let held = held_hh.clone();
    d.wait_for("the held household's payments", |d| {
        let (t, _) = d.trace("audit-office", &program)?;
        Ok((paid_periods(&t, &ent, &held) == [0, 1]).then_some(()))
    })?;
    let anomalies = d.query("audit-office", &["anomalies"])?;
    let resolved = anomalies
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"].as_u64() == Some(anomaly_id)))
        .map(|x| x["status"].get("resolved").is_some())
        .unwrap_or(false);
    if !resolved {
        bail!("anomaly {anomaly_id} is not resolved");
    }
    d.check(format!(
        "household {}… paid both periods after anomaly {anomaly_id} was resolved",
        &held[..8]
    ));
    payment_proof(d, &program, &ent, &held)?;
    d.end();

    // The trace and balances, read at two different nodes.
    let (t, tv) = d.trace("dev-bank", &program)?;
    let (t2, _) = d.trace("audit-office", &program)?;
    if t.program.balances != t2.program.balances {
        bail!("the dev bank's and the audit office's nodes disagree on the balances");
    }
    let b = &t.program.balances;
    let expect = (
        20_000_000u64,
        7_700_000u64,
        0u64,
        12_300_000u64,
        12_000_000u64,
        0u64,
    );
    let got = (
        b.deposited.0,
        b.available.0,
        b.committed.0,
        b.released.0,
        b.settled.0,
        b.returned.0,
    );
    if got != expect {
        bail!("final balances {got:?}, expected {expect:?}");
    }
    let balances = serde_json::to_value(b)?;
    if !d.json {
        println!();
        println!("trace of {program} (read at the development bank's node):");
        for e in &t.ledger {
            println!(
                "  #{:<3} height {:<5} {:<22} {:>14}  {}",
                e.seq,
                e.height,
                serde_json::to_value(e.flow)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                money(e.amount),
                e.tx.map(|h| format!("tx {}", h.short()))
                    .unwrap_or_else(|| "end of block".into())
            );
        }
        println!("balances of {program}:");
        println!("  deposited {:>16}", money(b.deposited));
        println!("  available {:>16}", money(b.available));
        println!("  committed {:>16}", money(b.committed));
        println!("  released  {:>16}", money(b.released));
        println!("  settled   {:>16}", money(b.settled));
        println!("  returned  {:>16}", money(b.returned));
        println!("  deposited = available + committed + released + returned: holds");
    }

    // The auditor's replay of one node's data, read-only while it runs.
    let home = d.org("audit-office")?.home.clone();
    let audit = audit_replay(d, &home)?;
    Ok((program, balances, tv, audit))
}

/// The county office takes the proof of the held household's second
/// payment from the poverty office's node and checks it with no node at
/// all, against the genesis file (ADR 020).
fn payment_proof(d: &mut Demo, program: &str, ent: &str, household: &str) -> Result<()> {
    let node = d.org("poverty-office")?.api.clone();
    let genesis = d.org("audit-office")?.home.join("genesis.json");
    let file = d.dir.join(format!(
        "payment-proof-{program}-1-{}.json",
        &household[..8]
    ));
    let s = |p: &Path| p.display().to_string();
    let wrote = d.cli(&[
        "--node".into(),
        node,
        "proof".into(),
        "payment".into(),
        "--household".into(),
        household.into(),
        "--program".into(),
        program.into(),
        "--period".into(),
        "1".into(),
        "--entitlement".into(),
        ent.into(),
        "--out".into(),
        s(&file),
    ])?;
    let checked = d.cli(&[
        "proof".into(),
        "verify".into(),
        s(&file),
        "--genesis".into(),
        s(&genesis),
    ])?;
    if checked["receipt_code"] != wrote["receipt_code"]
        || checked["summary"]["household"].as_str() != Some(household)
    {
        bail!("the payment proof checked, but not as the payment asked for: {checked}");
    }
    d.check(format!(
        "its period-1 payment proven offline: `aidledger proof verify {} --genesis {}` (block {})",
        s(&file),
        s(&genesis),
        checked["summary"]["height"]
    ));
    Ok(())
}

fn audit_replay(d: &mut Demo, home: &Path) -> Result<Value> {
    if !d.json {
        println!();
        println!("the auditor replays the audit office's chain from genesis, trusting no node:");
    }
    let args = vec![
        "audit".to_string(),
        "replay".into(),
        "--home".into(),
        home.display().to_string(),
    ];
    let v = d.cli(&args)?;
    if !d.json {
        println!("  {}", serde_json::to_string(&v).unwrap_or_default());
        println!("  replay: every hash, signature, certificate and state root verified");
    }
    Ok(v)
}
