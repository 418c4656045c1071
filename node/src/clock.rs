//! The node's one window on the wall clock. Everything below the node
//! receives time as an input (clippy.toml bans the clock elsewhere).

/// Milliseconds since the Unix epoch.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
