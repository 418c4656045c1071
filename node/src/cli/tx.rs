//! `aidledger tx <kind>`: build a payload from readable flags, sign it with
//! the operator's key and submit it.
//!
//! Every flag is checked locally first. The node is asked only for what the
//! CLI cannot know: a program's decimals (to read `1250.00`), the chain id
//! and the signer's next nonce (unless `--chain-id` / `--nonce` are given).

use std::path::PathBuf;
use std::process::ExitCode;

use aidledger_contracts::model::{
    ApprovalPolicy, AttestValue, ClaimTest, CrossCheck, Eligibility, GovAction, ParamValue, Subject,
};
use aidledger_contracts::model::{ModuleVersion, Recipient, Release};
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{Account, Condition, Program, TxOutcome};
use aidledger_crypto::{read_key_file, Keypair, Purpose};
use aidledger_types::{
    ChainId, Currency, Hash, OrgId, PublicKey, RegionCode, Role, SignedTx, Slug, Text, Timestamp,
    TxBody, TxKind, Validator, ValidatorSet,
};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};

use super::args::{self, required, Decimal, TrancheArg};
use super::{print_json, usage, Ctx};
use crate::api_types::{NodeStatus, TxState, TxStatus};
use crate::client::Client;
use aidledger_types::authz;

/// How long `--wait` waits for a commit.
const WAIT_MS: u64 = 30_000;

#[derive(Args, Debug)]
#[command(after_help = authz::help_table())]
pub struct TxArgs {
    /// The signer's key file.
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Wait for the transaction to commit and print its outcome.
    #[arg(long, global = true)]
    wait: bool,
    /// Use this nonce instead of asking the node for the account's next one.
    #[arg(long, global = true)]
    nonce: Option<u64>,
    /// Use this chain id instead of asking the node.
    #[arg(long, global = true, value_parser = args::chain_id)]
    chain_id: Option<ChainId>,
    /// Build and sign, print the encoded transaction, send nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    kind: TxCmd,
}

