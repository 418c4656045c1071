//! `aidledger backup` and `aidledger restore` (ADR 017, part 5): a
//! consistent copy of a node's store taken while it runs, and putting one
//! back with the safety-state protections of the node core.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aidledger_crypto::read_key_file;
use aidledger_storage::{RocksStore, Store};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::{print_json, usage, Ctx};
use crate::backup::{
    node_answers, request_checkpoint, Control, HeadInfo, Manifest, RestoredMarker, MANIFEST,
    MANIFEST_FORMAT, RESTORED_MARKER,
};
use crate::config::NodeConfig;
use crate::node::{load_genesis, ran_marker_text, rel, RAN_MARKER};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup: a new directory (it must not exist),
    /// which becomes a node home that `aidledger audit replay --home DIR`
    /// verifies. On the same filesystem as the node's data, the table
    /// files are hard links and the copy costs little space until the
    /// node compacts them away.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also copy the node key (keys/node.json, mode 0600) into the backup.
    /// Off by default: a backup usually goes where the key must not.
    #[arg(long)]
    with_key: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup directory written by `aidledger backup`.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Restore a backup taken from another node key (a replacement
    /// machine for the same organisation under a new key, or a copy of
    /// another member's ledger). The copy's consensus safety state records
    /// that key's votes, not this one's, so it is dropped.
    #[arg(long)]
    other_key: bool,
}

/// The home's files a backup and a restore work with.
struct Home {
    dir: PathBuf,
    cfg: NodeConfig,
    genesis_path: PathBuf,
    key_path: PathBuf,
    data: PathBuf,
}

impl Home {
    fn open(home: &Path) -> Result<Home> {
        if !home.is_dir() {
            return Err(usage(format!("{} is not a directory", home.display())));
        }
        let cfg = NodeConfig::load(home).map_err(|e| usage(format!("{e:#}")))?;
        Ok(Home {
            dir: home.to_path_buf(),
            genesis_path: rel(home, &cfg.node.genesis_file),
            key_path: rel(home, &cfg.node.key_file),
            data: rel(home, &cfg.node.data_dir),
            cfg,
        })
    }
}

#[derive(Serialize)]
struct BackupOutput<'a> {
    out: &'a Path,
    #[serde(flatten)]
    manifest: &'a Manifest,
}

