//! Helpers shared by the command-line tests: run the `aidledger` binary
//! as a process and check its exit code and one-line errors.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod consortium;
pub mod openapi;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aidledger"));
    c.env_remove("AIDLEDGER_HOME")
        .env_remove("AIDLEDGER_NODE")
        .env_remove("AIDLEDGER_TEST_MODULES");
    c
}

pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// [`run`] with extra environment variables (test knobs).
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    bin().args(args).envs(env.iter().copied()).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

/// [`ok`] with extra environment variables (test knobs).
pub fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = run_env(args, env);
    assert!(
        o.status.success(),
        "{args:?} failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

/// Runs a command that must fail with `code` and a one-line error.
pub fn fails(args: &[&str], code: i32, needle: &str) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}{}", stdout(&o));
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    err
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn gen_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    let pk = ok(&["keys", "generate", "--out", s(&p)]).trim().to_string();
    (p, pk)
}

/// `aidledger tx create-program --wait` at `api`, signed with the program
/// officer's key file `key`: a CNY program funded by the state bank, with a
/// 1,000,000.00 ceiling, approvals from two of the poverty office and the
/// development bank, in Gansu. Returns the command's output.
pub fn create_program(api: &str, key: &str, id: &str, title: &str) -> String {
    ok(&[
        "tx",
        "create-program",
        "--node",
        api,
        "--key",
        key,
        "--wait",
        "--id",
        id,
        "--title",
        title,
        "--currency",
        "CNY",
        "--funding-orgs",
        "state-bank",
        "--ceiling",
        "1000000.00",
        "--threshold",
        "2",
        "--policy-orgs",
        "poverty-office,dev-bank",
        "--region-scope",
        "gansu",
    ])
}

/// `aidledger tx deposit --wait` of `amount` into `program` at `api`,
/// signed with the disburser's key file `key`.
pub fn deposit(api: &str, key: &str, program: &str, amount: &str) -> String {
    ok(&[
        "tx",
        "deposit",
        "--node",
        api,
        "--key",
        key,
        "--program",
        program,
        "--amount",
        amount,
        "--wait",
    ])
}

/// A deposit of 1 to a program that does not exist, signed by `key` for
/// `chain` with `nonce`: a well-formed transaction for admission tests,
/// whose receipt, if it ever commits, is a rejection.
pub fn unfunded_deposit(
    key: &aidledger_crypto::Keypair,
    chain: &aidledger_types::ChainId,
    nonce: u64,
) -> aidledger_types::SignedTx {
    use aidledger_contracts::{payload, Payload};
    let p = Payload::Deposit(payload::Deposit {
        program: aidledger_types::Slug::new("no-such-program").unwrap(),
        amount: aidledger_types::Amount(1),
    });
    let body = aidledger_types::TxBody {
        chain_id: chain.clone(),
        nonce,
        signer: key.public(),
        kind: p.kind(),
        payload: p.encode(),
    };
    let signature = key.sign(chain, aidledger_crypto::Purpose::Tx, body.id().as_bytes());
    aidledger_types::SignedTx { body, signature }
}
