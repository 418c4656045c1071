//! `aidledger keys ...` and `aidledger household-id`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aidledger_crypto::{read_key_file, write_key_file, KeyFile, Keypair};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::net::peer_id;
use super::{args, print_json, usage, Ctx};

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Generate an ed25519 key file (mode 0600; never overwrites).
    Generate {
        /// Where to write the key file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A label stored in the file (who or what the key is for).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Print a key file's public key and libp2p peer id.
    Show {
        /// The key file.
        file: PathBuf,
    },
    /// Stage a replacement for the key of the node in --home
    /// (HOME/keys/node-next.json). The
    /// node, running or not, moves to it in two steps once governance
    /// executes `tx gov-propose replace-node-key`: its peer id at once, its
    /// signatures from the replacement's height. The old key file is then
    /// kept under keys/retired/.
    Stage {
        /// The replacement key file (generated elsewhere, for example on
        /// the machine that will run the node).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "generate",
            required_unless_present = "generate"
        )]
        file: Option<PathBuf>,
        /// Generate the replacement key in the home instead.
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Args, Debug)]
pub struct HouseholdIdArgs {
    #[command(flatten)]
    salt: SaltArgs,
    /// The household's local identifier (never sent anywhere).
    #[arg(long)]
    local_id: String,
}

/// Creates the parent directory of `path` if needed (mode 0700 on unix).
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            create_private_dir(dir)?;
        }
    }
    Ok(())
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Generates a key into a new file and returns it.
pub fn generate_into(path: &Path, label: &str) -> Result<Keypair> {
    if path.exists() {
        anyhow::bail!(
            "{} already exists; key files are never overwritten",
            path.display()
        );
    }
    ensure_parent(path)?;
    let key = Keypair::generate();
    write_key_file(path, &key, label)?;
    Ok(key)
}

/// `aidledger keys stage`: puts the replacement key next to the node key.
fn stage(ctx: &Ctx, home: &Path, file: Option<PathBuf>, generate: bool) -> Result<()> {
    let cfg = crate::config::NodeConfig::load(home)?;
    let current =
        read_key_file(&crate::node_keys::key_path(home, &cfg)).context("reading the node's key")?;
    let staged_path = crate::node_keys::staged_path(home, &cfg);
    let wanted = match &file {
        Some(f) => Some(read_key_file(f)?),
        None => None,
    };
    if let Some(k) = &wanted {
        if k.public() == current.public() {
            return Err(usage(
                "that is the key the node signs with now; stage a new key",
            ));
        }
    }
    let staged = if staged_path.exists() {
        let there = read_key_file(&staged_path)?;
        if wanted.as_ref().is_none_or(|k| k.public() != there.public()) {
            anyhow::bail!(
                "{} already holds a staged key ({}); if no replacement uses it, move it away \
                 first",
                staged_path.display(),
                there.public()
            );
        }
        there
    } else if let Some(k) = wanted {
        ensure_parent(&staged_path)?;
        write_key_file(&staged_path, &k, "staged node key")?;
        k
    } else {
        debug_assert!(generate);
        generate_into(&staged_path, "staged node key")?
    };
    let (old, new) = (current.public(), staged.public());
    let pid = peer_id(&new)?;
    if ctx.json() {
        print_json(&json!({
            "staged": staged_path.display().to_string(),
            "old_key": old.to_hex(),
            "new_key": new.to_hex(),
            "new_peer_id": pid,
        }))?;
    } else {
        println!("staged      {}", staged_path.display());
        println!("new key     {}", new.to_hex());
        println!("new peer id {pid}");
        println!(
            "next: aidledger tx gov-propose replace-node-key --old-key {} --new-key {} \
             --at-height H   (H at least activation-delay-blocks ahead); peers' network.peers \
             entries naming this node's old peer id need the new one",
            old.to_hex(),
            new.to_hex()
        );
    }
    Ok(())
}

pub fn run(ctx: &Ctx, cmd: KeysCmd) -> Result<ExitCode> {
    match cmd {
        KeysCmd::Stage { file, generate } => stage(ctx, ctx.home("keys stage")?, file, generate)?,
        KeysCmd::Generate { out, label } => {
            args::check(args::text(&label).map(|_| ()))?;
            let key = generate_into(&out, &label)?;
            let pk = key.public();
            if ctx.json() {
                print_json(&json!({
                    "file": out.display().to_string(),
                    "public_key": pk.to_hex(),
                    "peer_id": peer_id(&pk)?,
                    "label": label,
                }))?;
            } else {
                println!("{}", pk.to_hex());
            }
        }
        KeysCmd::Show { file } => {
            let key = read_key_file(&file)?;
            let pk = key.public();
            // read_key_file checked the file; read it again for the label.
            let label = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str::<KeyFile>(&t).ok())
                .map(|k| k.label)
                .unwrap_or_default();
            let pid = peer_id(&pk)?;
            if ctx.json() {
                print_json(&json!({
                    "file": file.display().to_string(),
                    "public_key": pk.to_hex(),
                    "peer_id": pid,
                    "label": label,
                }))?;
            } else {
                println!("public key  {}", pk.to_hex());
                println!("peer id     {pid}");
                if !label.is_empty() {
                    println!("label       {label}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registrar's salt, given or in a file (`household-id`,
/// `tx import-households`).
#[derive(Args, Debug)]
pub struct SaltArgs {
    /// The registrar's secret salt.
    #[arg(
        long,
        conflicts_with = "salt_file",
        required_unless_present = "salt_file"
    )]
    salt: Option<String>,
    /// A file holding the salt (its trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    salt_file: Option<PathBuf>,
}

impl SaltArgs {
    /// The salt; refused when empty (the id could then be guessed).
    pub fn read(self) -> Result<String> {
        let salt = match (self.salt, self.salt_file) {
            (Some(s), _) => s,
            (None, Some(f)) => {
                let t = args::read_small(&f)?;
                t.strip_suffix('\n')
                    .map(|s| s.strip_suffix('\r').unwrap_or(s))
                    .unwrap_or(&t)
                    .to_string()
            }
            (None, None) => return Err(usage("--salt or --salt-file is required")),
        };
        if salt.is_empty() {
            return Err(usage(
                "the salt must not be empty: without it the id can be guessed",
            ));
        }
        Ok(salt)
    }
}

/// SHA-256(salt || local id), as 64 hex characters.
pub fn household_hash(salt: &[u8], local_id: &[u8]) -> aidledger_types::Hash {
    let mut buf = Vec::with_capacity(salt.len() + local_id.len());
    buf.extend_from_slice(salt);
    buf.extend_from_slice(local_id);
    aidledger_types::hash::sha256(&buf)
}

pub fn household_id(ctx: &Ctx, a: HouseholdIdArgs) -> Result<ExitCode> {
    let salt = a.salt.read()?;
    let local = a.local_id.as_str();
    if local.trim().is_empty() {
        return Err(usage("--local-id must not be empty"));
    }
    let h = household_hash(salt.as_bytes(), local.as_bytes());
    if ctx.json() {
        print_json(&json!({ "household": h.to_hex() }))?;
    } else {
        println!("{}", h.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}