#[derive(Subcommand, Debug)]
pub enum TxCmd {
    /// Register or update household files from a county's CSV file
    /// (registrar): salted ids computed here, bad rows reported and not
    /// sent, a re-run skips what is done, a result row per input row.
    #[command(after_help = authz::help_line(TxKind::RegisterHousehold))]
    ImportHouseholds(super::bulk::ImportHouseholdsArgs),
    /// Settle releases from a bank's payment-confirmation CSV file (the
    /// bank's settling account): matching releases are settled, mismatches
    /// listed, a re-run skips what is settled, a result row per input row.
    #[command(after_help = authz::help_line(TxKind::Settle))]
    SettleFile(super::bulk::SettleFileArgs),
    /// Propose a governance action (admin).
    #[command(subcommand)]
    #[command(after_help = authz::help_line(TxKind::GovPropose))]
    GovPropose(GovCmd),
    /// Approve an open governance proposal (admin).
    #[command(after_help = authz::help_line(TxKind::GovApprove))]
    GovApprove {
        #[arg(long)]
        proposal: u64,
    },
    /// Create a fund program (program officer).
    #[command(after_help = authz::help_line(TxKind::CreateProgram))]
    CreateProgram {
        #[arg(long, value_parser = args::slug)]
        id: Slug,
        #[arg(long, value_parser = args::text)]
        title: Text,
        /// Three uppercase letters, e.g. CNY.
        #[arg(long, value_parser = args::currency)]
        currency: Currency,
        /// Fractional digits of the currency (0 to 8).
        #[arg(long, default_value_t = 2)]
        decimals: u8,
        /// Organisations whose disbursers deposit and settle (comma-separated).
        #[arg(long, value_delimiter = ',', required = true, value_parser = args::org)]
        funding_orgs: Vec<OrgId>,
        /// Budget ceiling, e.g. 1000000.00.
        #[arg(long, alias = "budget", value_parser = args::decimal)]
        ceiling: Decimal,
        /// Approvals needed on an application.
        #[arg(long)]
        threshold: u32,
        /// Organisations whose approvers vote on applications (comma-separated).
        #[arg(long, value_delimiter = ',', required = true, value_parser = args::org)]
        policy_orgs: Vec<OrgId>,
        /// Region the program covers: province[/county[/village]].
        #[arg(long, alias = "region", value_parser = args::region)]
        region_scope: RegionCode,
    },
    /// Deposit funds into a program (disburser of a funding organisation).
    #[command(after_help = authz::help_line(TxKind::Deposit))]
    Deposit {
        #[arg(long, value_parser = args::slug)]
        program: Slug,
        #[arg(long, value_parser = args::decimal)]
        amount: Decimal,
        /// The program's decimals, if you do not want them looked up.
        #[arg(long)]
        decimals: Option<u8>,
    },
    /// Submit a project application (program officer or registrar).
    #[command(after_help = authz::help_line(TxKind::SubmitApplication))]
    SubmitApplication {
        #[arg(long, value_parser = args::slug)]
        id: Slug,
        #[arg(long, value_parser = args::slug)]
        program: Slug,
        /// The applying organisation [default: the signer's].
        #[arg(long, value_parser = args::org)]
        applicant: Option<OrgId>,
        #[arg(long, value_parser = args::region)]
        region: RegionCode,
        /// Amount requested, e.g. 250000.00.
        #[arg(long, alias = "requested", value_parser = args::decimal)]
        amount: Decimal,
        #[arg(long, value_parser = args::text)]
        purpose: Text,
        /// SHA-256 of the off-chain documents (64 hex).
        #[arg(long, value_parser = args::hash, conflicts_with = "doc_file")]
        doc_hash: Option<Hash>,
        /// Hash this file as the documents.
        #[arg(long, value_name = "FILE")]
        doc_file: Option<PathBuf>,
        #[arg(long)]
        decimals: Option<u8>,
    },
    /// Approve an application (approver of a policy organisation).
    #[command(after_help = authz::help_line(TxKind::ApproveApplication))]
    ApproveApplication(Vote),
    /// Reject an application (approver of a policy organisation).
    #[command(after_help = authz::help_line(TxKind::RejectApplication))]
    RejectApplication(Vote),
    /// Create a disbursement plan (the program owner's program officer).
    #[command(after_help = authz::help_line(TxKind::CreatePlan))]
    CreatePlan {
        #[arg(long, value_parser = args::slug)]
        id: Slug,
        #[arg(long, value_parser = args::slug)]
        program: Slug,
        /// The application the plan funds.
        #[arg(long, value_parser = args::slug)]
        application: Option<Slug>,
        /// `id=t1,amount=400.00,to=org:county-unit,when=<condition>`; repeatable, `when` last.
        #[arg(long = "tranche", value_parser = args::tranche)]
        tranches: Vec<TrancheArg>,
        /// A JSON list of {"id","amount","to","when"} objects.
        #[arg(long, value_name = "FILE", conflicts_with = "tranches")]
        tranches_file: Option<PathBuf>,
        /// One-tranche plan: the tranche's amount (with --to and --condition).
        #[arg(long, value_parser = args::decimal, conflicts_with_all = ["tranches", "tranches_file"], requires = "to")]
        amount: Option<Decimal>,
        /// One-tranche plan: org:<org> or household:<64 hex>.
        #[arg(long, value_parser = args::recipient, requires = "amount")]
        to: Option<Recipient>,
        /// One-tranche plan: the release condition, e.g. 'all(after(2026-03-01), approvals(2, of: [dev-bank, poverty-office]))'.
        #[arg(long, value_parser = args::condition, requires = "amount")]
        condition: Option<Condition>,
        /// One-tranche plan: read the condition from a file (text, or a JSON string).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "condition",
            requires = "amount"
        )]
        condition_file: Option<PathBuf>,
        /// One-tranche plan: the tranche id.
        #[arg(long, default_value = "t1", value_parser = args::slug)]
        tranche_id: Slug,
        #[arg(long)]
        decimals: Option<u8>,
    },
    /// Attest a claim about a household, application or release (attester).
    #[command(after_help = authz::help_line(TxKind::Attest))]
    Attest {
        /// hh:<64 hex>, app:<id> or release:<n>.
        #[arg(long, value_parser = args::subject)]
        subject: Subject,
        #[arg(long, value_parser = args::slug)]
        claim: Slug,
        /// code:<slug> or hash:<64 hex>.
        #[arg(long, value_parser = args::attest_value)]
        value: AttestValue,
    },
    /// Register a household file (registrar).
    #[command(after_help = authz::help_line(TxKind::RegisterHousehold))]
    RegisterHousehold {
        /// The salted household id (64 hex; see `aidledger household-id`).
        #[arg(long, value_parser = args::hash)]
        household: Hash,
        #[arg(long, value_parser = args::region)]
        region: RegionCode,
    },
    /// Update a household's region or status (registrar).
    #[command(after_help = authz::help_line(TxKind::UpdateHousehold))]
    UpdateHousehold {
        #[arg(long, value_parser = args::hash)]
        household: Hash,
        #[arg(long, value_parser = args::region)]
        region: RegionCode,
        #[arg(long, value_enum)]
        status: args::HouseholdStatusArg,
    },
    /// Set a periodic entitlement (the program owner's program officer).
    #[command(after_help = authz::help_line(TxKind::SetEntitlement))]
    SetEntitlement {
        #[arg(long, value_parser = args::slug)]
        id: Slug,
        #[arg(long, value_parser = args::slug)]
        program: Slug,
        /// Amount per household per period.
        #[arg(long, value_parser = args::decimal)]
        amount: Decimal,
        /// Period length: 30d, 12h, 15m, 45s, 500ms or milliseconds.
        #[arg(long, value_parser = args::duration_ms)]
        period: u64,
        /// Start of the first period.
        #[arg(long, value_parser = args::time)]
        start: Timestamp,
        #[arg(long)]
        periods: u32,
        /// Pay every active household registered in this region...
        #[arg(long, value_parser = args::region, conflicts_with_all = ["households", "households_file"])]
        region: Option<RegionCode>,
        /// ...or exactly these households (comma-separated hex ids)...
        #[arg(long, value_delimiter = ',', value_parser = args::hash)]
        households: Vec<Hash>,
        /// ...or those listed in a file (one hex id a line, or a JSON list).
        #[arg(long, value_name = "FILE", conflicts_with = "households")]
        households_file: Option<PathBuf>,
        #[arg(long)]
        decimals: Option<u8>,
    },
    /// Confirm a release was paid (disburser of a funding organisation).
    #[command(after_help = authz::help_line(TxKind::Settle))]
    Settle {
        #[arg(long)]
        release: u64,
        #[arg(long, value_parser = args::decimal)]
        amount: Decimal,
        /// The bank's payment reference; only its SHA-256 is sent.
        #[arg(
            long,
            conflicts_with = "bank_ref_hash",
            required_unless_present = "bank_ref_hash"
        )]
        bank_ref: Option<String>,
        /// SHA-256 of the bank's payment reference (64 hex).
        #[arg(long, value_parser = args::hash)]
        bank_ref_hash: Option<Hash>,
        /// The release's program [default: looked up from the release].
        #[arg(long, value_parser = args::slug)]
        program: Option<Slug>,
        #[arg(long)]
        decimals: Option<u8>,
    },
    /// Approve a plan that has no approved application (an approver of
    /// one of the program's policy organisations, not the plan's creator).
    #[command(after_help = authz::help_line(TxKind::ApprovePlan))]
    ApprovePlan {
        #[arg(long, value_parser = args::slug)]
        plan: Slug,
    },
    /// Cancel a pending tranche (the program owner's program officer).
    #[command(after_help = authz::help_line(TxKind::CancelTranche))]
    CancelTranche {
        #[arg(long, value_parser = args::slug)]
        plan: Slug,
        #[arg(long, value_parser = args::slug)]
        tranche: Slug,
    },
    /// Resolve an open anomaly (auditor or program officer).
    #[command(after_help = authz::help_line(TxKind::ResolveAnomaly))]
    ResolveAnomaly {
        #[arg(long)]
        anomaly: u64,
        #[arg(long, value_parser = args::text)]
        note: Text,
    },
    /// Close a program (the owner's program officer).
    #[command(after_help = authz::help_line(TxKind::CloseProgram))]
    CloseProgram {
        #[arg(long, value_parser = args::slug)]
        program: Slug,
    },
}

