//! `aidledger proof payment` and `aidledger proof verify`: a household's
//! payment proof (ADR 020), fetched from a node and checked offline
//! against the genesis file alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aidledger_audit::proof::{self, PaymentProof, VerifiedPayment, PROOF_MAX_BYTES};
use aidledger_types::{Amount, Hash, Slug};
use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};

use super::{args, print_json, usage, Ctx, Output};

#[derive(Subcommand, Debug)]
pub enum ProofCmd {
    /// Write the proof that a program paid a household for a period: the
    /// payment, its Merkle path, the block's certificate and the
    /// validator-set changes from genesis. Anyone checks it offline with
    /// `proof verify`.
    Payment(PaymentArgs),
    /// Check a proof file with no node and no network, against the
    /// genesis file you trust. Exit 0 when it checks, 1 when it does not.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct PaymentArgs {
    /// The salted household id (64 hex; see `aidledger household-id`).
    #[arg(long, value_parser = args::hash)]
    household: Hash,
    /// The program that paid.
    #[arg(long, value_parser = args::slug)]
    program: Slug,
    /// The entitlement period paid.
    #[arg(long)]
    period: u32,
    /// The entitlement, when several of the program's paid that period.
    #[arg(long, value_parser = args::slug)]
    entitlement: Option<Slug>,
    /// The release that paid, if you know it (`query trace --household`
    /// lists them): the node then reads that release's block alone.
    #[arg(long)]
    release: Option<u64>,
    /// Where to write the proof [default: payment-proof-PROGRAM-PERIOD-HOUSEHOLD.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also check the proof against this genesis file before writing it.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The proof file (`-` for standard input).
    file: PathBuf,
    /// The consortium's genesis file, the only thing trusted.
    #[arg(long, value_name = "FILE")]
    genesis: PathBuf,
    /// The code printed on a receipt (its QR code): the proof must be of
    /// that payment.
    #[arg(long, value_name = "CODE")]
    receipt: Option<String>,
}

pub fn run(ctx: &Ctx, cmd: ProofCmd) -> Result<ExitCode> {
    match cmd {
        ProofCmd::Payment(a) => payment(ctx, a),
        ProofCmd::Verify(a) => verify(ctx, a),
    }
}

fn payment(ctx: &Ctx, a: PaymentArgs) -> Result<ExitCode> {
    let genesis = a
        .genesis
        .as_deref()
        .map(crate::node::load_genesis)
        .transpose()
        .map_err(|e| usage(format!("{e:#}")))?;
    let mut path = format!(
        "/v1/proofs/payment?household={}&program={}&period={}",
        a.household.to_hex(),
        a.program,
        a.period
    );
    if let Some(e) = &a.entitlement {
        path.push_str(&format!("&entitlement={e}"));
    }
    if let Some(r) = a.release {
        path.push_str(&format!("&release={r}"));
    }
    let p: PaymentProof = ctx
        .client()?
        .get(&path)
        .context("fetching the proof from the node")?;
    if let Some(g) = &genesis {
        proof::verify_payment_proof(&p, g)
            .map_err(|e| anyhow!("the node's proof does not check against the genesis: {e}"))?;
    }
    let out = a.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "payment-proof-{}-{}-{}.json",
            a.program,
            a.period,
            &a.household.to_hex()[..8]
        ))
    });
    let bytes = serde_json::to_vec_pretty(&p)?;
    super::audit::write_atomically(&out, |w| {
        w.write_all(&bytes)?;
        w.write_all(b"\n")?;
        Ok(())
    })?;
    match ctx.output {
        Output::Json => print_json(&serde_json::json!({
            "file": out,
            "receipt_code": p.receipt_code,
            "summary": p.summary,
            "checked_against_genesis": genesis.is_some(),
        }))?,
        _ => {
            println!("wrote {} ({} bytes)", out.display(), bytes.len() + 1);
            println!("receipt code: {}", p.receipt_code);
            if genesis.is_none() {
                println!(
                    "check it offline: aidledger proof verify {} --genesis genesis.json",
                    out.display()
                );
            } else {
                println!("checked against the genesis file: it verifies");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_proof(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = PROOF_MAX_BYTES + 1;
    if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("reading {}", path.display()))
            .map_err(|e| usage(format!("{e:#}")))?
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

fn verify(ctx: &Ctx, a: VerifyArgs) -> Result<ExitCode> {
    let genesis = crate::node::load_genesis(&a.genesis).map_err(|e| usage(format!("{e:#}")))?;
    let bytes = read_proof(&a.file)?;
    let checked = proof::parse_proof(&bytes)
        .and_then(|p| proof::verify_payment_proof(&p, &genesis))
        .map_err(|e| anyhow!("{} does not check: {e}", a.file.display()))?;
    if let Some(code) = &a.receipt {
        if code.trim() != checked.receipt_code {
            return Err(anyhow!(
                "{} does not check: receipt code: the proof is of another payment than the \
                 receipt's",
                a.file.display()
            ));
        }
    }
    match ctx.output {
        Output::Json => print_json(&checked)?,
        _ => print_receipt(&checked, a.receipt.is_some()),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_receipt(v: &VerifiedPayment, receipt_checked: bool) {
    let s = &v.summary;
    // The minor units are proven; the decimals (checked to be at most 8)
    // only place the point, as the program declares its currency.
    let amount = s
        .amount
        .parse::<u64>()
        .map(|m| Amount(m).to_decimal(u32::from(s.decimals)))
        .unwrap_or_else(|_| s.amount.clone());
    println!("payment proof: VERIFIED against the genesis file, offline");
    println!(
        "  chain          {} (genesis {})",
        v.chain_id,
        v.genesis_hash.short()
    );
    println!("  household      {}", s.household.to_hex());
    println!("  program        {}", s.program);
    println!("  entitlement    {}", s.entitlement);
    println!("  period         {}", s.period);
    println!(
        "  amount         {} minor units of {} ({amount} {} at the program's {} decimals)",
        s.amount, s.currency, s.currency, s.decimals
    );
    println!("  release        {}", s.release);
    println!(
        "  paid in block  {} ({}), {}",
        s.height,
        v.block_hash.short(),
        aidledger_audit::report::iso(s.time_ms)
    );
    match (&s.settlement_height, &v.settlement_block_hash) {
        (Some(h), Some(b)) => println!("  bank confirmed in block {h} ({})", b.short()),
        _ => println!("  bank confirmation: not yet (the proof holds none)"),
    }
    println!(
        "  validator-set changes followed from genesis: {}",
        v.set_changes
    );
    if receipt_checked {
        println!("  the receipt code given matches this payment");
    }
    println!("receipt code: {}", v.receipt_code);
}
