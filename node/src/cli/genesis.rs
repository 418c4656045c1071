//! `aidledger genesis ...` (compose a consortium's genesis step by step)
//! and `aidledger init` (create a node home).
//!
//! A genesis under construction may not be valid yet (no validators, no
//! admins), so the steps read and write a [`Draft`] whose JSON is exactly
//! that of [`Genesis`]; `genesis validate` runs every check a node runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aidledger_contracts::model::{ModuleVersion, Params};
use aidledger_contracts::{Genesis, GenesisAccount, GenesisOrg};
use aidledger_crypto::read_key_file;
use aidledger_types::{ChainId, OrgId, PublicKey, Role, Text, Timestamp, Validator, ValidatorSet};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::keys::{create_private_dir, generate_into};
use super::net::peer_id;
use super::{args, print_json, usage, Ctx};
use crate::config::{
    AdmissionSection, ApiSection, ConsensusSection, MempoolSection, NetworkSection, NodeConfig,
    NodeSection, SnapshotSection,
};

#[derive(Subcommand, Debug)]
pub enum GenesisCmd {
    /// Start a new genesis file: chain id, time, parameters, module versions.
    New {
        #[arg(long, value_parser = args::chain_id)]
        chain_id: ChainId,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Genesis time: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or ms [default: now, to the second].
        #[arg(long, value_parser = args::time)]
        time: Option<Timestamp>,
        /// Distinct organisations whose admins must approve a governance action.
        #[arg(long, default_value_t = 2)]
        governance_threshold: u32,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Add a member organisation.
    AddOrg {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_parser = args::org)]
        id: OrgId,
        #[arg(long, value_parser = args::text)]
        name: Text,
        #[arg(long, value_enum)]
        kind: args::OrgKindArg,
        /// Key of a non-validating (observer) node this organisation runs; repeatable.
        #[arg(long = "node-key", value_name = "HEX", value_parser = args::public_key)]
        node_keys: Vec<PublicKey>,
    },
    /// Add an observer node's key to an organisation already in the genesis.
    AddNodeKey {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_parser = args::org)]
        org: OrgId,
        /// The node's public key (64 hex; `aidledger keys show`).
        #[arg(long, value_name = "HEX", value_parser = args::public_key)]
        key: PublicKey,
    },
    /// Add an operator account with its roles.
    AddAccount {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_parser = args::org)]
        org: OrgId,
        /// The account's public key (64 hex).
        #[arg(long, value_name = "HEX", value_parser = args::public_key)]
        key: PublicKey,
        /// Comma-separated: admin, program-officer, approver, disburser, registrar, attester, auditor.
        #[arg(long, value_delimiter = ',', required = true, value_parser = args::role)]
        roles: Vec<Role>,
    },
    /// Append a validator (order fixes leader rotation).
    AddValidator {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_parser = args::org)]
        org: OrgId,
        /// The validator node's public key (64 hex).
        #[arg(long, value_name = "HEX", value_parser = args::public_key)]
        key: PublicKey,
    },
    /// Run every check a node runs and print the genesis hash.
    Validate {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// The validator list of a draft, in the JSON shape of `ValidatorSet`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftValidators {
    pub validators: Vec<Validator>,
}

/// A genesis under construction; same JSON as [`Genesis`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    pub chain_id: ChainId,
    pub genesis_time: Timestamp,
    pub orgs: Vec<GenesisOrg>,
    pub accounts: Vec<GenesisAccount>,
    pub validators: DraftValidators,
    pub modules: Vec<ModuleVersion>,
    pub params: Params,
}

impl Draft {
    /// A draft pinning the newest module versions this build carries.
    pub fn new(chain_id: ChainId, time: Timestamp, params: Params) -> Result<Draft> {
        Ok(Draft {
            chain_id,
            genesis_time: time,
            orgs: vec![],
            accounts: vec![],
            validators: DraftValidators::default(),
            modules: aidledger_contracts::newest_within(&crate::test_knobs::module_ceiling()?),
            params,
        })
    }

    pub fn read(path: &Path) -> Result<Draft> {
        let text = args::read_small(path)?;
        serde_json::from_str(&text)
            .map_err(|e| usage(format!("{}: not a genesis file: {e}", path.display())))
    }

    /// Writes the file through a temporary file and a rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The complete genesis, after every check a node runs.
    pub fn to_genesis(&self) -> Result<Genesis> {
        if self.validators.validators.is_empty() {
            bail!("no validators yet: add them with `aidledger genesis add-validator`");
        }
        let validators = ValidatorSet::new(self.validators.validators.clone())?;
        let g = Genesis {
            chain_id: self.chain_id.clone(),
            genesis_time: self.genesis_time,
            orgs: self.orgs.clone(),
            accounts: self.accounts.clone(),
            validators,
            modules: self.modules.clone(),
            params: self.params.clone(),
        };
        g.validate()?;
        Ok(g)
    }

