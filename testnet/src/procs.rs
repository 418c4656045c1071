//! Local node processes for `testnet up|down|status`: start detached,
//! recognise our own by their command line, stop them politely.
//!
//! A pid from `<home>/node.pid` is only ever signalled if
//! `/proc/<pid>/cmdline` shows an `aidledger node run --home <home>`
//! process, so a stale pid file never leads to killing something else.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub fn pid_file(home: &Path) -> PathBuf {
    home.join("node.pid")
}

pub fn log_file(home: &Path) -> PathBuf {
    home.join("node.log")
}

/// The pid recorded in `<home>/node.pid`, if any.
pub fn read_pid(home: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file(home))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
}

/// The process's state letter from `/proc/<pid>/stat` (`R`, `S`, `Z`, ...),
/// or `None` if there is no such process.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// How many threads of the process are left (0 if it is gone).
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// The process's arguments, or `None` if it is gone or a zombie.
fn cmdline(pid: i32) -> Option<Vec<String>> {
    if matches!(state(pid)?, 'Z' | 'X') {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// True while a process whose main thread has exited (a zombie leader)
/// still has other threads exiting. Its files, the store's lock among
/// them, are released only when the last of them is gone, so a node
/// counts as stopped only then. `pid` must be one of ours, just
/// signalled: a gone process's pid is not looked up by name here.
pub fn still_exiting(pid: i32) -> bool {
    state(pid) == Some('Z') && threads(pid) > 1
}

/// True once no thread of the process is left: it is gone, or a zombie
/// (or dead) main thread alone, which holds no files any more.
pub fn gone(pid: i32) -> bool {
    match state(pid) {
        None => true,
        Some('Z' | 'X') => threads(pid) <= 1,
        Some(_) => false,
    }
}

/// Our node in `home` as `pid`, or what is left of it, still holds its
/// files (the store's lock, its ports).
fn holds_on(pid: i32, home: &Path) -> bool {
    is_our_node(pid, home) || still_exiting(pid)
}

/// True if `pid` is alive and is `aidledger node run --home <home>`.
pub fn is_our_node(pid: i32, home: &Path) -> bool {
    let Some(args) = cmdline(pid) else {
        return false;
    };
    let own = std::env::current_exe().ok();
    looks_like_our_node(&args, home, own.as_deref())
}

/// Whether a command line is a node in `home` that this tool may signal:
/// `node run --home <home>`, run by a program called aidledger or by this
/// very program. The nodes a testnet starts run this program's path
/// (`spawn_node`), so a binary installed or copied under another name still
/// stops what it started; without the second case it found "no node
/// running", and a caller that then removed the node's data did so under
/// a live node.
fn looks_like_our_node(args: &[String], home: &Path, own_exe: Option<&Path>) -> bool {
    let Some(program) = args.first() else {
        return false;
    };
    let ours = program.contains("aidledger") || own_exe.is_some_and(|e| Path::new(program) == e);
    let joined = args.join(" ");
    let home = home.display().to_string();
    ours && joined.contains("node run") && args.windows(2).any(|w| w[0] == "--home" && w[1] == home)
}

/// The pid of the running node in `home`, if there is one.
pub fn running(home: &Path) -> Option<i32> {
    read_pid(home).filter(|p| is_our_node(*p, home))
}

/// Starts `aidledger node run --home <home>` detached: its own process
/// group (Ctrl-C on the CLI does not reach it), output appended to
/// `<home>/node.log`, pid in `<home>/node.pid`.
pub fn spawn_node(home: &Path) -> Result<Child> {
    spawn_node_in(home, None)
}

/// Where and how a node starts inside a network namespace: `ip netns exec
/// <ns>` (which execs, so the pid is the node's), with address overrides.
#[derive(Debug, Clone)]
pub struct InNamespace {
    pub ns: String,
    pub env: Vec<(String, String)>,
}

/// glibc's malloc settings for the nodes a testnet starts, each kept if
/// the operator has set it (the operator guide recommends the same):
/// - at most two arenas: glibc gives each thread that allocates under
///   contention an arena of its own, up to eight per core, and keeps what
///   they once held. Two cut a loaded node's peak RSS by about 50 MB
///   (14 %) at the same CPU per transaction;
/// - a fixed mmap threshold of 256 KiB: by default glibc raises it each
///   time a large block is freed, up to 32 MiB, so a node's large
///   buffers (blocks, their encodings, sync answers) come from the heap
///   and leave holes it never gives back. After a load, a validator's
///   heap held 89 MB free of 208 MB; with a fixed 128 KiB threshold, 14
///   of 59. 256 KiB, not 128: the signature library's tables for a batch
///   of under about 95 signatures take up to about 240 KB, and at 128 KiB
///   every such batch cost an mmap, its page faults and a munmap (a batch
///   of 64 verified 12 % slower); the peak RSS did not move
///   (docs/benchmarks.md).
const MALLOC_ENV: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "262144"),
];

