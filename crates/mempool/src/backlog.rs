//! The backlog bound (ADR 023): how many pending transactions the pool
//! takes from clients, from the rate at which the chain has been
//! committing them.
//!
//! A fixed count cannot say whether a queue is short or long: 20,000
//! pending is three seconds of work for a chain that commits 6,000 tx/s
//! and fourteen for one that commits 1,400. The pool therefore measures
//! the transactions committed over the last [`RATE_WINDOW_MS`] (time is an
//! input, the pool's clock) and takes client transactions while fewer than
//! `backlog_ms` of that rate are pending, and never fewer than
//! `backlog_min_txs`, so a quiet chain still takes a burst big enough to
//! fill its blocks and so raise the rate it is measured by. Past the
//! limit, only accounts that already hold [`BACKLOG_SENDER_GRACE`]
//! pending transactions are refused, so one account's bulk work does not
//! shut out another's few.

use std::collections::VecDeque;

/// Past the backlog limit, an account with fewer than this many
/// transactions pending is still taken (see
/// [`crate::Mempool::backlog_refusal`]).
pub const BACKLOG_SENDER_GRACE: usize = 16;

/// How far back the commit rate looks.
pub const RATE_WINDOW_MS: u64 = 10_000;
/// Commits are counted in buckets of this width, so the meter holds at
/// most `RATE_WINDOW_MS / BUCKET_MS + 1` entries whatever the block rate.
const BUCKET_MS: u64 = 100;

/// Transactions committed per bucket of time, over the last window.
#[derive(Clone, Debug, Default)]
pub(crate) struct DrainMeter {
    /// (bucket start in ms, transactions committed in it), oldest first.
    buckets: VecDeque<(u64, u64)>,
    /// The sum of the buckets' counts.
    total: u64,
}

impl DrainMeter {
    /// Counts `txs` committed at `now_ms` (never earlier than a previous
    /// call's time: the pool's clock only moves forward).
    pub(crate) fn record(&mut self, now_ms: u64, txs: u64) {
        self.advance(now_ms);
        if txs == 0 {
            return;
        }
        let start = now_ms - now_ms % BUCKET_MS;
        match self.buckets.back_mut() {
            Some((b, n)) if *b == start => *n += txs,
            _ => self.buckets.push_back((start, txs)),
        }
        self.total += txs;
    }

    /// Moves the window's end to `now_ms`: drops the buckets that ended a
    /// whole window before it.
    pub(crate) fn advance(&mut self, now_ms: u64) {
        while let Some(&(b, n)) = self.buckets.front() {
            if b.saturating_add(BUCKET_MS).saturating_add(RATE_WINDOW_MS) > now_ms {
                break;
            }
            self.buckets.pop_front();
            self.total -= n;
        }
    }

    /// Transactions committed in the window that ends at the time last
    /// given to [`DrainMeter::advance`] or [`DrainMeter::record`].
    pub(crate) fn committed(&self) -> u64 {
        self.total
    }

    /// Entries held (for the bound's test).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

/// The client limit for a pool that committed `committed` transactions in
/// the last window: `backlog_ms` of that rate, at least `min_txs`, at most
/// `max_txs`.
pub(crate) fn limit(committed: u64, backlog_ms: u64, min_txs: usize, max_txs: usize) -> usize {
    let by_rate = u128::from(committed) * u128::from(backlog_ms) / u128::from(RATE_WINDOW_MS);
    let by_rate = usize::try_from(by_rate).unwrap_or(usize::MAX);
    by_rate.max(min_txs).min(max_txs)
}