pub fn backup(ctx: &Ctx, a: BackupArgs) -> Result<ExitCode> {
    let home = Home::open(ctx.home("backup")?)?;
    let genesis = load_genesis(&home.genesis_path).map_err(|e| usage(format!("{e:#}")))?;
    let key = read_key_file(&home.key_path)?;
    if a.out.exists() {
        return Err(usage(format!(
            "{} exists; a backup goes to a new directory",
            a.out.display()
        )));
    }
    let parent = match a.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(usage(format!("{} is not a directory", parent.display())));
    }
    let out = std::fs::canonicalize(&parent)?.join(
        a.out
            .file_name()
            .ok_or_else(|| usage(format!("{} is not a directory path", a.out.display())))?,
    );
    if let Ok(data) = std::fs::canonicalize(&home.data) {
        if out.starts_with(&data) {
            return Err(usage(format!(
                "{} is inside the node's data directory {}; put the backup elsewhere",
                out.display(),
                data.display()
            )));
        }
    }
    let data_name = "data";
    create_private_dir(&out)?;
    let result = (|| -> Result<Manifest> {
        let data = out.join(data_name);
        let (head, hot) = match request_checkpoint(&home.dir, &data)? {
            Control::Taken(h) => (h, true),
            Control::NotRunning => {
                if !home.data.is_dir() {
                    bail!("{} has no data directory to back up", home.data.display());
                }
                // No node answers: open the store ourselves. If a node runs
                // on it after all (an older binary without the socket), the
                // store's lock says so.
                let store = RocksStore::open(&home.data).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot open {} ({e}); if a node is running on this home, it does not answer on its control socket: stop it, or upgrade it",
                        home.data.display()
                    )
                })?;
                let head = store
                    .checkpoint(&data)?
                    .ok_or_else(|| anyhow::anyhow!("the store is empty: nothing to back up"))?;
                (HeadInfo::from(head), false)
            }
        };
        // The copy must open at the head the node reported, on this chain.
        let copy = RocksStore::open_read_only(&data)
            .with_context(|| format!("opening the copy {}", data.display()))?;
        match copy.genesis()? {
            Some((h, _)) if h == genesis.hash() => {}
            _ => bail!("the copy does not hold this home's genesis"),
        }
        let copied = copy.check_head()?.map(HeadInfo::from);
        if copied != Some(head) {
            bail!("the copy's head {copied:?} differs from the checkpoint's {head:?}");
        }
        drop(copy);
        write_home_files(&home, &out, a.with_key)?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            chain_id: genesis.chain_id.to_string(),
            genesis_hash: genesis.hash(),
            height: head.height,
            block_hash: head.block_hash,
            state_root: head.state_root,
            node_key: key.public(),
            org: home.cfg.node.org.clone(),
            hot,
            with_key: a.with_key,
            taken_at_ms: crate::clock::now_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        // Written last: without it the directory is not a finished backup.
        write_new(
            &out.join(MANIFEST),
            &serde_json::to_vec_pretty(&manifest)?,
            0o644,
        )?;
        Ok(manifest)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            // Nothing half-made is left to be mistaken for a backup.
            let _ = std::fs::remove_dir_all(&out);
            return Err(e);
        }
    };
    if ctx.json() {
        print_json(&BackupOutput {
            out: &out,
            manifest: &manifest,
        })?;
    } else {
        println!(
            "backed up {} at height {} ({}) to {}",
            manifest.org,
            manifest.height,
            if manifest.hot {
                "hot, from the running node"
            } else {
                "from the stopped node's store"
            },
            out.display()
        );
        println!(
            "verify it with: aidledger audit replay --home {}",
            out.display()
        );
        if !manifest.with_key {
            println!("the node key is not in the backup: keep keys/node.json safe separately");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The backup's small files: a config whose paths point inside the backup,
/// the genesis, the run marker and, if asked, the node key.
fn write_home_files(home: &Home, out: &Path, with_key: bool) -> Result<()> {
    let cfg_text = std::fs::read_to_string(NodeConfig::path(&home.dir))?;
    let mut cfg: toml::Value = toml::from_str(&cfg_text)?;
    if let Some(node) = cfg.get_mut("node").and_then(|n| n.as_table_mut()) {
        node.insert("data_dir".into(), "data".into());
        node.insert("genesis_file".into(), "genesis.json".into());
        node.insert("key_file".into(), "keys/node.json".into());
    }
    write_new(
        &NodeConfig::path(out),
        toml::to_string(&cfg)?.as_bytes(),
        0o644,
    )?;
    std::fs::copy(&home.genesis_path, out.join("genesis.json"))
        .with_context(|| format!("copying {}", home.genesis_path.display()))?;
    if let Ok(m) = std::fs::read(home.dir.join(RAN_MARKER)) {
        write_new(&out.join(RAN_MARKER), &m, 0o644)?;
    }
    if with_key {
        create_private_dir(&out.join("keys"))?;
        let bytes = std::fs::read(&home.key_path)
            .with_context(|| format!("reading {}", home.key_path.display()))?;
        write_new(&out.join("keys/node.json"), &bytes, 0o600)?;
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Reads and checks a backup's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let meta = std::fs::metadata(&path).map_err(|_| {
        usage(format!(
            "{} has no {MANIFEST}: not a finished backup made by aidledger backup",
            dir.display()
        ))
    })?;
    if meta.len() > 64 * 1024 {
        return Err(usage(format!("{} is too large", path.display())));
    }
    let m: Manifest = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| usage(format!("{} is not a valid manifest: {e}", path.display())))?;
    if m.format != MANIFEST_FORMAT {
        return Err(usage(format!(
            "{}: backup format {} is not supported by this aidledger (it reads {MANIFEST_FORMAT})",
            path.display(),
            m.format
        )));
    }
    Ok(m)
}

#[derive(Serialize)]
struct RestoreOutput {
    home: PathBuf,
    from: PathBuf,
    height: u64,
    block_hash: String,
    set_aside: Option<PathBuf>,
    safety_state: &'static str,
}