#[derive(Args, Debug)]
pub struct Vote {
    #[arg(long, value_parser = args::slug)]
    application: Slug,
    #[arg(long, default_value = "", value_parser = args::text)]
    note: Text,
}

#[derive(Subcommand, Debug)]
pub enum GovCmd {
    /// Add a member organisation.
    AddOrg {
        #[arg(long, value_parser = args::org)]
        id: OrgId,
        #[arg(long, value_parser = args::text)]
        name: Text,
        #[arg(long, value_enum)]
        kind: args::OrgKindArg,
    },
    /// Change an organisation's name, kind or status.
    UpdateOrg {
        #[arg(long, value_parser = args::org)]
        id: OrgId,
        #[arg(long, value_parser = args::text)]
        name: Text,
        #[arg(long, value_enum)]
        kind: args::OrgKindArg,
        #[arg(long, value_enum)]
        status: args::StatusArg,
    },
    /// Add an operator account.
    AddAccount {
        /// The new account's public key (64 hex).
        #[arg(long, value_parser = args::public_key)]
        account: PublicKey,
        #[arg(long, value_parser = args::org)]
        org: OrgId,
        #[arg(long, value_delimiter = ',', required = true, value_parser = args::role)]
        roles: Vec<Role>,
    },
    /// Replace an account's roles.
    SetRoles {
        #[arg(long, value_parser = args::public_key)]
        account: PublicKey,
        #[arg(long, value_delimiter = ',', required = true, value_parser = args::role)]
        roles: Vec<Role>,
    },
    /// Suspend or reactivate an account.
    SetAccountStatus {
        #[arg(long, value_parser = args::public_key)]
        account: PublicKey,
        #[arg(long, value_enum)]
        status: args::StatusArg,
    },
    /// Move an account to a new key.
    RotateKey {
        #[arg(long, value_parser = args::public_key)]
        old: PublicKey,
        #[arg(long, value_parser = args::public_key)]
        new: PublicKey,
    },
    /// Replace the validator set from height `--at-height`: `--validator
    /// ORG=HEX` for each, in leader order. Every key must be a registered
    /// node of its organisation (add-node), and the height at least the
    /// activation delay (parameter activation-delay-blocks, 20 by default)
    /// after the block that executes the proposal; `aidledger status`
    /// shows the height now.
    SetValidators {
        #[arg(long = "validator", required = true, value_parser = validator)]
        validators: Vec<Validator>,
        #[arg(long, value_name = "HEIGHT")]
        at_height: u64,
    },
    /// Register a node key for an organisation: once executed, every node
    /// admits it to the network (an observer until set-validators names
    /// it). The key is the new node's `aidledger keys show --home H`.
    AddNode {
        #[arg(long, value_parser = args::org)]
        org: OrgId,
        /// The node's public key (64 hex).
        #[arg(long = "node-key", value_parser = node_key)]
        node_key: PublicKey,
    },
    /// Remove a node key for good: every node closes its connections and
    /// refuses it from the next block. A validator must leave the set first.
    RemoveNode {
        /// The node's public key (64 hex).
        #[arg(long = "node-key", value_parser = args::public_key)]
        node_key: PublicKey,
    },
    /// Cancel the validator-set change scheduled for a height, before that
    /// height (the set a replace-node-key scheduled cannot be cancelled).
    CancelValidatorSet {
        /// The height the change is scheduled for (`aidledger status`
        /// shows `next_due_reason` activation while one is).
        #[arg(long, value_name = "HEIGHT")]
        at_height: u64,
    },
    /// Replace a node's key (a planned rotation, or a lost or compromised
    /// key): the new key is registered for the same organisation at once,
    /// and at the height the old one is retired for good; a validator's
    /// seat moves to the new key there. Stage the new key on the node
    /// first (`aidledger keys stage`): it keeps running throughout.
    ReplaceNodeKey {
        /// The node's key now (64 hex).
        #[arg(long = "old-key", value_parser = args::public_key)]
        old_key: PublicKey,
        /// Its replacement (64 hex).
        #[arg(long = "new-key", value_parser = node_key)]
        new_key: PublicKey,
        /// From this height on the new key signs and the old one is
        /// refused: at least activation-delay-blocks after the block that
        /// executes the proposal.
        #[arg(long, value_name = "HEIGHT")]
        at_height: u64,
    },
    /// Schedule a contract upgrade: from the height on, every node and
    /// the auditor's replay run the named module versions (ADR 017).
    /// Every node must run a release that carries them by then: a node
    /// that lacks one says so in `aidledger status` at once and stops
    /// before that height.
    ScheduleUpgrade {
        /// A module and the version to switch to, for example plans@4
        /// (repeat for several modules).
        #[arg(long = "module", value_name = "NAME@VERSION", required = true, value_parser = module_version)]
        modules: Vec<ModuleVersion>,
        /// The first block executed with the new versions: at least
        /// activation-delay-blocks after the block that executes the
        /// proposal.
        #[arg(long, value_name = "HEIGHT")]
        at_height: u64,
        /// Schedule a version this build of aidledger does not carry (one
        /// a later release brings).
        #[arg(long)]
        allow_unknown_version: bool,
    },
    /// Cancel the contract upgrade scheduled for a height, before that
    /// height.
    CancelUpgrade {
        /// The height the upgrade is scheduled for (`aidledger status`
        /// shows it).
        #[arg(long, value_name = "HEIGHT")]
        at_height: u64,
    },
    /// Change a parameter.
    SetParam {
        /// governance-threshold, block-time-drift-ms, settlement-deadline-ms, max-pending-tranches, max-pending-tranches-per-program, entitlement-batch, plan-approvals, anomaly-second-review-from (that one in the program's minor units; 0 means every anomaly takes two people), idle-block-interval-ms (the heartbeat of an idle chain, 1000 to 604800000) or activation-delay-blocks (the fewest blocks before a validator-set change takes effect, 2 to 100000).
        #[arg(long)]
        name: String,
        #[arg(long)]
        value: u64,
    },
    /// Add (or replace, by id) a cross-department check: when every test
    /// holds among one subject's attestations, a cross-check anomaly holds
    /// the subject's payments.
    SetCrossCheck {
        #[arg(long, value_parser = args::slug)]
        id: Slug,
        #[arg(long, value_parser = args::text)]
        description: Text,
        /// CLAIM@ORG=CODE: ORG has attested CLAIM with CODE (1 to 4 tests),
        /// e.g. income-level@finance-bureau=above-line.
        #[arg(long = "when", value_parser = claim_test)]
        when: Vec<ClaimTest>,
    },
    /// Remove a cross-department check.
    RemoveCrossCheck {
        #[arg(long, value_parser = args::slug)]
        id: Slug,
    },
}