/// [`spawn_node`], optionally inside a network namespace.
pub fn spawn_node_in(home: &Path, netns: Option<&InNamespace>) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the aidledger executable")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file(home))
        .with_context(|| format!("cannot open {}", log_file(home).display()))?;
    let err = log.try_clone()?;
    let mut cmd = match netns {
        None => Command::new(exe),
        Some(n) => {
            let mut c = Command::new("ip");
            c.arg("netns").arg("exec").arg(&n.ns).arg(exe);
            c
        }
    };
    cmd.arg("node")
        .arg("run")
        .arg("--home")
        .arg(home)
        .env_remove("AIDLEDGER_NODE")
        // Each node's ports come from its own config.toml.
        .env_remove("AIDLEDGER_API_LISTEN")
        .env_remove("AIDLEDGER_P2P_LISTEN")
        .env_remove("AIDLEDGER_P2P_PEERS")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0);
    for (name, value) in MALLOC_ENV {
        if std::env::var_os(name).is_none() {
            cmd.env(name, value);
        }
    }
    if let Some(n) = netns {
        cmd.envs(n.env.iter().map(|(k, v)| (k, v)));
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start the node in {}", home.display()))?;
    std::fs::write(pid_file(home), format!("{}\n", child.id()))
        .with_context(|| format!("cannot write {}", pid_file(home).display()))?;
    Ok(child)
}

fn signal(pid: i32, sig: Signal) -> Result<()> {
    kill(Pid::from_raw(pid), sig).with_context(|| format!("cannot signal process {pid}"))
}

/// How a node was stopped.
pub enum Stopped {
    NotRunning,
    Terminated(i32),
    Killed(i32),
}

/// Stops the nodes in `homes`: SIGTERM to each of ours, up to `grace` for
/// them to exit, then SIGKILL. Removes the pid files.
pub fn stop_all(homes: &[PathBuf], grace: Duration) -> Result<Vec<Stopped>> {
    let mut out: Vec<Stopped> = Vec::with_capacity(homes.len());
    for home in homes {
        match running(home) {
            Some(pid) => {
                signal(pid, Signal::SIGTERM)?;
                out.push(Stopped::Terminated(pid));
            }
            None => out.push(Stopped::NotRunning),
        }
    }
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    loop {
        let alive = homes
            .iter()
            .zip(&out)
            .any(|(h, s)| matches!(s, Stopped::Terminated(p) if holds_on(*p, h)));
        if !alive || waited >= grace {
            break;
        }
        sleep(step);
        waited += step;
    }
    for (home, s) in homes.iter().zip(out.iter_mut()) {
        if let Stopped::Terminated(pid) = *s {
            if is_our_node(pid, home) {
                signal(pid, Signal::SIGKILL)?;
                *s = Stopped::Killed(pid);
            }
        }
    }
    // Give killed processes a moment to go away before their ports are reused.
    for _ in 0..20 {
        let alive = homes
            .iter()
            .zip(&out)
            .any(|(h, s)| matches!(s, Stopped::Killed(p) if holds_on(*p, h)));
        if !alive {
            break;
        }
        sleep(step);
    }
    for home in homes {
        if running(home).is_none() {
            let _ = std::fs::remove_file(pid_file(home));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{gone, looks_like_our_node, still_exiting};
    use std::path::Path;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    /// A node started by a binary under another name is still ours when
    /// that name is this program's path; nothing else without
    /// "aidledger" in its name is.
    #[test]
    fn a_node_of_this_program_is_ours_whatever_its_name() {
        let home = Path::new("/tmp/tn/state-bank");
        let own = Some(Path::new("/opt/bin/ledger-b"));
        let node = |program: &str| args(&format!("{program} node run --home /tmp/tn/state-bank"));
        assert!(looks_like_our_node(&node("/usr/bin/aidledger"), home, own));
        assert!(looks_like_our_node(&node("/opt/bin/ledger-b"), home, own));
        assert!(!looks_like_our_node(&node("/opt/bin/ledger-b"), home, None));
        assert!(!looks_like_our_node(&node("/usr/bin/other"), home, own));
        assert!(!looks_like_our_node(&node("/opt/bin/ledger-b2"), home, own));
        // Another node's home, or not a node at all.
        assert!(!looks_like_our_node(
            &args("/opt/bin/ledger-b node run --home /tmp/tn/dev-bank"),
            home,
            own
        ));
        assert!(!looks_like_our_node(
            &args("/opt/bin/ledger-b status --home /tmp/tn/state-bank"),
            home,
            own
        ));
        assert!(!looks_like_our_node(&[], home, own));
    }

    /// A running process is neither gone nor exiting; one that has exited
    /// but is not yet reaped (a zombie with its one thread) is gone; so is
    /// one reaped.
    #[test]
    fn a_zombie_with_no_thread_left_is_gone() {
        let me = std::process::id() as i32;
        assert!(!gone(me) && !still_exiting(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let mut waited = 0;
        while !gone(pid) {
            assert!(waited < 500, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        assert!(!still_exiting(pid));
        child.wait().unwrap();
        assert!(gone(pid));
    }
}