    fn has_org(&self, org: &OrgId) -> bool {
        self.orgs.iter().any(|o| &o.id == org)
    }

    fn need_org(&self, org: &OrgId) -> Result<()> {
        if !self.has_org(org) {
            return Err(usage(format!(
                "organisation {org} is not in the genesis; add it first with `aidledger genesis add-org`"
            )));
        }
        Ok(())
    }

    /// Which node uses `key`, if any: a validator's organisation or an
    /// organisation's observer.
    fn node_key_user(&self, key: &PublicKey) -> Option<String> {
        if let Some(v) = self.validators.validators.iter().find(|v| &v.key == key) {
            return Some(format!("validator of {}", v.org));
        }
        self.orgs
            .iter()
            .find(|o| o.node_keys.contains(key))
            .map(|o| format!("node of {}", o.id))
    }
}

/// Prints where a draft stands after a step.
fn report(ctx: &Ctx, path: &Path, done: &str, d: &Draft) -> Result<()> {
    let state = d.to_genesis();
    if ctx.json() {
        print_json(&json!({
            "file": path.display().to_string(),
            "done": done,
            "complete": state.is_ok(),
            "genesis_hash": state.as_ref().ok().map(|g| g.hash().to_hex()),
            "pending": state.as_ref().err().map(|e| format!("{e:#}")),
        }))?;
    } else {
        println!("{done}");
        match state {
            Ok(g) => println!("genesis is complete; hash {}", g.hash().to_hex()),
            Err(e) => println!("genesis not complete yet: {e:#}"),
        }
    }
    Ok(())
}

