//! The operator commands of the `aidledger` command line: keys, genesis,
//! init, node, tx, query, status, household-id, audit, export-blocks,
//! backup, restore, proof.
//! Every value is validated before anything is written or sent. The
//! binary (`crates/cli`) adds the local-consortium tooling (`testnet`,
//! `bench`, from `testnet/`) and parses the whole line.

pub mod args;
pub mod audit;
pub mod backup;
pub mod bulk;
pub mod genesis;
pub mod keys;
pub mod net;
pub mod proof;
pub mod query;
pub mod table;
pub mod tx;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use crate::client::Client;

/// Where a node's API listens unless told otherwise.
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:26701";

/// A bad argument or input value: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// A usage error (exit code 2) with a one-line reason.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// True if any error in the chain is a [`UsageError`].
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<UsageError>())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    /// Only `audit report` writes CSV.
    Csv,
}

/// The operator commands; the binary flattens them into its own list.
#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Generate and inspect key files.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Compose and check the consortium's genesis file, step by step.
    #[command(subcommand)]
    Genesis(genesis::GenesisCmd),
    /// Create a node home: config.toml, genesis.json, keys/node.json, data/.
    Init(genesis::InitArgs),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Sign and submit a transaction.
    Tx(tx::TxArgs),
    /// Read chain state from a node.
    Query(query::QueryArgs),
    /// The node's status (same as `query status`).
    Status,
    /// Compute a household id, SHA-256(salt || local id), offline.
    HouseholdId(keys::HouseholdIdArgs),
    /// Verify a chain independently, report on it and export it.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Write a node's chain (genesis, blocks, certificates) to a file for
    /// offline audit with `audit replay --blocks FILE`.
    ExportBlocks(audit::ExportBlocksArgs),
    /// Copy a node's store while it runs (a RocksDB checkpoint, through
    /// the node's control socket) into a new directory that is itself a
    /// node home: `aidledger audit replay --home DIR` verifies it.
    Backup(backup::BackupArgs),
    /// Put a backup back into a stopped node's home. The node then catches
    /// up from its peers before it votes again.
    Restore(backup::RestoreArgs),
    /// Payment proofs a household or county office checks offline.
    #[command(subcommand)]
    Proof(proof::ProofCmd),
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Run the node in --home until interrupted.
    Run {
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
        /// A validator whose store holds blocks but no consensus safety
        /// state (or one older than its own votes in the stored
        /// certificates) normally abstains until the consortium has
        /// committed past the heights it may have voted at. This flag
        /// makes it vote at once. Only for an operator who knows the key
        /// signed nothing since the data was saved: otherwise it can vote
        /// twice at one height (see the operator guide, restoring).
        #[arg(long)]
        accept_missing_safety_state: bool,
        /// This validator has voted on this chain before, although its home
        /// does not record it (restored onto a new machine without the
        /// `ran-on-chain` file). On an empty store it then catches up
        /// without voting, and votes once one more height has committed.
        /// A home that has run the node records this by itself.
        #[arg(long)]
        rejoin: bool,
        /// On a store with no block yet, join from a state snapshot that
        /// peers offer instead of replaying every block from genesis: the
        /// node follows the validator-set changes from its genesis, checks
        /// the snapshot's certificate and every chunk against the certified
        /// state root, and keeps history from the snapshot's height on (a
        /// pruned node). Not for validators, which keep all history. A
        /// store that already holds blocks ignores the flag.
        #[arg(long)]
        from_snapshot: bool,
    },
}

/// Global context for every command.
pub struct Ctx {
    pub home: Option<PathBuf>,
    pub node: Option<String>,
    pub output: Output,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// The home directory, or a usage error naming the command.
    pub fn home(&self, what: &str) -> Result<&Path> {
        self.home
            .as_deref()
            .ok_or_else(|| usage(format!("{what} needs --home DIR (or AIDLEDGER_HOME)")))
    }

    /// The node URL: --node, else the home's api.listen, else the default.
    pub fn node_url(&self) -> Result<String> {
        if let Some(n) = &self.node {
            return Ok(n.clone());
        }
        if let Some(home) = &self.home {
            if crate::config::NodeConfig::path(home).exists() {
                let cfg = crate::config::NodeConfig::load(home)?;
                return Ok(url_for_listen(&cfg.api.listen));
            }
        }
        Ok(DEFAULT_NODE_URL.to_string())
    }

    pub fn client(&self) -> Result<Client> {
        Client::new(&self.node_url()?)
    }
}

/// The URL to reach an API listening on `listen` from this machine.
pub fn url_for_listen(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) => format!("http://{a}"),
        Err(_) => format!("http://{listen}"),
    }
}

/// Prints a JSON value, pretty.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Milliseconds since the epoch from the wall clock.
// The node crate is the one place allowed to read the clock; the CLI reads
// it only to default a new genesis time.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs an operator command and returns the exit code.
pub fn run(ctx: &Ctx, cmd: OperatorCmd) -> Result<ExitCode> {
    match cmd {
        OperatorCmd::Keys(c) => keys::run(ctx, c),
        OperatorCmd::HouseholdId(a) => keys::household_id(ctx, a),
        OperatorCmd::Genesis(c) => genesis::run(ctx, c),
        OperatorCmd::Init(a) => genesis::init(ctx, a),
        OperatorCmd::Node(NodeCmd::Run {
            log_json,
            accept_missing_safety_state,
            rejoin,
            from_snapshot,
        }) => {
            let home = ctx.home("node run")?.to_path_buf();
            crate::node::run(
                &home,
                crate::node::RunOptions {
                    log_json,
                    accept_missing_safety_state,
                    rejoin,
                    from_snapshot,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        OperatorCmd::Tx(a) => tx::run(ctx, a),
        OperatorCmd::Query(a) => query::run(ctx, a),
        OperatorCmd::Status => query::status(ctx),
        OperatorCmd::Audit(c) => audit::run(ctx, c),
        OperatorCmd::ExportBlocks(a) => audit::export_blocks(ctx, a),
        OperatorCmd::Backup(a) => backup::backup(ctx, a),
        OperatorCmd::Restore(a) => backup::restore(ctx, a),
        OperatorCmd::Proof(c) => proof::run(ctx, c),
    }
}
