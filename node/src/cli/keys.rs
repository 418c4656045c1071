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
}

#[derive(Args, Debug)]
pub struct HouseholdIdArgs {
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

pub fn run(ctx: &Ctx, cmd: KeysCmd) -> Result<ExitCode> {
    match cmd {
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

/// SHA-256(salt || local id), as 64 hex characters.
pub fn household_hash(salt: &[u8], local_id: &[u8]) -> aidledger_types::Hash {
    let mut buf = Vec::with_capacity(salt.len() + local_id.len());
    buf.extend_from_slice(salt);
    buf.extend_from_slice(local_id);
    aidledger_types::hash::sha256(&buf)
}

pub fn household_id(ctx: &Ctx, a: HouseholdIdArgs) -> Result<ExitCode> {
    let salt = match (a.salt, a.salt_file) {
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
