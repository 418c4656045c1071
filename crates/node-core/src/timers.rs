//! The consensus core's pending timeouts.

use std::collections::BTreeMap;

use aidledger_consensus::TimeoutKind;

/// Most pending consensus timeouts. The core needs only those of its
/// current height and view; the rest are stale and it ignores them.
pub const TIMERS_MAX: usize = 64;

/// A timeout the core asked for: (height, view, kind).
pub type TimerKey = (u64, u64, TimeoutKind);

/// One per (height, view, kind), a later schedule of the same key
/// replacing the earlier, at most [`TIMERS_MAX`] (the lowest heights and
/// views go first). Deadlines are monotonic milliseconds.
#[derive(Default, Debug)]
pub struct Timers {
    pending: BTreeMap<TimerKey, u64>,
}

impl Timers {
    pub fn schedule(&mut self, key: TimerKey, at_ms: u64) {
        self.pending.insert(key, at_ms);
        while self.pending.len() > TIMERS_MAX {
            self.pending.pop_first();
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.values().min().copied()
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Removes and returns the timeouts due at `now_ms`, earliest first.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<TimerKey> {
        let mut due: Vec<(u64, TimerKey)> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now_ms)
            .map(|(k, at)| (*at, *k))
            .collect();
        due.sort();
        for (_, k) in &due {
            self.pending.remove(k);
        }
        due.into_iter().map(|(_, k)| k).collect()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_one_per_key_bounded_and_fire_in_deadline_order() {
        let mut t = Timers::default();
        assert_eq!(t.next_deadline(), None);
        t.schedule((5, 0, TimeoutKind::Round), 300);
        t.schedule((5, 1, TimeoutKind::ViewChange), 100);
        // The same key again replaces the deadline; it does not add one.
        t.schedule((5, 0, TimeoutKind::Round), 200);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_deadline(), Some(100));
        assert!(t.take_due(50).is_empty());
        assert_eq!(
            t.take_due(250),
            vec![(5, 1, TimeoutKind::ViewChange), (5, 0, TimeoutKind::Round)]
        );
        assert_eq!(t.next_deadline(), None);
        // A flood of schedules keeps only the newest heights and views.
        for v in 0..1000u64 {
            t.schedule((9, v, TimeoutKind::ViewChange), 10);
        }
        assert_eq!(t.len(), TIMERS_MAX);
        assert!(t
            .pending
            .keys()
            .all(|(_, v, _)| *v >= 1000 - TIMERS_MAX as u64));
    }
}
