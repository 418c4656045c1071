//! `aidledger testnet init|up|down|status`: a ready local consortium of
//! named member organisations, each with its own home, node key and
//! operator keys, on free loopback ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::thread::sleep;
use std::time::Duration;

use aidledger_contracts::model::{OrgKind, Params};
use aidledger_contracts::{GenesisAccount, GenesisOrg};
use aidledger_types::{ChainId, OrgId, Role, Text, Timestamp, Validator};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{netns, procs};
use aidledger_node::cli::genesis::{node_config, Draft, DraftValidators};
use aidledger_node::cli::keys::{create_private_dir, generate_into};
use aidledger_node::cli::net::peer_id;
use aidledger_node::cli::table::{print as print_table, table};
use aidledger_node::cli::{print_json, usage, Ctx};
use aidledger_node::client::Client;

#[derive(Subcommand, Debug)]
pub enum TestnetCmd {
    /// Lay out a consortium: homes, keys, genesis, configs, testnet.json.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Validating organisations (1 to 7).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=7))]
        validators: u8,
        /// First port of a contiguous range (two per organisation) [default: a free range].
        #[arg(long)]
        base_port: Option<u16>,
        /// Replace an existing testnet in DIR (its nodes must be stopped).
        #[arg(long)]
        force: bool,
        /// The chain's heartbeat: the longest an idle chain goes without a
        /// block (genesis parameter `idle_block_interval_ms`, 1 s to 7
        /// days). Short by default, so a development consortium visibly
        /// moves; a production genesis defaults to one hour.
        #[arg(long, value_name = "MS", default_value_t = TESTNET_IDLE_BLOCK_INTERVAL_MS,
              value_parser = clap::value_parser!(u64).range(1_000..=604_800_000))]
        idle_block_interval_ms: u64,
    },
    /// Start every node that is not running and wait until all answer.
    Up {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// How long to wait for every node's /health.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Stop the nodes started by `testnet up`.
    Down {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Height, view, leader and peers of every node.
    Status {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Fault drills under load: kill -9 and restart, SIGSTOP/SIGCONT and a
    /// partition, then check agreement, exactly-once and conservation.
    Drill(crate::drill::DrillArgs),
    /// The main job: a whole aid-fund lifecycle on a live local
    /// consortium, every step through this CLI, then the auditor's replay.
    Demo(crate::demo::DemoArgs),
}

/// `DIR/testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestnetFile {
    pub chain_id: String,
    pub genesis_hash: String,
    pub base_port: u16,
    pub orgs: Vec<TestnetOrg>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestnetOrg {
    pub id: String,
    pub name: String,
    pub kind: OrgKind,
    pub home: PathBuf,
    pub api: String,
    pub p2p: String,
    pub validator: bool,
    pub node_key: String,
    pub peer_id: String,
    /// Role name to operator key file.
    pub clients: BTreeMap<String, PathBuf>,
}

struct OrgSpec {
    id: String,
    name: String,
    kind: OrgKind,
    roles: &'static [Role],
    validator: bool,
}

/// The member organisations of a testnet with `n` validators.
fn org_specs(n: usize) -> Vec<OrgSpec> {
    use Role::*;
    let core: [(&str, &str, OrgKind, &'static [Role]); 4] = [
        (
            "state-bank",
            "State Bank",
            OrgKind::Bank,
            &[Admin, Disburser],
        ),
        (
            "dev-bank",
            "Agricultural Development Bank",
            OrgKind::DevelopmentBank,
            &[Admin, Approver, Disburser],
        ),
        (
            "poverty-office",
            "Poverty Alleviation Office",
            OrgKind::PovertyOffice,
            &[Admin, ProgramOfficer, Approver, Attester],
        ),
        (
            "finance-bureau",
            "Finance Bureau",
            OrgKind::FinanceBureau,
            &[Admin, Approver, Attester, ProgramOfficer],
        ),
    ];
    let mut out: Vec<OrgSpec> = core
        .iter()
        .enumerate()
        .map(|(i, (id, name, kind, roles))| OrgSpec {
            id: id.to_string(),
            name: name.to_string(),
            kind: *kind,
            roles,
            validator: i < n,
        })
        .collect();
    for i in 5..=n {
        out.push(OrgSpec {
            id: format!("province-bank-{i}"),
            name: format!("Province Bank {i}"),
            kind: OrgKind::Bank,
            roles: &[Admin, Approver, Disburser],
            validator: true,
        });
    }
    out.push(OrgSpec {
        id: "audit-office".into(),
        name: "Audit Office".into(),
        kind: OrgKind::Auditor,
        roles: &[Admin, Auditor, Attester],
        validator: false,
    });
    out.push(OrgSpec {
        id: "county-unit".into(),
        name: "County Implementation Unit".into(),
        kind: OrgKind::ImplementingUnit,
        roles: &[Admin, Registrar, Attester, ProgramOfficer],
        validator: false,
    });
    out
}

fn testnet_path(dir: &Path) -> PathBuf {
    dir.join("testnet.json")
}

pub fn read_testnet(dir: &Path) -> Result<TestnetFile> {
    let p = testnet_path(dir);
    if !p.exists() {
        bail!(
            "no testnet in {}: run `aidledger testnet init --dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    let text = aidledger_node::cli::args::read_small(&p)?;
    let mut t: TestnetFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a testnet file", p.display()))?;
    if netns::current_tag().is_some() {
        // Inside a namespace drill: every node lives at its namespace's
        // address, on the same ports.
        for (i, o) in t.orgs.iter_mut().enumerate() {
            o.api = rehost(&o.api, i)?;
            o.p2p = rehost(&o.p2p, i)?;
        }
    }
    Ok(t)
}

/// `s` (an API URL or a p2p multiaddr on 127.0.0.1) with the loopback
/// address replaced by node `i`'s namespace address.
fn rehost(s: &str, i: usize) -> Result<String> {
    let addr = netns::node_addr(i).to_string();
    if let Some(rest) = s.strip_prefix("http://127.0.0.1:") {
        return Ok(format!("http://{addr}:{rest}"));
    }
    if let Some(rest) = s.strip_prefix("/ip4/127.0.0.1/") {
        return Ok(format!("/ip4/{addr}/{rest}"));
    }
    bail!("{s} is not a loopback address of a testnet node")
}

/// How org `i` of `t` starts inside namespace layout `tag`: its listen
/// addresses and its peers' addresses, all in the layout's subnet.
fn namespace_launch(t: &TestnetFile, i: usize, tag: &str) -> Result<procs::InNamespace> {
    let o = &t.orgs[i];
    let api_port = o
        .api
        .rsplit(':')
        .next()
        .ok_or_else(|| anyhow::anyhow!("no port in {}", o.api))?;
    let p2p_listen = o
        .p2p
        .split("/p2p/")
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address in {}", o.p2p))?;
    let peers: Vec<&str> = t
        .orgs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, p)| p.p2p.as_str())
        .collect();
    Ok(procs::InNamespace {
        ns: netns::node_name(tag, i),
        env: vec![
            (
                "AIDLEDGER_API_LISTEN".into(),
                format!("{}:{api_port}", netns::node_addr(i)),
            ),
            ("AIDLEDGER_P2P_LISTEN".into(), p2p_listen.to_string()),
            ("AIDLEDGER_P2P_PEERS".into(), peers.join(",")),
        ],
    })
}

/// Ports recorded by testnets in `dir`'s sibling directories, so two
/// testnets laid out side by side never share a port.
fn sibling_ports(dir: &Path) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path == dir {
            continue;
        }
        if let Ok(t) = read_testnet(&path) {
            let n = t.orgs.len() as u16 * 2;
            out.extend((0..n).filter_map(|i| t.base_port.checked_add(i)));
        }
    }
    out
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port with `count` free consecutive ports after it.
fn pick_ports(dir: &Path, count: u16, base: Option<u16>) -> Result<u16> {
    let taken = sibling_ports(dir);
    let usable = |b: u16| -> Result<(), String> {
        for i in 0..count {
            let p = b
                .checked_add(i)
                .ok_or_else(|| format!("ports {b}.. run past 65535"))?;
            if taken.contains(&p) {
                return Err(format!(
                    "port {p} belongs to another testnet next to this one"
                ));
            }
            if !port_free(p) {
                return Err(format!("port {p} is in use"));
            }
        }
        Ok(())
    };
    if let Some(b) = base {
        if b < 1024 {
            return Err(usage("--base-port must be 1024 or more"));
        }
        usable(b).map_err(|e| usage(format!("--base-port {b}: {e}")))?;
        return Ok(b);
    }
    // Below Linux's ephemeral range (32768..), so outgoing connections
    // never take these ports.
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let b = rng.gen_range(20_000..32_000 - count);
        if usable(b).is_ok() {
            return Ok(b);
        }
    }
    bail!("found no {count} free consecutive ports in 20000..32000; pass --base-port")
}

fn random_chain_id() -> Result<ChainId> {
    let bytes: [u8; 3] = rand::random();
    Ok(ChainId::new(format!(
        "aidledger-testnet-{}",
        hex::encode(bytes)
    ))?)
}

/// A development testnet's heartbeat (see `testnet init --idle-block-interval-ms`).
pub const TESTNET_IDLE_BLOCK_INTERVAL_MS: u64 = 2_000;

fn init(
    ctx: &Ctx,
    dir: &Path,
    n: usize,
    base_port: Option<u16>,
    force: bool,
    idle_block_interval_ms: u64,
) -> Result<()> {
    let specs = org_specs(n);
    let mut targets: Vec<PathBuf> = vec![
        testnet_path(dir),
        dir.join("clients"),
        dir.join("genesis.json"),
    ];
    targets.extend(specs.iter().map(|s| dir.join(&s.id)));
    if let Ok(old) = read_testnet(dir) {
        if let Some(o) = old.orgs.iter().find(|o| procs::running(&o.home).is_some()) {
            bail!(
                "the testnet in {} is running ({} is up); stop it with `aidledger testnet down --dir {}`",
                dir.display(),
                o.id,
                dir.display()
            );
        }
        // Only ever remove what lies inside DIR.
        targets.extend(old.orgs.iter().map(|o| dir.join(&o.id)));
    }
    targets.sort();
    targets.dedup();
    let existing: Vec<&PathBuf> = targets.iter().filter(|p| p.exists()).collect();
    if !existing.is_empty() {
        if !force {
            bail!(
                "{} already holds a testnet ({} exists); use --force to replace it",
                dir.display(),
                existing[0].display()
            );
        }
        for p in existing {
            if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            }
            .with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let base = pick_ports(&dir, specs.len() as u16 * 2, base_port)?;
    let chain_id = random_chain_id()?;

    let mut orgs = Vec::new();
    let mut g_orgs = Vec::new();
    let mut accounts = Vec::new();
    let mut validators = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let org = OrgId::new(s.id.as_str())?;
        let home = dir.join(&s.id);
        create_private_dir(&home.join("data"))?;
        let node_key = generate_into(
            &home.join("keys").join("node.json"),
            &format!("node of {}", s.id),
        )?
        .public();
        let mut clients = BTreeMap::new();
        for role in s.roles {
            let path = dir
                .join("clients")
                .join(&s.id)
                .join(format!("{}.json", role.as_str()));
            let k = generate_into(&path, &format!("{} {}", s.id, role.as_str()))?;
            accounts.push(GenesisAccount {
                key: k.public(),
                org: org.clone(),
                roles: vec![*role],
            });
            clients.insert(role.as_str().to_string(), path);
        }
        if s.validator {
            validators.push(Validator {
                org: org.clone(),
                key: node_key,
            });
        }
        g_orgs.push(GenesisOrg {
            id: org,
            name: Text::new(s.name.as_str())?,
            kind: s.kind,
            node_keys: if s.validator { vec![] } else { vec![node_key] },
        });
        let p2p_port = base + 2 * i as u16;
        let api_port = p2p_port + 1;
        let pid = peer_id(&node_key)?;
        orgs.push(TestnetOrg {
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind,
            home,
            api: format!("http://127.0.0.1:{api_port}"),
            p2p: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{pid}"),
            validator: s.validator,
            node_key: node_key.to_hex(),
            peer_id: pid,
            clients,
        });
    }
    let time = Timestamp(aidledger_node::cli::wall_clock_ms() / 1000 * 1000);
    let params = Params {
        governance_threshold: 2,
        idle_block_interval_ms,
        ..Params::default()
    };
    let mut draft = Draft::new(chain_id.clone(), time, params)?;
    draft.orgs = g_orgs;
    draft.accounts = accounts;
    draft.validators = DraftValidators { validators };
    let genesis = draft
        .to_genesis()
        .context("the testnet genesis is invalid")?;
    draft.write(&dir.join("genesis.json"))?;

    for (i, o) in orgs.iter().enumerate() {
        std::fs::copy(dir.join("genesis.json"), o.home.join("genesis.json"))
            .with_context(|| format!("cannot write {}", o.home.join("genesis.json").display()))?;
        let peers = orgs
            .iter()
            .filter(|p| p.id != o.id)
            .map(|p| p.p2p.clone())
            .collect();
        let p2p_port = base + 2 * i as u16;
        let mut cfg = node_config(
            &OrgId::new(o.id.as_str())?,
            &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
            peers,
            &format!("127.0.0.1:{}", p2p_port + 1),
        );
        // A development consortium: the fault drills use the admin API.
        cfg.api.admin = true;
        cfg.check()?;
        cfg.write(&o.home)?;
    }
    let file = TestnetFile {
        chain_id: chain_id.to_string(),
        genesis_hash: genesis.hash().to_hex(),
        base_port: base,
        orgs,
    };
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    std::fs::write(testnet_path(&dir), text)
        .with_context(|| format!("cannot write {}", testnet_path(&dir).display()))?;

    if ctx.json() {
        print_json(&file)?;
    } else {
        println!(
            "testnet {} in {} ({} validators, genesis {})",
            file.chain_id,
            dir.display(),
            n,
            genesis.hash().short()
        );
        let mut t = table(&["ORG", "ROLE", "API", "P2P PORT"], &[3]);
        for (i, o) in file.orgs.iter().enumerate() {
            t.add_row([
                o.id.clone(),
                if o.validator { "validator" } else { "observer" }.to_string(),
                o.api.clone(),
                (base + 2 * i as u16).to_string(),
            ]);
        }
        print_table(&t);
        println!("operator keys: {}", dir.join("clients").display());
        println!(
            "start it with: aidledger testnet up --dir {}",
            dir.display()
        );
    }
    Ok(())
}

/// Starts every node of the testnet that is not running and waits until
/// all answer `/health`. Returns each node's pid, in `t.orgs` order, and
/// the processes it started.
pub fn start_missing(dir: &Path, wait_secs: u64) -> Result<(Vec<i32>, Vec<Child>)> {
    start_selected(dir, wait_secs, |_| true)
}

/// [`start_missing`] for the organisations `pick` selects only (the bench
/// suite runs the validators alone); the others are left as they are.
pub fn start_selected(
    dir: &Path,
    wait_secs: u64,
    pick: impl Fn(&TestnetOrg) -> bool,
) -> Result<(Vec<i32>, Vec<Child>)> {
    let mut t = read_testnet(dir)?;
    let tag = netns::current_tag();
    let launches = match &tag {
        Some(tag) => (0..t.orgs.len())
            .map(|i| namespace_launch(&t, i, tag).map(Some))
            .collect::<Result<Vec<_>>>()?,
        None => vec![None; t.orgs.len()],
    };
    let (orgs, launches): (Vec<TestnetOrg>, Vec<Option<procs::InNamespace>>) = t
        .orgs
        .into_iter()
        .zip(launches)
        .filter(|(o, _)| pick(o))
        .unzip();
    t.orgs = orgs;
    let mut children: Vec<Option<Child>> = Vec::with_capacity(t.orgs.len());
    let mut pids = Vec::with_capacity(t.orgs.len());
    for (o, launch) in t.orgs.iter().zip(&launches) {
        if let Some(pid) = procs::running(&o.home) {
            children.push(None);
            pids.push(pid);
            continue;
        }
        let child = procs::spawn_node_in(&o.home, launch.as_ref())?;
        pids.push(child.id() as i32);
        children.push(Some(child));
    }
    let clients = t
        .orgs
        .iter()
        .map(|o| Client::new(&o.api))
        .collect::<Result<Vec<_>>>()?;
    let mut healthy = vec![false; t.orgs.len()];
    let step = Duration::from_millis(250);
    let rounds = wait_secs.saturating_mul(4).max(1);
    for _ in 0..rounds {
        for (i, o) in t.orgs.iter().enumerate() {
            if healthy[i] {
                continue;
            }
            if let Some(child) = children[i].as_mut() {
                if let Some(status) = child.try_wait()? {
                    let _ = std::fs::remove_file(procs::pid_file(&o.home));
                    let log = procs::log_file(&o.home);
                    bail!(
                        "the node of {} exited ({status}); the end of its log ({}):\n{}",
                        o.id,
                        log.display(),
                        log_tail(&log)
                    );
                }
            }
            healthy[i] = clients[i].healthy();
        }
        if healthy.iter().all(|h| *h) {
            break;
        }
        sleep(step);
    }
    let slow: Vec<String> = t
        .orgs
        .iter()
        .zip(&healthy)
        .filter(|(_, h)| !**h)
        .map(|(o, _)| format!("{} (log {})", o.id, procs::log_file(&o.home).display()))
        .collect();
    if !slow.is_empty() {
        bail!(
            "not healthy after {wait_secs} s: {}; the nodes keep running (stop them with `aidledger testnet down --dir {}`)",
            slow.join(", "),
            dir.display()
        );
    }
    Ok((pids, children.into_iter().flatten().collect()))
}

/// The last lines of a node's log, for an error that names it: a test's
/// temporary directory, log included, is gone by the time anyone looks.
/// At most 12 lines of the last 4 KiB, indented.
fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL_BYTES: u64 = 4096;
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut buf = Vec::new();
        f.take(TAIL_BYTES).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let from = lines.len().saturating_sub(12);
            lines[from..]
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("  (cannot read it: {e})"),
    }
}