fn claim_test(s: &str) -> Result<ClaimTest, String> {
    let (left, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected CLAIM@ORG=CODE"))?;
    let (claim, by) = left
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected CLAIM@ORG=CODE"))?;
    Ok(ClaimTest {
        claim: args::slug(claim)?,
        by: args::org(by)?,
        value: args::slug(value)?,
    })
}

/// A node key: 64 hex that is also a usable ed25519 key (it signs the
/// node's votes and becomes its network identity).
fn node_key(s: &str) -> Result<PublicKey, String> {
    let k = args::public_key(s)?;
    // Every such key also has a libp2p peer id (libp2p decodes any
    // canonical point).
    if !aidledger_crypto::is_usable_public_key(&k) {
        return Err(format!(
            "{s:?} is not a usable node key: not a canonical ed25519 point of large order"
        ));
    }
    Ok(k)
}

fn validator(s: &str) -> Result<Validator, String> {
    let (o, k) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ORG=HEX"))?;
    Ok(Validator {
        org: args::org(o)?,
        key: args::public_key(k)?,
    })
}

fn param(name: &str, value: u64) -> Result<ParamValue> {
    let small =
        || u32::try_from(value).map_err(|_| usage(format!("{name} must be at most {}", u32::MAX)));
    if value == 0 && name != "anomaly-second-review-from" {
        return Err(usage(format!("{name} must be greater than zero")));
    }
    Ok(match name {
        "governance-threshold" => ParamValue::GovernanceThreshold(small()?),
        "block-time-drift-ms" => ParamValue::BlockTimeDriftMs(value),
        "settlement-deadline-ms" => ParamValue::SettlementDeadlineMs(value),
        "max-pending-tranches" => ParamValue::MaxPendingTranches(small()?),
        "max-pending-tranches-per-program" => ParamValue::MaxPendingTranchesPerProgram(small()?),
        "entitlement-batch" => ParamValue::EntitlementBatch(small()?),
        "plan-approvals" => ParamValue::PlanApprovals(small()?),
        "anomaly-second-review-from" => ParamValue::AnomalySecondReviewFrom(value),
        "idle-block-interval-ms" => {
            use aidledger_contracts::model::{IDLE_BLOCK_INTERVAL_MAX_MS, IDLE_BLOCK_INTERVAL_MIN_MS};
            if !(IDLE_BLOCK_INTERVAL_MIN_MS..=IDLE_BLOCK_INTERVAL_MAX_MS).contains(&value) {
                return Err(usage(format!(
                    "idle-block-interval-ms must be {IDLE_BLOCK_INTERVAL_MIN_MS} to {IDLE_BLOCK_INTERVAL_MAX_MS} (1 s to 7 days)"
                )));
            }
            ParamValue::IdleBlockIntervalMs(value)
        }
        "activation-delay-blocks" => {
            use aidledger_contracts::model::{
                ACTIVATION_DELAY_MAX_BLOCKS, ACTIVATION_DELAY_MIN_BLOCKS,
            };
            if !(ACTIVATION_DELAY_MIN_BLOCKS..=ACTIVATION_DELAY_MAX_BLOCKS).contains(&value) {
                return Err(usage(format!(
                    "activation-delay-blocks must be {ACTIVATION_DELAY_MIN_BLOCKS} to {ACTIVATION_DELAY_MAX_BLOCKS}"
                )));
            }
            ParamValue::ActivationDelayBlocks(value)
        }
        _ => return Err(usage(format!(
            "unknown parameter {name:?}: expected governance-threshold, block-time-drift-ms, settlement-deadline-ms, max-pending-tranches, max-pending-tranches-per-program, entitlement-batch, plan-approvals, anomaly-second-review-from, idle-block-interval-ms or activation-delay-blocks"
        ))),
    })
}

/// What a transaction needs from outside: the key, lazily, and the node.
struct Env<'a> {
    ctx: &'a Ctx,
    key_path: Option<PathBuf>,
    key: Option<Keypair>,
    client: Option<Client>,
    account: Option<Account>,
    /// (program, decimals) given on the command line, to check.
    given_decimals: Vec<(Slug, u8)>,
}