pub fn run(ctx: &Ctx, cmd: GenesisCmd) -> Result<ExitCode> {
    match cmd {
        GenesisCmd::New {
            chain_id,
            out,
            time,
            governance_threshold,
            force,
        } => {
            if out.exists() && !force {
                bail!(
                    "{} already exists (use --force to replace it)",
                    out.display()
                );
            }
            if governance_threshold == 0 || governance_threshold > 100 {
                return Err(usage("--governance-threshold must be 1 to 100"));
            }
            let time = time.unwrap_or_else(|| Timestamp(super::wall_clock_ms() / 1000 * 1000));
            let params = Params {
                governance_threshold,
                ..Params::default()
            };
            let d = Draft::new(chain_id, time, params)?;
            super::keys::ensure_parent(&out)?;
            d.write(&out)?;
            report(
                ctx,
                &out,
                &format!("wrote {} for chain {}", out.display(), d.chain_id),
                &d,
            )?;
        }
        GenesisCmd::AddOrg {
            file,
            id,
            name,
            kind,
            node_keys,
        } => {
            let mut d = Draft::read(&file)?;
            if d.has_org(&id) {
                return Err(usage(format!(
                    "organisation {id} is already in the genesis"
                )));
            }
            if node_keys.len() > 16 {
                return Err(usage("at most 16 --node-key per organisation"));
            }
            for (i, k) in node_keys.iter().enumerate() {
                if node_keys[..i].contains(k) {
                    return Err(usage(format!("node key {k} is given twice")));
                }
                if let Some(user) = d.node_key_user(k) {
                    return Err(usage(format!("node key {k} is already used ({user})")));
                }
            }
            d.orgs.push(GenesisOrg {
                id: id.clone(),
                name,
                kind: kind.into(),
                node_keys,
            });
            d.write(&file)?;
            report(ctx, &file, &format!("added organisation {id}"), &d)?;
        }
        GenesisCmd::AddNodeKey { file, org, key } => {
            let mut d = Draft::read(&file)?;
            d.need_org(&org)?;
            if let Some(user) = d.node_key_user(&key) {
                return Err(usage(format!("node key {key} is already used ({user})")));
            }
            let o = d
                .orgs
                .iter_mut()
                .find(|o| o.id == org)
                .ok_or_else(|| usage(format!("organisation {org} is not in the genesis")))?;
            if o.node_keys.len() >= 16 {
                return Err(usage(format!(
                    "organisation {org} already lists 16 node keys"
                )));
            }
            o.node_keys.push(key);
            d.write(&file)?;
            report(
                ctx,
                &file,
                &format!("added observer node {key} to {org}"),
                &d,
            )?;
        }
        GenesisCmd::AddAccount {
            file,
            org,
            key,
            roles,
        } => {
            let mut d = Draft::read(&file)?;
            d.need_org(&org)?;
            if let Some(a) = d.accounts.iter().find(|a| a.key == key) {
                return Err(usage(format!(
                    "account {key} is already in the genesis (organisation {})",
                    a.org
                )));
            }
            let mut sorted = roles.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != roles.len() {
                return Err(usage("--roles lists a role twice"));
            }
            d.accounts.push(GenesisAccount {
                key,
                org: org.clone(),
                roles: sorted,
            });
            d.write(&file)?;
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            report(
                ctx,
                &file,
                &format!("added account {key} to {org} as {}", names.join(", ")),
                &d,
            )?;
        }
        GenesisCmd::AddValidator { file, org, key } => {
            let mut d = Draft::read(&file)?;
            d.need_org(&org)?;
            if d.validators.validators.iter().any(|v| v.org == org) {
                return Err(usage(format!(
                    "organisation {org} already runs a validator"
                )));
            }
            if let Some(user) = d.node_key_user(&key) {
                // An organisation may list its own validator key as a node key.
                let own = d
                    .orgs
                    .iter()
                    .any(|o| o.id == org && o.node_keys.contains(&key));
                if !own {
                    return Err(usage(format!("key {key} is already used ({user})")));
                }
            }
            if d.validators.validators.len() >= aidledger_types::block::VALIDATORS_MAX {
                return Err(usage("the validator set is full"));
            }
            d.validators.validators.push(Validator {
                org: org.clone(),
                key,
            });
            d.write(&file)?;
            report(
                ctx,
                &file,
                &format!(
                    "added validator {key} of {org} (validator {} of {})",
                    d.validators.validators.len(),
                    d.validators.validators.len()
                ),
                &d,
            )?;
        }
        GenesisCmd::Validate { file } => {
            let d = Draft::read(&file)?;
            let g = d
                .to_genesis()
                .with_context(|| format!("{} is not a valid genesis", file.display()))?;
            let h = g.hash().to_hex();
            if ctx.json() {
                print_json(&json!({
                    "file": file.display().to_string(),
                    "valid": true,
                    "genesis_hash": h,
                    "chain_id": g.chain_id.to_string(),
                    "genesis_time": g.genesis_time.iso8601(),
                    "orgs": g.orgs.len(),
                    "accounts": g.accounts.len(),
                    "validators": g.validators.len(),
                }))?;
            } else {
                println!("genesis is valid");
                println!("chain id      {}", g.chain_id);
                println!("genesis time  {}", g.genesis_time.iso8601());
                println!(
                    "members       {} organisations, {} accounts, {} validators (quorum {})",
                    g.orgs.len(),
                    g.accounts.len(),
                    g.validators.len(),
                    g.validators.quorum()
                );
                println!("genesis hash  {h}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The organisation that runs this node.
    #[arg(long, value_parser = args::org)]
    org: OrgId,
    /// The consortium's genesis file (may still be incomplete).
    #[arg(long, value_name = "FILE")]
    genesis: PathBuf,
    /// libp2p listen address.
    #[arg(
        long,
        default_value = "/ip4/0.0.0.0/tcp/26601",
        value_name = "MULTIADDR"
    )]
    p2p_listen: String,
    /// HTTP API listen address (keep it on loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:26701", value_name = "HOST:PORT")]
    api_listen: String,
    /// A peer to dial: a multiaddr ending in /p2p/<peer id>; repeatable.
    #[arg(long = "peer", value_name = "MULTIADDR")]
    peers: Vec<String>,
    /// A file with the consortium's pre-shared network key (64 hex).
    #[arg(long, value_name = "FILE")]
    psk_file: Option<PathBuf>,
    /// Rewrite an existing config.toml and genesis.json (the node key is kept).
    #[arg(long)]
    force: bool,
}

/// Checks a libp2p listen address.
pub fn check_listen(addr: &str) -> Result<()> {
    super::net::parse_addr(addr)
        .map(|_| ())
        .map_err(|e| usage(format!("--p2p-listen: {e}")))
}

/// Checks a peer address: a multiaddr with a `/p2p/<peer id>` suffix.
pub fn check_peer(addr: &str) -> Result<()> {
    let has_peer = super::net::parse_addr(addr).map_err(|e| usage(format!("--peer: {e}")))?;
    if !has_peer {
        return Err(usage(format!(
            "--peer {addr:?} must end in /p2p/<peer id> (see `aidledger keys show`)"
        )));
    }
    Ok(())
}

/// A node configuration with the default sections.
pub fn node_config(org: &OrgId, p2p: &str, peers: Vec<String>, api: &str) -> NodeConfig {
    NodeConfig {
        node: NodeSection {
            org: org.to_string(),
            key_file: PathBuf::from("keys/node.json"),
            data_dir: PathBuf::from("data"),
            genesis_file: PathBuf::from("genesis.json"),
        },
        network: NetworkSection {
            listen: p2p.to_string(),
            peers,
            psk_file: None,
            redial_interval_ms: 1000,
            ping_interval_ms: 1000,
            max_connections: aidledger_network::PeerLimits::default().max_connections,
            max_connections_per_peer: aidledger_network::PeerLimits::default().max_per_peer,
            max_pending_incoming: aidledger_network::PeerLimits::default().max_pending_incoming,
            max_pending_outgoing: aidledger_network::PeerLimits::default().max_pending_outgoing,
        },
        api: ApiSection {
            listen: api.to_string(),
            body_max_bytes: 256 * 1024,
            admin: false,
            max_connections: 1024,
            max_requests: 256,
            header_timeout_ms: 30_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 150_000,
            write_rate_per_client: 200,
            write_burst_per_client: 400,
        },
        consensus: ConsensusSection::default(),
        mempool: MempoolSection::default(),
        admission: AdmissionSection::default(),
        snapshot: SnapshotSection::default(),
    }
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<ExitCode> {
    let home = ctx.home("init")?.to_path_buf();
    check_listen(&a.p2p_listen)?;
    a.api_listen.parse::<std::net::SocketAddr>().map_err(|_| {
        usage(format!(
            "--api-listen {:?} must be host:port, e.g. 127.0.0.1:26701",
            a.api_listen
        ))
    })?;
    for p in &a.peers {
        check_peer(p)?;
    }
    if let Some(psk) = &a.psk_file {
        if !psk.exists() {
            return Err(usage(format!(
                "--psk-file {} does not exist",
                psk.display()
            )));
        }
    }
    let draft = Draft::read(&a.genesis)?;
    // An organisation the genesis lacks may join a running consortium
    // (governance adds it and registers its node, ADR 017); a draft still
    // being composed must list it first.
    let joining = !draft.has_org(&a.org) && draft.to_genesis().is_ok();
    if !joining {
        draft.need_org(&a.org)?;
    }
    if NodeConfig::path(&home).exists() && !a.force {
        bail!(
            "{} already exists (use --force to rewrite config.toml and genesis.json; the node key is kept)",
            NodeConfig::path(&home).display()
        );
    }
    create_private_dir(&home)?;
    create_private_dir(&home.join("data"))?;
    let key_path = home.join("keys").join("node.json");
    let (key, created) = if key_path.exists() {
        (read_key_file(&key_path)?, false)
    } else {
        (
            generate_into(&key_path, &format!("node of {}", a.org))?,
            true,
        )
    };
    let genesis_text = args::read_small(&a.genesis)?;
    std::fs::write(home.join("genesis.json"), genesis_text)
        .with_context(|| format!("cannot write {}", home.join("genesis.json").display()))?;
    let mut cfg = node_config(&a.org, &a.p2p_listen, a.peers.clone(), &a.api_listen);
    if let Some(psk) = &a.psk_file {
        cfg.network.psk_file = Some(std::fs::canonicalize(psk)?);
    }
    cfg.check()?;
    cfg.write(&home)?;

    let pk = key.public();
    let pid = peer_id(&pk)?;
    let role = if draft
        .validators
        .validators
        .iter()
        .any(|v| v.key == pk && v.org == a.org)
    {
        Some("validator")
    } else if draft
        .orgs
        .iter()
        .any(|o| o.id == a.org && o.node_keys.contains(&pk))
    {
        Some("observer")
    } else {
        None
    };
    let complete = draft.to_genesis();
    if ctx.json() {
        print_json(&json!({
            "home": home.display().to_string(),
            "org": a.org.to_string(),
            "node_key": pk.to_hex(),
            "peer_id": pid,
            "key_created": created,
            "listed_in_genesis_as": role,
            "genesis_complete": complete.is_ok(),
        }))?;
    } else {
        println!("initialised {} for {}", home.display(), a.org);
        println!("node key  {}", pk.to_hex());
        println!("peer id   {pid}");
        println!("p2p       {}/p2p/{pid}", a.p2p_listen);
        match role {
            Some(r) => println!("genesis lists this node as a {r}"),
            None if joining => {
                println!(
                    "{} is not in the genesis: it joins the running consortium once its members' \
                     governance adds it and registers this node (then start the node; it syncs \
                     from its peers):",
                    a.org
                );
                println!(
                    "  aidledger tx gov-propose add-org --id {} --name NAME --kind KIND ...",
                    a.org
                );
                println!(
                    "  aidledger tx gov-propose add-node --org {} --node-key {} ...",
                    a.org,
                    pk.to_hex()
                );
            }
            None => {
                println!("genesis does not list this node yet; add it with one of:");
                println!(
                    "  aidledger genesis add-validator --file genesis.json --org {} --key {}",
                    a.org,
                    pk.to_hex()
                );
                println!(
                    "  (observer) include --node-key {} when adding {}",
                    pk.to_hex(),
                    a.org
                );
            }
        }
        if let Err(e) = complete {
            println!(
                "genesis is not complete yet ({e:#}); copy the final file to {} before `aidledger node run`",
                home.join("genesis.json").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