fn up(ctx: &Ctx, dir: &Path, wait_secs: u64) -> Result<()> {
    let t = read_testnet(dir)?;
    let (pids, _started) = start_missing(dir, wait_secs)?;
    if ctx.json() {
        let rows: Vec<serde_json::Value> = t
            .orgs
            .iter()
            .zip(&pids)
            .map(|(o, pid)| {
                serde_json::json!({"id": o.id, "api": o.api, "pid": pid, "validator": o.validator})
            })
            .collect();
        print_json(&rows)?;
    } else {
        let mut rows = table(&["ORG", "API", "PID", "VALIDATOR"], &[2]);
        for (o, pid) in t.orgs.iter().zip(&pids) {
            rows.add_row([
                o.id.clone(),
                o.api.clone(),
                pid.to_string(),
                if o.validator { "yes" } else { "no" }.to_string(),
            ]);
        }
        print_table(&rows);
    }
    Ok(())
}

fn down(ctx: &Ctx, dir: &Path) -> Result<()> {
    let t = read_testnet(dir)?;
    let homes: Vec<PathBuf> = t.orgs.iter().map(|o| o.home.clone()).collect();
    let stopped = procs::stop_all(&homes, Duration::from_secs(10))?;
    let rows: Vec<(String, String)> = t
        .orgs
        .iter()
        .zip(&stopped)
        .map(|(o, s)| {
            let what = match s {
                procs::Stopped::NotRunning => "not running".to_string(),
                procs::Stopped::Terminated(p) => format!("stopped (pid {p})"),
                procs::Stopped::Killed(p) => format!("killed after 10 s (pid {p})"),
            };
            (o.id.clone(), what)
        })
        .collect();
    if ctx.json() {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, s)| serde_json::json!({"id": id, "result": s}))
            .collect();
        print_json(&v)?;
    } else {
        for (id, s) in rows {
            println!("{id:<16} {s}");
        }
    }
    Ok(())
}