impl Env<'_> {
    fn client(&mut self) -> Result<&Client> {
        if self.client.is_none() {
            self.client = Some(self.ctx.client()?);
        }
        self.client.as_ref().ok_or_else(|| anyhow!("no client"))
    }

    fn key(&mut self) -> Result<&Keypair> {
        if self.key.is_none() {
            let path = required(self.key_path.clone(), "--key FILE")?;
            self.key = Some(read_key_file(&path)?);
        }
        self.key.as_ref().ok_or_else(|| anyhow!("no key"))
    }

    /// The signer's account as the node knows it.
    fn account(&mut self) -> Result<Account> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let pk = self.key()?.public();
        let a: Account = self
            .client()?
            .get_opt(&format!("/v1/accounts/{}", pk.to_hex()))?
            .ok_or_else(|| {
                anyhow!("account {pk} is not on the chain: an admin must add it (gov-propose add-account)")
            })?;
        self.account = Some(a.clone());
        Ok(a)
    }

    /// A program's decimals: as given (checked against the node's before
    /// anything is sent, see [`Env::check_given_decimals`]), or from the
    /// node.
    fn decimals(&mut self, program: &Slug, given: Option<u8>) -> Result<u8> {
        if let Some(d) = given {
            let d = given_decimals(d)?;
            self.given_decimals.push((program.clone(), d));
            return Ok(d);
        }
        let p: Program = self
            .client()?
            .get_opt(&format!("/v1/programs/{program}"))?
            .ok_or_else(|| anyhow!("program {program} does not exist"))?;
        Ok(p.decimals)
    }

    /// `--decimals` must agree with the program's: `--amount 5 --decimals
    /// 0` on a 2-decimal program would mean 0.05. Checked once the
    /// arguments are known good, before signing; with no node to ask
    /// (signing offline with `--dry-run`) the given value stands.
    fn check_given_decimals(&mut self) -> Result<()> {
        for (program, d) in std::mem::take(&mut self.given_decimals) {
            let looked_up: Result<Option<Program>> = self
                .client()
                .and_then(|c| c.get_opt(&format!("/v1/programs/{program}")));
            match looked_up {
                Ok(Some(p)) if p.decimals != d => {
                    return Err(usage(format!(
                        "--decimals {d} does not match program {program}, which has {} \
                         decimal(s): amounts would be off by a factor of 10^{}; leave \
                         --decimals out",
                        p.decimals,
                        d.abs_diff(p.decimals)
                    )))
                }
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => return Err(anyhow!("program {program} does not exist")),
            }
        }
        Ok(())
    }
}

fn given_decimals(d: u8) -> Result<u8> {
    if d > args::MAX_DECIMALS {
        return Err(usage(format!(
            "--decimals must be 0 to {}",
            args::MAX_DECIMALS
        )));
    }
    Ok(d)
}

fn hash_file(path: &std::path::Path) -> Result<Hash> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(aidledger_types::hash::sha256(&bytes))
}

fn module_version(s: &str) -> std::result::Result<ModuleVersion, String> {
    s.parse()
}

