//! The verdict on a chain that does not verify.

use std::fmt;

use aidledger_crypto::CryptoError;
use aidledger_execution::BlockInvalid;
use serde::{Deserialize, Serialize};

/// The first thing that failed: where (a height, or the file as a whole),
/// what (the object: "block", "certificate", "tx 3", "state", "genesis",
/// "file") and why.
///
/// Displayed as `height 77: certificate has 2 of 3 required signatures`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `None` for failures that belong to no height (a chain file's
    /// trailing digest, say).
    pub height: Option<u64>,
    pub object: String,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.height {
            Some(h) => write!(f, "height {h}: {} {}", self.object, self.reason),
            None => write!(f, "{} {}", self.object, self.reason),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn at(height: u64, object: impl Into<String>, reason: impl Into<String>) -> Failure {
        Failure {
            height: Some(height),
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub fn file(reason: impl Into<String>) -> Failure {
        Failure {
            height: None,
            object: "file".into(),
            reason: reason.into(),
        }
    }

    /// A certificate that does not verify against the set in force.
    pub(crate) fn certificate(height: u64, e: &CryptoError) -> Failure {
        let text = e.to_string();
        let reason = match text.strip_prefix("certificate ") {
            Some(rest) => rest.to_string(),
            None => text,
        };
        Failure::at(height, "certificate", reason)
    }

    /// A block check of the execution crate that failed.
    pub(crate) fn block(e: &BlockInvalid) -> Failure {
        use BlockInvalid as B;
        match e {
            B::WrongChain {
                height,
                expected,
                got,
            } => Failure::at(
                *height,
                "block",
                format!("is for chain {got:?}, expected {expected:?}"),
            ),
            B::WrongHeight { expected, got } => Failure::at(
                *expected,
                "block",
                format!("missing: the next block in the chain claims height {got}"),
            ),
            B::WrongParent {
                height,
                expected,
                got,
            } => Failure::at(
                *height,
                "block",
                format!(
                    "parent hash {} does not match the hash of block {} ({})",
                    got.short(),
                    height.saturating_sub(1),
                    expected.short()
                ),
            ),
            B::TimestampNotMonotonic {
                height,
                parent,
                got,
            } => Failure::at(
                *height,
                "block",
                format!(
                    "timestamp {} is not after its parent's {}",
                    got.iso8601(),
                    parent.iso8601()
                ),
            ),
            B::TimestampBelowFloor { height, floor, got } => Failure::at(
                *height,
                "block",
                format!(
                    "timestamp {} is below {}, the median commit time in its parent's \
                     certificate",
                    got.iso8601(),
                    floor.iso8601()
                ),
            ),
            B::EmptyBeforeDue {
                height,
                got,
                due,
                reason,
            } => Failure::at(
                *height,
                "block",
                format!(
                    "is empty at {}, before the chain's next due time {} ({reason}), with no view change",
                    got.iso8601(),
                    due.iso8601()
                ),
            ),
            B::ParentCertificate { height, reason } => Failure::at(
                *height,
                "block",
                format!("carries an invalid certificate of its parent: {reason}"),
            ),
            B::TimestampTooFarAhead { height, got, .. } => Failure::at(
                *height,
                "block",
                format!("timestamp {} is too far ahead", got.iso8601()),
            ),
            B::UnknownProposer { height, proposer } => Failure::at(
                *height,
                "block",
                format!("proposer {proposer} is not in the validator set in force"),
            ),
            B::ValidatorSetMismatch {
                height,
                expected,
                got,
            } => Failure::at(
                *height,
                "block",
                format!(
                    "names validator set {}, but the set in force is {}",
                    got.short(),
                    expected.short()
                ),
            ),
            B::NextValidatorSetMismatch {
                height,
                header,
                computed,
            } => Failure::at(
                *height,
                "block",
                format!(
                    "names next validator set {}, but executing it leaves {}",
                    header.short(),
                    computed.short()
                ),
            ),
            B::HeaderVersion { height, got, known } => Failure::at(
                *height,
                "block",
                format!("has header format {got}; this auditor knows formats {known}"),
            ),
            B::TooManyTxs {
                height,
                count,
                limit,
            } => Failure::at(
                *height,
                "block",
                format!("has {count} transactions, over the limit of {limit}"),
            ),
            B::TxCount {
                height,
                header,
                body,
            } => Failure::at(
                *height,
                "tx root",
                format!("mismatch: the header counts {header} transactions, the body has {body}"),
            ),
            B::TxRoot { height, .. } => Failure::at(
                *height,
                "tx root",
                "mismatch: the transactions were altered, reordered, added or removed",
            ),
            B::TxSignature {
                height,
                index,
                reason,
                ..
            } => Failure::at(
                *height,
                format!("tx {index}"),
                if reason == "signature is invalid" {
                    "signature invalid".to_string()
                } else {
                    format!("signature invalid: {reason}")
                },
            ),
            B::DuplicateTx { height, index, id } => Failure::at(
                *height,
                format!("tx {index}"),
                format!("repeats transaction {}", id.short()),
            ),
            B::TxNotIncludable {
                height,
                index,
                id,
                code,
                reason,
            } => Failure::at(
                *height,
                format!("tx {index}"),
                match code.as_str() {
                    // A nonce below the account's next one: this transaction,
                    // or another one with its nonce, is already on the chain.
                    "wrong-nonce" | "duplicate-tx" => format!(
                        "transaction {} may not be included here: {reason} (a signer's nonce \
                         is used once, so a transaction already on the chain can never be \
                         included again)",
                        id.short()
                    ),
                    _ => format!(
                        "transaction {} may not be included here: {reason}",
                        id.short()
                    ),
                },
            ),
            B::Execution {
                height,
                source:
                    aidledger_execution::ExecError::Contract {
                        source:
                            aidledger_execution::contracts::ContractError::UnsupportedModule {
                                name,
                                version,
                                carried,
                                ..
                            },
                        ..
                    },
            } => Failure::at(
                *height,
                "contract modules",
                format!(
                    "the chain runs {name}@{version} from here, which this build of aidledger \
                     does not carry (it carries {carried}): the replay cannot check this block \
                     or any later one. That says nothing against the chain; replay with a \
                     release that carries {name}@{version}"
                ),
            ),
            B::Execution { height, source } => {
                Failure::at(*height, "execution", format!("failed: {source}"))
            }
            B::StateRootMismatch {
                height,
                header,
                computed,
            } => Failure::at(
                *height,
                "state root",
                format!(
                    "mismatch: the header says {}, the replay computed {}",
                    header.short(),
                    computed.short()
                ),
            ),
            B::EventRootMismatch {
                height,
                header,
                header_count,
                computed,
                computed_count,
            } => Failure::at(
                *height,
                "event root",
                format!(
                    "mismatch: the header says {} over {header_count} events, the replay \
                     computed {} over {computed_count}",
                    header.short(),
                    computed.short()
                ),
            ),
        }
    }
}

/// A state key for people: printable ASCII as is, other bytes in hex.
pub(crate) fn show_key(k: &[u8]) -> String {
    let mut out = String::new();
    let mut hex_run = Vec::new();
    let flush = |out: &mut String, run: &mut Vec<u8>| {
        if !run.is_empty() {
            out.push_str(&format!("<{}>", hex::encode(&*run)));
            run.clear();
        }
    };
    for &b in k {
        if (0x21..0x7f).contains(&b) {
            flush(&mut out, &mut hex_run);
            out.push(b as char);
        } else {
            hex_run.push(b);
        }
    }
    flush(&mut out, &mut hex_run);
    out
}
