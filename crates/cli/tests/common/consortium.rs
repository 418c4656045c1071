//! A local consortium of real `aidledger` processes for the end-to-end
//! tests: lay it out and start it, find its organisations, wait on it, and
//! stop every node when the test ends, pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ok, run};

/// Stops every node of the testnet (and any extra process) on drop.
pub struct Testnet {
    pub dir: PathBuf,
    pub tmp: tempfile::TempDir,
    pub extra: Vec<Child>,
}

impl Testnet {
    /// `testnet init` and `testnet up` in a fresh temporary directory.
    pub fn up() -> Testnet {
        Testnet::up_with(&[])
    }

    /// As [`Testnet::up`], with more arguments for `testnet init`.
    pub fn up_with(init_args: &[&str]) -> Testnet {
        Testnet::up_env(init_args, &[])
    }

    /// As [`Testnet::up_with`], `testnet init` and every node run with
    /// extra environment variables (test knobs).
    pub fn up_env(init_args: &[&str], env: &[(&str, &str)]) -> Testnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        let net = Testnet {
            dir,
            tmp,
            extra: Vec::new(),
        };
        let mut args = vec!["testnet", "init", "--dir", net.d()];
        args.extend_from_slice(init_args);
        super::ok_env(&args, env);
        super::ok_env(&["testnet", "up", "--dir", net.d()], env);
        net
    }

    pub fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Stops every node with `testnet down` and checks how each stopped:
    /// by itself within the grace (not killed), with its store closed
    /// before it said "stopped cleanly", and nothing holding the store
    /// past the shutdown.
    pub fn down_cleanly(&self) {
        let out = ok(&["--output", "json", "testnet", "down", "--dir", self.d()]);
        let stopped: Value = serde_json::from_str(out.trim()).unwrap();
        for o in self.orgs() {
            let result = stopped
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == o.id.as_str())
                .and_then(|r| r["result"].as_str())
                .unwrap_or_default()
                .to_string();
            assert!(result.starts_with("stopped"), "{}: {result}", o.id);
            let log = std::fs::read_to_string(o.home.join("node.log")).unwrap();
            let tail: String = log.lines().rev().take(12).collect::<Vec<_>>().join("\n");
            let closed = log.rfind("store closed");
            let said = log.rfind("stopped cleanly");
            assert!(
                closed.is_some() && said.is_some() && closed < said,
                "{}: the store is closed before the node says it stopped; the log ends (last line first):\n{tail}",
                o.id
            );
            assert!(
                !log.contains("still held at shutdown"),
                "{}: the store was still held at shutdown:\n{tail}",
                o.id
            );
        }
    }

    pub fn orgs(&self) -> Vec<Org> {
        orgs(&self.dir)
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        for c in &mut self.extra {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = run(&["testnet", "down", "--dir", self.dir.to_str().unwrap_or("")]);
        // A failed test's consortium (logs, stores) is kept for a post
        // mortem when AIDLEDGER_TEST_KEEP names a directory to copy it to.
        if let (true, Some(to)) = (
            std::thread::panicking(),
            std::env::var_os("AIDLEDGER_TEST_KEEP"),
        ) {
            let to = std::path::Path::new(&to).join(format!("consortium-{}", std::process::id()));
            let copied = Command::new("cp")
                .arg("-a")
                .arg(self.tmp.path())
                .arg(&to)
                .status();
            eprintln!(
                "the failed test's consortium is kept at {} ({copied:?})",
                to.display()
            );
        }
    }
}

#[derive(Clone, Debug)]
pub struct Org {
    pub id: String,
    pub home: PathBuf,
    pub api: String,
    pub validator: bool,
    pub clients: Value,
}

/// The organisations of the testnet laid out in `dir`.
pub fn orgs(dir: &Path) -> Vec<Org> {
    let text = std::fs::read_to_string(dir.join("testnet.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| Org {
            id: o["id"].as_str().unwrap().to_string(),
            home: PathBuf::from(o["home"].as_str().unwrap()),
            api: o["api"].as_str().unwrap().to_string(),
            validator: o["validator"].as_bool().unwrap(),
            clients: o["clients"].clone(),
        })
        .collect()
}

#[allow(clippy::disallowed_methods)] // a test waits on the wall clock
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

