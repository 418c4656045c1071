//! Per-seed choice of cluster size, network faults and byzantine replicas.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Network and process faults, active during the fault period only
/// (clock skew stays: clocks are not healed).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Fault {
    Loss,
    Dup,
    Reorder,
    Partition,
    Crash,
    Skew,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Loss,
        Fault::Dup,
        Fault::Reorder,
        Fault::Partition,
        Fault::Crash,
        Fault::Skew,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Fault::Loss => "loss",
            Fault::Dup => "dup",
            Fault::Reorder => "reorder",
            Fault::Partition => "partition",
            Fault::Crash => "crash",
            Fault::Skew => "skew",
        }
    }
}

/// Byzantine behaviours; at most f replicas get one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Byz {
    /// As primary, sends different pre-prepares to different peers; votes
    /// for every block it sees.
    Equivocator,
    /// Prepares and commits every block it sees, plus random ones.
    DoubleVoter,
    /// Two replicas share one key, both running honest code.
    Twins,
    /// Sends random bytes, corrupted copies and ill-formed signed messages.
    Garbage,
}

impl Byz {
    pub const ALL: [Byz; 4] = [Byz::Equivocator, Byz::DoubleVoter, Byz::Twins, Byz::Garbage];
    pub fn name(self) -> &'static str {
        match self {
            Byz::Equivocator => "equivocator",
            Byz::DoubleVoter => "double-voter",
            Byz::Twins => "twins",
            Byz::Garbage => "garbage",
        }
    }
}

/// A crash of validator `validator`'s (first) process at `at_ms`, restarted
/// `down_ms` later (or at the end of the fault period).
#[derive(Clone, Debug)]
pub struct Crash {
    pub at_ms: u64,
    pub validator: u16,
    pub down_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub n: usize,
    pub faults: Vec<Fault>,
    pub byzantine: Vec<(u16, Byz)>,
    pub loss_pct: u32,
    pub dup_pct: u32,
    pub reorder_max_ms: u64,
    pub skew_ms: Vec<i64>,
    pub crashes: Vec<Crash>,
    /// (start, end) of partition periods; the split is drawn at the start.
    pub partitions: Vec<(u64, u64)>,
    /// Length of the faulty period; then everything heals.
    pub fault_ms: u64,
}

pub const FAULT_MS: u64 = 30_000;

impl Scenario {
    /// Draws a scenario. `byzantine` allows byzantine replicas.
    pub fn pick(rng: &mut ChaCha8Rng, byzantine: bool, faults: bool) -> Scenario {
        let n = match rng.gen_range(0..20) {
            0 => 1,
            1 => 2,
            2 => 3,
            3..=15 => 4,
            16..=17 => 5,
            _ => 7,
        };
        let f = (n - 1) / 3;
        let mut s = Scenario {
            n,
            faults: Vec::new(),
            byzantine: Vec::new(),
            loss_pct: 0,
            dup_pct: 0,
            reorder_max_ms: 0,
            skew_ms: vec![0; n],
            crashes: Vec::new(),
            partitions: Vec::new(),
            fault_ms: FAULT_MS,
        };
        if faults {
            for fault in Fault::ALL {
                if rng.gen_bool(0.4) {
                    s.faults.push(fault);
                }
            }
        }
        for fault in s.faults.clone() {
            match fault {
                Fault::Loss => s.loss_pct = rng.gen_range(1..=25),
                Fault::Dup => s.dup_pct = rng.gen_range(1..=20),
                Fault::Reorder => s.reorder_max_ms = rng.gen_range(50..=3_000),
                Fault::Skew => {
                    for k in s.skew_ms.iter_mut() {
                        *k = rng.gen_range(-2_000..=2_000);
                    }
                }
                Fault::Crash => {
                    for _ in 0..rng.gen_range(1..=4) {
                        s.crashes.push(Crash {
                            at_ms: rng.gen_range(0..FAULT_MS),
                            validator: rng.gen_range(0..n) as u16,
                            down_ms: rng.gen_range(100..=10_000),
                        });
                    }
                }
                Fault::Partition => {
                    let mut t = rng.gen_range(0..FAULT_MS / 2);
                    for _ in 0..rng.gen_range(1..=3) {
                        let end = (t + rng.gen_range(1_000..=12_000)).min(FAULT_MS);
                        s.partitions.push((t, end));
                        t = end + rng.gen_range(500..5_000);
                        if t >= FAULT_MS {
                            break;
                        }
                    }
                }
            }
        }
        if byzantine && f > 0 {
            let count = if rng.gen_bool(0.8) {
                f
            } else {
                rng.gen_range(0..=f)
            };
            let mut ids: Vec<u16> = (0..n as u16).collect();
            for _ in 0..count {
                let i = ids.remove(rng.gen_range(0..ids.len()));
                s.byzantine
                    .push((i, Byz::ALL[rng.gen_range(0..Byz::ALL.len())]));
            }
            s.byzantine.sort();
        }
        s
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<&str> = self.faults.iter().map(|x| x.name()).collect();
        let byz: Vec<String> = self
            .byzantine
            .iter()
            .map(|(i, b)| format!("{}@{i}", b.name()))
            .collect();
        write!(
            f,
            "n={} faults=[{}] byzantine=[{}]",
            self.n,
            faults.join(","),
            byz.join(",")
        )
    }
}
