//! A node's key files during a node-key replacement (ADR 017): the key it
//! signs with (`node.key_file`, `keys/node.json` by default), the staged
//! replacement next to it (`node-next.json`), and the retired keys
//! (`retired/<public key>.json`), kept so an operator can still prove
//! what an old key signed.

use std::path::{Path, PathBuf};

use aidledger_crypto::{read_key_file, Keypair};
use anyhow::{Context, Result};

use crate::config::NodeConfig;
use crate::node::rel;

/// The staged replacement key's file name, next to the node key.
pub const STAGED_KEY_FILE: &str = "node-next.json";
/// The directory of retired node keys, next to the node key.
pub const RETIRED_KEYS_DIR: &str = "retired";

/// The node key file, as the configuration names it.
pub fn key_path(home: &Path, cfg: &NodeConfig) -> PathBuf {
    rel(home, &cfg.node.key_file)
}

fn key_dir(home: &Path, cfg: &NodeConfig) -> PathBuf {
    key_path(home, cfg)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.to_path_buf())
}

/// Where `aidledger keys stage` puts the replacement key.
pub fn staged_path(home: &Path, cfg: &NodeConfig) -> PathBuf {
    key_dir(home, cfg).join(STAGED_KEY_FILE)
}

/// The staged replacement key, if there is one (a file that exists but
/// cannot be read is an error: a replacement must not silently fail).
pub fn read_staged(home: &Path, cfg: &NodeConfig) -> Result<Option<Keypair>> {
    let path = staged_path(home, cfg);
    if !path.exists() {
        return Ok(None);
    }
    read_key_file(&path)
        .map(Some)
        .with_context(|| format!("reading the staged node key {}", path.display()))
}

/// The staged key now signs: the old key file moves to `retired/` and the
/// staged file becomes the node key file. Each step is atomic and the old
/// key is copied before the node key file is replaced, so a crash between
/// them leaves both files and the next start promotes again.
pub fn promote_staged(home: &Path, cfg: &NodeConfig, old: &Keypair) -> Result<()> {
    let key = key_path(home, cfg);
    let staged = staged_path(home, cfg);
    let retired_dir = key_dir(home, cfg).join(RETIRED_KEYS_DIR);
    crate::cli::keys::create_private_dir(&retired_dir)?;
    let retired = retired_dir.join(format!("{}.json", old.public().to_hex()));
    if !retired.exists() {
        let tmp = retired_dir.join(format!(".{}.partial", old.public().to_hex()));
        let _ = std::fs::remove_file(&tmp);
        aidledger_crypto::write_key_file(&tmp, old, "retired node key")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &retired)
            .with_context(|| format!("moving the old node key to {}", retired.display()))?;
    }
    std::fs::rename(&staged, &key).with_context(|| {
        format!(
            "moving the staged key {} to {}",
            staged.display(),
            key.display()
        )
    })?;
    if let Ok(d) = std::fs::File::open(key_dir(home, cfg)) {
        let _ = d.sync_all();
    }
    tracing::warn!(
        node_key = %key.display(),
        retired = %retired.display(),
        "the staged key is now this node's key; the old one is kept under retired/"
    );
    Ok(())
}