pub fn pid_of(home: &Path) -> i32 {
    std::fs::read_to_string(home.join("node.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Sends `sig` (for example "-TERM") to a node process this test started.
pub fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Waits until no thread of the process is left: a zombie main thread
/// whose other threads are still exiting holds the process's files, the
/// store's lock among them.
pub fn wait_exit(pid: i32, secs: u64) {
    wait_until(&format!("pid {pid} to exit"), secs, || {
        aidledger_testnet::procs::gone(pid)
    });
}

/// `aidledger query status` of the node at `api`, if it answers.
pub fn status(api: &str) -> Option<Value> {
    let out = run(&["query", "status", "--node", api, "--output", "json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The node's committed height (0 if it does not answer).
pub fn height(api: &str) -> u64 {
    status(api).and_then(|s| s["height"].as_u64()).unwrap_or(0)
}

/// `aidledger query block h` at the node as JSON, if it has the block.
pub fn block_json(api: &str, h: u64) -> Option<Value> {
    let out = run(&[
        "query",
        "block",
        &h.to_string(),
        "--node",
        api,
        "--output",
        "json",
    ]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The hash and state root of block `h` at the node, if it has it.
pub fn block_at(api: &str, h: u64) -> Option<(String, String)> {
    let v = block_json(api, h)?;
    Some((
        v["hash"].as_str()?.to_string(),
        v["header"]["state_root"].as_str()?.to_string(),
    ))
}

/// `GET {api}{path}` as JSON, if the node answers 2xx in 20 s.
pub fn api_get(api: &str, path: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut r = agent.get(&format!("{api}{path}")).call().ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
}

/// The value of metric `name` (a line `name value`) in the node's
/// `/metrics`, if the node answers and exports it.
pub fn metric(api: &str, name: &str) -> Option<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let text = agent
        .get(&format!("{api}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A governance action proposed by `proposer`'s admin and approved by
/// `approver`'s (the testnet's threshold is two organisations), each with
/// `--wait`. `action` is the `gov-propose` subcommand and its arguments.
/// Returns the proposal's id; panics unless the approval executed it.
pub fn govern(proposer: &Org, approver: &Org, action: &[&str]) -> String {
    let admin = |o: &Org| o.clients["admin"].as_str().unwrap().to_string();
    let key = admin(proposer);
    let mut args = vec![
        "tx",
        "gov-propose",
        "--node",
        &proposer.api,
        "--key",
        &key,
        "--wait",
    ];
    args.extend_from_slice(action);
    let out = ok(&args);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("proposal "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no proposal id in: {out}"))
        .to_string();
    let out = ok(&[
        "tx",
        "gov-approve",
        "--node",
        &approver.api,
        "--key",
        &admin(approver),
        "--proposal",
        &id,
        "--wait",
    ]);
    assert!(
        out.contains(&format!("proposal {id} executed")),
        "proposal {id}: {out}"
    );
    id
}

/// `aidledger bench load` on the testnet in the background, bounded in
/// rate and time, its JSON lines written to `out`.
///
/// The generator is kept on one CPU (`--cpus`), the first this process may
/// use, so that its own budget is exercised; [`finish_load`] checks that
/// the report names it.
pub fn start_load(net: &Testnet, rate: u32, secs: u32, out: &Path) -> Child {
    let (rate, secs) = (rate.to_string(), secs.to_string());
    let cpu = first_allowed_cpu().to_string();
    super::bin()
        .args([
            "bench",
            "load",
            "--dir",
            net.d(),
            "--rate",
            &rate,
            "--duration",
            &secs,
            "--drain",
            "90",
            "--workers",
            "4",
            "--cpus",
            &cpu,
            "--output",
            "json",
        ])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The lowest CPU this process may run on (`Cpus_allowed_list` in
/// `/proc/self/status`, such as `0-1` or `2,5-7`).
fn first_allowed_cpu() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split([',', '-']).next().unwrap().parse().unwrap()
}

/// Waits for a [`start_load`] run and checks that it lost nothing and
/// applied nothing twice; returns its last report line.
pub fn finish_load(mut load: Child, out: &Path) -> Value {
    let st = load.wait().unwrap();
    let report = std::fs::read_to_string(out).unwrap();
    assert!(st.success(), "bench load failed: {report}");
    let last: Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(last["lost"].as_u64(), Some(0), "{last}");
    assert_eq!(last["duplicates"].as_u64(), Some(0), "{last}");
    // The report names a refusal's reason exactly when it counts one.
    assert!(last.get("last_refusal").is_some(), "{last}");
    assert_eq!(
        last["last_refusal"].is_null(),
        last["refused"].as_u64() == Some(0),
        "{last}"
    );
    let committed = last["committed"].as_u64().unwrap();
    assert!(committed > 0, "{last}");
    // Every committed transaction is in the latency histogram once.
    let h = &last["latency_histogram"];
    assert_eq!(h["total"].as_u64(), Some(committed), "{last}");
    let counted: u64 = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, committed, "{last}");
    // The generator stayed on its CPU and measured its own CPU time.
    let g = &last["generator"];
    assert_eq!(
        g["cpus"],
        serde_json::json!([first_allowed_cpu()]),
        "{last}"
    );
    assert!(g["cpu_ms"].as_f64().unwrap() > 0.0, "{last}");
    assert!(g["us_per_tx"].as_f64().unwrap() > 0.0, "{last}");
    last
}

/// `aidledger audit replay --home` on a node's home (it may be running);
/// panics unless the replay verified the chain. Returns its report.
pub fn replay_verified(home: &Path) -> Value {
    let out = ok(&[
        "audit",
        "replay",
        "--home",
        home.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["verified"], Value::Bool(true), "{r}");
    r
}

/// A free TCP port on 127.0.0.1 (for a node started outside the testnet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until every node reaches the highest height any of them has,
/// checks that they hold the same block there, and that the auditor's
/// replay of `orgs[0]`'s home verifies the chain.
pub fn every_node_agrees(orgs: &[Org]) {
    let target = orgs.iter().map(|o| height(&o.api)).max().unwrap();
    wait_until("every node at the same height", 120, || {
        orgs.iter().all(|o| height(&o.api) >= target)
    });
    let expect = block_at(&orgs[0].api, target).unwrap();
    for o in orgs {
        assert_eq!(block_at(&o.api, target).as_ref(), Some(&expect), "{}", o.id);
    }
    replay_verified(&orgs[0].home);
}

/// Installs `key_file` as the node key of `home` (keys/ made mode 0700,
/// as `aidledger init` makes it).
pub fn install_node_key(home: &Path, key_file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let keys = home.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(key_file, keys.join("node.json")).unwrap();
}

/// Stops the node of `o` (SIGTERM) and starts it again with `testnet up`,
/// with extra environment variables (test knobs) or none; waits until it
/// has caught up with the node at `leader`.
pub fn restart_node(net: &Testnet, o: &Org, env: &[(&str, &str)], leader: &str) {
    let pid = pid_of(&o.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    super::ok_env(&["testnet", "up", "--dir", net.d()], env);
    let target = height(leader);
    wait_until(&format!("{} back and caught up", o.id), 120, || {
        height(&o.api) >= target
    });
}

/// A new organisation's node, absent from the genesis: its home, set up
/// with `aidledger init` against the testnet's genesis and every member's
/// address, on free loopback ports. Returns the home, the API's URL and
/// the node key `init` generated.
pub fn new_org_home(net: &Testnet, org: &str) -> (PathBuf, String, String) {
    let testnet: Value =
        serde_json::from_str(&std::fs::read_to_string(net.dir.join("testnet.json")).unwrap())
            .unwrap();
    let home = net.tmp.path().join(org);
    let api_port = free_port();
    let api_listen = format!("127.0.0.1:{api_port}");
    let p2p = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let genesis = net.dir.join("genesis.json");
    let mut init: Vec<String> = ["--output", "json", "init", "--home"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    init.push(home.to_str().unwrap().to_string());
    for a in [
        "--org",
        org,
        "--genesis",
        genesis.to_str().unwrap(),
        "--p2p-listen",
        &p2p,
        "--api-listen",
        &api_listen,
    ] {
        init.push(a.to_string());
    }
    for o in testnet["orgs"].as_array().unwrap() {
        init.push("--peer".into());
        init.push(o["p2p"].as_str().unwrap().to_string());
    }
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    let out: Value = serde_json::from_str(&ok(&init)).unwrap();
    assert_eq!(out["listed_in_genesis_as"], Value::Null, "{out}");
    let key = out["node_key"].as_str().unwrap().to_string();
    (home, format!("http://{api_listen}"), key)
}

/// Governance adds organisation `id` (an implementing unit) to the
/// consortium: `proposer` proposes, `approver` approves.
pub fn add_org(proposer: &Org, approver: &Org, id: &str, name: &str) -> String {
    govern(
        proposer,
        approver,
        &[
            "add-org",
            "--id",
            id,
            "--name",
            name,
            "--kind",
            "implementing-unit",
        ],
    )
}