pub fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<ExitCode> {
    let home = Home::open(ctx.home("restore")?)?;
    let genesis = load_genesis(&home.genesis_path).map_err(|e| usage(format!("{e:#}")))?;
    let key = read_key_file(&home.key_path)?;
    let m = read_manifest(&a.from)?;
    // 1. The right chain and, unless told otherwise, the right key.
    if m.chain_id != genesis.chain_id.as_str() || m.genesis_hash != genesis.hash() {
        return Err(usage(format!(
            "the backup is of chain {} (genesis {}), but this home runs {} (genesis {}): refusing to mix chains",
            m.chain_id,
            m.genesis_hash.short(),
            genesis.chain_id,
            genesis.hash().short()
        )));
    }
    if m.node_key != key.public() && !a.other_key {
        return Err(usage(format!(
            "the backup was taken from node key {} ({}), but this home's key is {}; its safety state records the other key's votes. Give --other-key to restore it without that state",
            m.node_key.short(),
            m.org,
            key.public().short()
        )));
    }
    // 2. The node is stopped: nothing answers on its control socket, and
    //    no process holds its store's lock.
    if node_answers(&home.dir) {
        return Err(usage(format!(
            "a node is running on {}: stop it first (restore replaces its data directory)",
            home.dir.display()
        )));
    }
    if home.data.is_dir() {
        // A damaged store (often the reason for the restore) may not open;
        // only a lock held by a running process stops the restore.
        if let Err(e) = RocksStore::open(&home.data) {
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("lock") {
                return Err(usage(format!(
                    "{} is locked ({text}): a node is running on this home; stop it first",
                    home.data.display()
                )));
            }
            eprintln!(
                "note: the current data directory does not open ({text}); it is set aside, not deleted"
            );
        }
    }
    let src = a.from.join("data");
    if !src.is_dir() {
        return Err(usage(format!("{} has no data directory", a.from.display())));
    }
    // 3. Copy the backup next to the data directory and check the copy:
    //    the right genesis, a consistent head, the manifest's head.
    let stamp = crate::clock::now_ms();
    let parent = home
        .data
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.dir.clone());
    let name = home
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = parent.join(format!("{name}.restoring-{stamp}"));
    let checked = (|| -> Result<&'static str> {
        copy_dir(&src, &staging)?;
        let store = RocksStore::open(&staging)
            .with_context(|| format!("the backup's store does not open ({})", src.display()))?;
        let (parent_info, _) = aidledger_node_core::open_chain(&store, &genesis)
            .context("the backup's store does not hold this chain")?;
        if parent_info.height != m.height || parent_info.hash != m.block_hash {
            bail!(
                "the backup's store is at height {} ({}), but its manifest says {} ({}): it was changed after the backup",
                parent_info.height,
                parent_info.hash.short(),
                m.height,
                m.block_hash.short()
            );
        }
        let safety = if m.node_key != key.public() {
            store.forget_safety_state()?;
            "dropped (the backup is another key's)"
        } else {
            "kept (the backup's; the node catches up before voting)"
        };
        Ok(safety)
    })();
    let safety = match checked {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // 4. The marker first, so that a crash from here on still makes the
    //    node catch up before it votes; then the swap, keeping the old data.
    let marker = RestoredMarker {
        chain_id: m.chain_id.clone(),
        genesis_hash: m.genesis_hash,
        height: m.height,
        restored_at_ms: stamp,
        from: std::fs::canonicalize(&a.from).unwrap_or(a.from.clone()),
    };
    write_replace(
        &home.dir.join(RESTORED_MARKER),
        &serde_json::to_vec_pretty(&marker)?,
    )?;
    let ran = home.dir.join(RAN_MARKER);
    if !ran.exists() {
        // A restored home has run on this chain: an empty store later
        // must not look like a new chain.
        write_replace(&ran, ran_marker_text(&genesis).as_bytes())?;
    }
    let set_aside = if home.data.exists() {
        let aside = parent.join(format!("{name}.before-restore-{stamp}"));
        std::fs::rename(&home.data, &aside)
            .with_context(|| format!("moving {} to {}", home.data.display(), aside.display()))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, &home.data)
        .with_context(|| format!("moving {} to {}", staging.display(), home.data.display()))?;
    let out = RestoreOutput {
        home: home.dir.clone(),
        from: a.from.clone(),
        height: m.height,
        block_hash: m.block_hash.to_string(),
        set_aside,
        safety_state: safety,
    };
    if ctx.json() {
        print_json(&out)?;
    } else {
        println!(
            "restored {} to height {} from {}",
            home.dir.display(),
            m.height,
            a.from.display()
        );
        if let Some(p) = &out.set_aside {
            println!("the previous data directory is kept at {}", p.display());
        }
        println!("safety state: {safety}");
        println!(
            "start the node: it catches up from its peers without voting, and votes again once it has (aidledger status shows voting)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies a flat directory (a RocksDB checkpoint has no subdirectories).
fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    create_private_dir(dst)?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
            std::fs::File::open(&to)?.sync_all()?;
        } else {
            bail!(
                "{} is neither a file nor a directory; not a backup's store",
                entry.path().display()
            );
        }
    }
    std::fs::File::open(dst)?.sync_all()?;
    Ok(())
}

/// Writes a small file through a temporary one renamed into place.
fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    super::audit::write_atomically(path, |w| Ok(w.write_all(bytes)?)).map(|_| ())
}