fn gov_action(cmd: GovCmd) -> Result<GovAction> {
    Ok(match cmd {
        GovCmd::AddOrg { id, name, kind } => GovAction::AddOrg {
            id,
            name,
            kind: kind.into(),
        },
        GovCmd::UpdateOrg {
            id,
            name,
            kind,
            status,
        } => GovAction::UpdateOrg {
            id,
            name,
            kind: kind.into(),
            status: status.into(),
        },
        GovCmd::AddAccount {
            account,
            org,
            roles,
        } => GovAction::AddAccount {
            key: account,
            org,
            roles,
        },
        GovCmd::SetRoles { account, roles } => GovAction::SetRoles {
            key: account,
            roles,
        },
        GovCmd::SetAccountStatus { account, status } => GovAction::SetAccountStatus {
            key: account,
            status: status.into(),
        },
        GovCmd::RotateKey { old, new } => {
            if old == new {
                return Err(usage("--old and --new are the same key"));
            }
            GovAction::RotateKey { old, new }
        }
        GovCmd::SetValidators {
            validators,
            at_height,
        } => GovAction::SetValidators {
            validators: ValidatorSet::new(validators).map_err(|e| usage(e.to_string()))?,
            at_height,
        },
        GovCmd::AddNode { org, node_key } => GovAction::AddNode { org, key: node_key },
        GovCmd::RemoveNode { node_key } => GovAction::RemoveNode { key: node_key },
        GovCmd::CancelValidatorSet { at_height } => GovAction::CancelValidatorSet { at_height },
        GovCmd::ReplaceNodeKey {
            old_key,
            new_key,
            at_height,
        } => {
            if old_key == new_key {
                return Err(usage("--old-key and --new-key are the same key"));
            }
            GovAction::ReplaceNodeKey {
                old: old_key,
                new: new_key,
                at_height,
            }
        }
        GovCmd::ScheduleUpgrade {
            modules,
            at_height,
            allow_unknown_version,
        } => {
            if !allow_unknown_version {
                if let Some(m) = modules.iter().find(|m| !aidledger_contracts::carries(m)) {
                    return Err(usage(format!(
                        "this build of aidledger does not carry {m} (it carries {}); pass \
                         --allow-unknown-version to schedule a later release's version",
                        aidledger_contracts::show_modules(&aidledger_contracts::carried_versions())
                    )));
                }
            }
            GovAction::ScheduleUpgrade { modules, at_height }
        }
        GovCmd::CancelUpgrade { at_height } => GovAction::CancelUpgrade { at_height },
        GovCmd::SetParam { name, value } => GovAction::SetParam {
            param: param(&name, value)?,
        },
        GovCmd::SetCrossCheck {
            id,
            description,
            when,
        } => {
            if description.as_str().trim().is_empty() {
                return Err(usage("--description must say what the check finds"));
            }
            if when.is_empty() || when.len() > 4 {
                return Err(usage("a cross-check needs 1 to 4 --when tests"));
            }
            GovAction::SetCrossCheck {
                check: CrossCheck {
                    id,
                    description,
                    when,
                },
            }
        }
        GovCmd::RemoveCrossCheck { id } => GovAction::RemoveCrossCheck { id },
    })
}

