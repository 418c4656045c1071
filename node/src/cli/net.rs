//! The few network helpers the CLI needs, from `aidledger-network`.

use aidledger_types::PublicKey;
use anyhow::{anyhow, Result};

/// The libp2p peer id of a node key, as text.
pub fn peer_id(key: &PublicKey) -> Result<String> {
    aidledger_network::peer_id_of(key)
        .map(|p| p.to_string())
        .map_err(|e| anyhow!("peer id of {key}: {e}"))
}

/// Parses a multiaddr; `Ok(true)` if it ends in `/p2p/<peer id>`.
pub fn parse_addr(addr: &str) -> Result<bool, String> {
    let a = aidledger_network::parse_addr(addr).map_err(|e| e.to_string())?;
    Ok(aidledger_network::peer_of_addr(&a).is_some())
}
