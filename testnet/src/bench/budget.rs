//! The load generator's own core budget.
//!
//! A load generator on the machine it loads takes CPU from the nodes it
//! measures, and when it is starved itself it submits late and sees commits
//! late, so it measures itself. `--cpus` keeps it, with every thread it
//! starts, on the CPUs named; and every run reports the CPU time the
//! generator used, so a reader can tell how much of the machine it took.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::Pid;
use serde::Serialize;

/// The longest CPU list accepted on the command line.
const CPU_LIST_MAX_CHARS: usize = 256;

/// Parses a CPU list as `taskset -c` takes it: numbers and ranges separated
/// by commas (`0`, `2-3`, `0,2-3`). Sorted, without repeats; every CPU is
/// below the kernel interface's limit.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    if s.len() > CPU_LIST_MAX_CHARS {
        return Err(format!(
            "a CPU list is at most {CPU_LIST_MAX_CHARS} characters"
        ));
    }
    let limit = CpuSet::count();
    let num = |t: &str| -> Result<usize, String> {
        let n: usize = t
            .trim()
            .parse()
            .map_err(|_| format!("`{t}` is not a CPU number (a list looks like 0,2-3)"))?;
        if n >= limit {
            return Err(format!("CPU {n} is past the limit of {}", limit - 1));
        }
        Ok(n)
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("the range {a}-{b} runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err("the CPU list is empty".into());
    }
    Ok(out)
}

/// The calling thread's CPUs, as a list.
fn allowed() -> Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).context("reading this thread's CPUs")?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Keeps the calling thread, and every thread it starts while this lives,
/// on the given CPUs; puts the thread back on its former CPUs when dropped.
pub struct Pinned {
    previous: CpuSet,
}

impl Pinned {
    /// Pins the calling thread. Every CPU must be one this process may use.
    pub fn to(cpus: &[usize]) -> Result<Pinned> {
        let previous = sched_getaffinity(Pid::from_raw(0)).context("reading this thread's CPUs")?;
        let mut set = CpuSet::new();
        for &c in cpus {
            if !previous.is_set(c).unwrap_or(false) {
                let ok: Vec<String> = allowed()?.iter().map(|c| c.to_string()).collect();
                return Err(anyhow!(
                    "CPU {c} is not available to this process (it may use {})",
                    ok.join(",")
                ));
            }
            set.set(c).map_err(|e| anyhow!("CPU {c}: {e}"))?;
        }
        sched_setaffinity(Pid::from_raw(0), &set).context("pinning the load generator")?;
        Ok(Pinned { previous })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // Best effort: a failure leaves the thread on the narrower set,
        // which is still a valid set.
        let _ = sched_setaffinity(Pid::from_raw(0), &self.previous);
    }
}

/// CPU time (user and system) this process has used so far, all threads.
pub fn process_cpu() -> Result<Duration> {
    let u = getrusage(UsageWho::RUSAGE_SELF).context("reading this process's CPU time")?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(d(u.user_time()) + d(u.system_time()))
}

/// What the generator itself used during a run's submission and drain.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeneratorUse {
    /// The CPUs it was kept on (`--cpus`), or none when it ran anywhere.
    pub cpus: Option<Vec<usize>>,
    /// CPU time of the generator (every thread: submitters, the block
    /// follower, the re-submitter), in milliseconds.
    pub cpu_ms: f64,
    /// The same per submitted transaction, in microseconds.
    pub us_per_tx: f64,
    /// CPU time over wall time: how many cores it kept busy on average.
    pub cores: f64,
}

impl GeneratorUse {
    pub fn of(cpus: Option<Vec<usize>>, cpu: Duration, wall: Duration, txs: u64) -> Self {
        let cpu_ms = cpu.as_secs_f64() * 1e3;
        GeneratorUse {
            cpus,
            cpu_ms,
            us_per_tx: cpu_ms * 1e3 / txs.max(1) as f64,
            cores: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_taskset_and_bad_ones_say_why() {
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("3,0-1,1"), Ok(vec![0, 1, 3]));
        assert_eq!(parse_cpu_list(" 2 - 3 "), Ok(vec![2, 3]));
        for (bad, why) in [
            ("", "not a CPU number"),
            ("a", "not a CPU number"),
            ("1,", "not a CPU number"),
            ("-1", "not a CPU number"),
            ("3-1", "runs backwards"),
            ("99999", "past the limit"),
        ] {
            let e = parse_cpu_list(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(parse_cpu_list(&"0,".repeat(200))
            .unwrap_err()
            .contains("at most"));
    }

    #[test]
    fn pinning_narrows_the_thread_and_dropping_restores_it() {
        // On a thread of its own, so the test harness's threads are untouched.
        std::thread::spawn(|| {
            let before = allowed().unwrap();
            {
                let _p = Pinned::to(&before[..1]).unwrap();
                assert_eq!(allowed().unwrap(), before[..1]);
                // A thread started while pinned inherits the set.
                let inner = std::thread::spawn(|| allowed().unwrap()).join().unwrap();
                assert_eq!(inner, before[..1]);
            }
            assert_eq!(allowed().unwrap(), before);
            // A CPU outside the process's set is refused and changes nothing.
            let outside = (0..CpuSet::count()).find(|c| !before.contains(c));
            if let Some(c) = outside {
                let e = Pinned::to(&[c]).err().unwrap().to_string();
                assert!(e.contains("not available"), "{e}");
                assert_eq!(allowed().unwrap(), before);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn use_per_transaction_and_cores() {
        let u = GeneratorUse::of(None, Duration::from_secs(2), Duration::from_secs(4), 1000);
        assert!((u.cpu_ms - 2000.0).abs() < 1e-9);
        assert!((u.us_per_tx - 2000.0).abs() < 1e-9);
        assert!((u.cores - 0.5).abs() < 1e-9);
        // Nothing submitted: no division by zero.
        assert!(GeneratorUse::of(None, Duration::ZERO, Duration::ZERO, 0).us_per_tx == 0.0);
    }
}