/// Builds the payload, asking the node only for what it must.
fn build(env: &mut Env<'_>, cmd: TxCmd) -> Result<Payload> {
    Ok(match cmd {
        TxCmd::ImportHouseholds(_) | TxCmd::SettleFile(_) => {
            return Err(anyhow!("an import is many transactions, not one"));
        }
        TxCmd::GovPropose(g) => Payload::GovPropose(payload::GovPropose {
            action: gov_action(g)?,
        }),
        TxCmd::GovApprove { proposal } => Payload::GovApprove(payload::GovApprove { proposal }),
        TxCmd::CreateProgram {
            id,
            title,
            currency,
            decimals,
            funding_orgs,
            ceiling,
            threshold,
            policy_orgs,
            region_scope,
        } => {
            given_decimals(decimals)?;
            if threshold == 0 || threshold as usize > policy_orgs.len() {
                return Err(usage(format!(
                    "--threshold must be 1 to the {} --policy-orgs",
                    policy_orgs.len()
                )));
            }
            let budget_ceiling = ceiling.to_amount(decimals).context("--ceiling")?;
            if budget_ceiling.is_zero() {
                return Err(usage("--ceiling must be positive"));
            }
            Payload::CreateProgram(payload::CreateProgram {
                id,
                title,
                currency,
                decimals,
                funding_orgs,
                budget_ceiling,
                policy: ApprovalPolicy {
                    threshold,
                    orgs: policy_orgs,
                },
                region_scope,
            })
        }
        TxCmd::Deposit {
            program,
            amount,
            decimals,
        } => {
            let d = env.decimals(&program, decimals)?;
            let amount = amount.to_amount(d).context("--amount")?;
            if amount.is_zero() {
                return Err(usage("--amount must be positive"));
            }
            Payload::Deposit(payload::Deposit { program, amount })
        }
        TxCmd::SubmitApplication {
            id,
            program,
            applicant,
            region,
            amount,
            purpose,
            doc_hash,
            doc_file,
            decimals,
        } => {
            let doc_hash = match (doc_hash, doc_file) {
                (Some(h), _) => h,
                (None, Some(f)) => hash_file(&f)?,
                (None, None) => return Err(usage("--doc-hash HEX or --doc-file FILE is required")),
            };
            let d = env.decimals(&program, decimals)?;
            let requested = amount.to_amount(d).context("--amount")?;
            let applicant = match applicant {
                Some(a) => a,
                None => env.account()?.org,
            };
            Payload::SubmitApplication(payload::SubmitApplication {
                id,
                program,
                applicant,
                region,
                requested,
                purpose,
                doc_hash,
            })
        }
        TxCmd::ApproveApplication(v) => Payload::ApproveApplication(payload::ApplicationVote {
            application: v.application,
            note: v.note,
        }),
        TxCmd::RejectApplication(v) => Payload::RejectApplication(payload::ApplicationVote {
            application: v.application,
            note: v.note,
        }),
        TxCmd::CreatePlan {
            id,
            program,
            application,
            tranches,
            tranches_file,
            amount,
            to,
            condition,
            condition_file,
            tranche_id,
            decimals,
        } => {
            let list = match (tranches_file, amount, to) {
                (Some(f), _, _) => args::tranches_file(&f)?,
                (None, Some(amount), Some(recipient)) => {
                    let condition = match (condition, condition_file) {
                        (Some(c), _) => c,
                        (None, Some(f)) => args::condition_file(&f)?,
                        (None, None) => {
                            return Err(usage(
                                "--condition or --condition-file is required with --amount",
                            ))
                        }
                    };
                    vec![TrancheArg {
                        id: tranche_id,
                        amount,
                        recipient,
                        condition,
                    }]
                }
                _ => tranches,
            };
            if list.is_empty() {
                return Err(usage("give at least one --tranche or a --tranches-file"));
            }
            if list.len() > 32 {
                return Err(usage(format!(
                    "{} tranches; a plan has at most 32",
                    list.len()
                )));
            }
            let d = env.decimals(&program, decimals)?;
            let tranches = list
                .iter()
                .map(|t| t.to_spec(d))
                .collect::<Result<Vec<_>>>()?;
            Payload::CreatePlan(payload::CreatePlan {
                id,
                program,
                application,
                tranches,
            })
        }
        TxCmd::Attest {
            subject,
            claim,
            value,
        } => Payload::Attest(payload::Attest {
            subject,
            claim,
            value,
        }),
        TxCmd::RegisterHousehold { household, region } => {
            Payload::RegisterHousehold(payload::RegisterHousehold {
                id: household,
                region,
            })
        }
        TxCmd::UpdateHousehold {
            household,
            region,
            status,
        } => Payload::UpdateHousehold(payload::UpdateHousehold {
            id: household,
            region,
            status: status.into(),
        }),
        TxCmd::SetEntitlement {
            id,
            program,
            amount,
            period,
            start,
            periods,
            region,
            households,
            households_file,
            decimals,
        } => {
            let eligibility =
                match (region, households_file) {
                    (Some(r), _) => Eligibility::Region(r),
                    (None, Some(f)) => Eligibility::List(args::households_file(&f)?),
                    (None, None) if !households.is_empty() => Eligibility::List(households),
                    (None, None) => return Err(usage(
                        "give --region, --households or --households-file to say who is eligible",
                    )),
                };
            if periods == 0 {
                return Err(usage("--periods must be positive"));
            }
            let d = env.decimals(&program, decimals)?;
            let amount = amount.to_amount(d).context("--amount")?;
            Payload::SetEntitlement(payload::SetEntitlement {
                id,
                program,
                amount,
                period_ms: period,
                start,
                periods,
                eligibility,
            })
        }
        TxCmd::Settle {
            release,
            amount,
            bank_ref,
            bank_ref_hash,
            program,
            decimals,
        } => {
            let bank_ref = match (bank_ref_hash, bank_ref) {
                (Some(h), _) => h,
                (None, Some(r)) if !r.trim().is_empty() => {
                    aidledger_types::hash::sha256(r.as_bytes())
                }
                _ => return Err(usage("--bank-ref REF or --bank-ref-hash HEX is required")),
            };
            let d = match (decimals, program) {
                (Some(d), _) => given_decimals(d)?,
                (None, Some(p)) => env.decimals(&p, None)?,
                (None, None) => {
                    let r: Release = env
                        .client()?
                        .get_opt(&format!("/v1/releases/{release}"))?
                        .ok_or_else(|| anyhow!("release {release} does not exist"))?;
                    env.decimals(&r.program, None)?
                }
            };
            let amount = amount.to_amount(d).context("--amount")?;
            Payload::Settle(payload::Settle {
                release,
                amount,
                bank_ref,
            })
        }
        TxCmd::ApprovePlan { plan } => Payload::ApprovePlan(payload::ApprovePlan { plan }),
        TxCmd::CancelTranche { plan, tranche } => {
            Payload::CancelTranche(payload::CancelTranche { plan, tranche })
        }
        TxCmd::ResolveAnomaly { anomaly, note } => {
            if note.as_str().trim().is_empty() {
                return Err(usage("--note must say how the anomaly was resolved"));
            }
            Payload::ResolveAnomaly(payload::ResolveAnomaly { anomaly, note })
        }
        TxCmd::CloseProgram { program } => Payload::CloseProgram(payload::CloseProgram { program }),
    })
}

/// Prints `rejected: <code>: <reason>` or `applied`.
fn outcome_text(o: &TxOutcome) -> String {
    match o {
        TxOutcome::Applied => "applied".into(),
        TxOutcome::Rejected { code, reason } => format!("rejected: {code}: {reason}"),
    }
}