fn status(ctx: &Ctx, dir: &Path) -> Result<()> {
    let t = read_testnet(dir)?;
    let mut rows = Vec::new();
    for o in &t.orgs {
        let pid = procs::running(&o.home);
        let st = aidledger_node::cli::query::node_status(&o.api);
        rows.push((o, pid, st));
    }
    if ctx.json() {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(o, pid, st)| match st {
                Ok(s) => serde_json::json!({
                    "id": o.id, "api": o.api, "validator": o.validator, "pid": pid,
                    "up": true, "height": s.height, "view": s.view, "leader": s.leader,
                    "peers": s.peers, "block_hash": s.block_hash, "state_root": s.state_root,
                }),
                Err(e) => serde_json::json!({
                    "id": o.id, "api": o.api, "validator": o.validator, "pid": pid,
                    "up": false, "error": format!("{e:#}"),
                }),
            })
            .collect();
        print_json(&v)?;
        return Ok(());
    }
    let mut t = table(
        &[
            "ORG", "ROLE", "PID", "HEIGHT", "VIEW", "LEADER", "PEERS", "API",
        ],
        &[2, 3, 4, 6],
    );
    for (o, pid, st) in rows {
        let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let role = if o.validator { "validator" } else { "observer" };
        match st {
            Ok(s) => t.add_row([
                o.id.clone(),
                role.to_string(),
                pid,
                s.height.to_string(),
                s.view.to_string(),
                s.leader
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.peers.to_string(),
                o.api.clone(),
            ]),
            Err(_) => t.add_row([
                o.id.clone(),
                role.to_string(),
                pid,
                "down".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                o.api.clone(),
            ]),
        };
    }
    print_table(&t);
    Ok(())
}

pub fn run(ctx: &Ctx, cmd: TestnetCmd) -> Result<ExitCode> {
    match cmd {
        TestnetCmd::Init {
            dir,
            validators,
            base_port,
            force,
            idle_block_interval_ms,
        } => init(
            ctx,
            &dir,
            usize::from(validators),
            base_port,
            force,
            idle_block_interval_ms,
        )?,
        TestnetCmd::Up { dir, wait_secs } => up(ctx, &dir, wait_secs)?,
        TestnetCmd::Down { dir } => down(ctx, &dir)?,
        TestnetCmd::Status { dir } => status(ctx, &dir)?,
        TestnetCmd::Drill(a) => return crate::drill::run(ctx, a),
        TestnetCmd::Demo(a) => return crate::demo::run(ctx, a),
    }
    Ok(ExitCode::SUCCESS)
}