pub fn run(ctx: &Ctx, a: TxArgs) -> Result<ExitCode> {
    if a.key.is_none() {
        return Err(usage("--key FILE is required: the signer's key file"));
    }
    if let TxCmd::ImportHouseholds(b) = a.kind {
        if a.nonce.is_some() {
            return Err(usage(
                "--nonce does not apply to an import: it takes the account's next nonces",
            ));
        }
        return super::bulk::import_households(ctx, a.key, a.chain_id, a.dry_run, b);
    }
    if let TxCmd::SettleFile(b) = a.kind {
        if a.nonce.is_some() {
            return Err(usage(
                "--nonce does not apply to a settlement file: it takes the account's next nonces",
            ));
        }
        return super::bulk::settle_file(ctx, a.key, a.chain_id, a.dry_run, b);
    }
    let mut env = Env {
        ctx,
        key_path: a.key.clone(),
        key: None,
        client: None,
        account: None,
        given_decimals: Vec::new(),
    };
    let payload = build(&mut env, a.kind)?;
    env.check_given_decimals()?;
    let key = env.key()?.clone();
    let chain_id = match a.chain_id {
        Some(c) => c,
        None => env
            .client()?
            .get::<NodeStatus>("/v1/status")?
            .chain_id
            .parse()?,
    };
    let nonce = match a.nonce {
        Some(n) => n,
        None => env.account()?.nonce,
    };
    let body = TxBody {
        chain_id: chain_id.clone(),
        nonce,
        signer: key.public(),
        kind: payload.kind(),
        payload: payload.encode(),
    };
    if body.payload.len() > aidledger_types::tx::TX_PAYLOAD_MAX_BYTES {
        return Err(usage(format!(
            "the payload is {} bytes, over the limit of {}",
            body.payload.len(),
            aidledger_types::tx::TX_PAYLOAD_MAX_BYTES
        )));
    }
    let signature = key.sign(&chain_id, Purpose::Tx, body.id().as_bytes());
    let tx = SignedTx { body, signature };
    let id = tx.id();
    let tx_hex = hex::encode(tx.encode());
    if a.dry_run {
        if ctx.json() {
            print_json(&serde_json::json!({
                "id": id.to_hex(),
                "kind": tx.body.kind,
                "nonce": nonce,
                "chain_id": chain_id.to_string(),
                "tx": tx_hex,
            }))?;
        } else {
            println!("{}", id.to_hex());
            println!("{tx_hex}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wait_ms = if a.wait { WAIT_MS } else { 0 };
    let (raw, st) = env.client()?.submit(tx_hex, wait_ms)?;
    report(ctx, &raw, &st, a.wait)
}

/// Prints a submission's status; non-zero exit if rejected, or if waiting
/// ended before the commit.
fn report(ctx: &Ctx, raw: &serde_json::Value, st: &TxStatus, waited: bool) -> Result<ExitCode> {
    if ctx.json() {
        print_json(raw)?;
    } else {
        println!("{}", st.id.to_hex());
    }
    match (&st.status, &st.receipt) {
        (TxState::Committed, Some(r)) => {
            if !ctx.json() {
                println!("height {}: {}", r.height, outcome_text(&r.outcome));
                // Applied is not always what the operator hoped for: say
                // what the transaction recorded when it is a finding.
                for e in &r.events {
                    match &e.body {
                        aidledger_contracts::EventBody::Settled {
                            release,
                            status: aidledger_contracts::model::SettlementStatus::Disputed,
                            ..
                        } => println!(
                            "recorded as DISPUTED: the amount differs from release {release}'s; \
                             a settlement-mismatch anomaly now holds it for an auditor"
                        ),
                        aidledger_contracts::EventBody::AnomalyRaised {
                            anomaly,
                            subject,
                            code,
                        } => {
                            println!("anomaly {anomaly} raised on {subject}: {code}")
                        }
                        aidledger_contracts::EventBody::AnomalyReviewed { anomaly, .. } => {
                            println!(
                                "anomaly {anomaly} reviewed, still OPEN: it holds a large amount, \
                                 so a second person (another account) must resolve it too"
                            )
                        }
                        aidledger_contracts::EventBody::ProposalCreated { proposal, .. } => {
                            println!(
                                "proposal {proposal} opened: it executes once admins of as many \
                                 organisations as the governance threshold approve \
                                 (tx gov-approve --proposal {proposal})"
                            )
                        }
                        aidledger_contracts::EventBody::ProposalExecuted { proposal } => {
                            println!("proposal {proposal} executed")
                        }
                        aidledger_contracts::EventBody::PlanCreated {
                            plan,
                            approvals_needed,
                            ..
                        } if *approvals_needed > 0 => {
                            println!(
                                "plan {plan} is AWAITING APPROVAL: no tranche releases until an \
                                 approver of the program's policy (not you) runs `tx approve-plan`"
                            )
                        }
                        aidledger_contracts::EventBody::PlanApproved {
                            plan,
                            approvals,
                            needed,
                            approved,
                            ..
                        } => {
                            if *approved {
                                println!("plan {plan} approved ({approvals} of {needed}): its tranches release when their conditions hold")
                            } else {
                                println!("plan {plan}: {approvals} of {needed} approvals; still awaiting approval")
                            }
                        }
                        _ => {}
                    }
                }
            }
            if r.is_applied() {
                Ok(ExitCode::SUCCESS)
            } else {
                if !ctx.json() {
                    eprintln!(
                        "the transaction was rejected and its nonce is used: the same signed \
                         transaction can never apply. Fix the cause above, then run the command \
                         again; it signs a new transaction with the next nonce"
                    );
                }
                Ok(ExitCode::FAILURE)
            }
        }
        (TxState::Committed, None) => {
            if !ctx.json() {
                println!("committed at height {}", st.height.unwrap_or(0));
            }
            Ok(ExitCode::SUCCESS)
        }
        _ if waited => bail!(
            "not committed within {} s; check later with `aidledger query tx {}`",
            WAIT_MS / 1000,
            st.id.to_hex()
        ),
        _ => Ok(ExitCode::SUCCESS),
    }
}
