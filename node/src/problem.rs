//! The API's one error shape (ADR 019): RFC 9457 problem details, served
//! as `application/problem+json`, with a stable machine-readable `code`.
//! Every code the node can answer with is in [`PROBLEMS`], which
//! `GET /v1/problems` serves, so a client can match on codes instead of
//! text and a person can look one up.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One kind of problem: its code, its HTTP status and its title.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemKind {
    pub code: &'static str,
    pub status: u16,
    pub title: &'static str,
}

const fn kind(code: &'static str, status: u16, title: &'static str) -> ProblemKind {
    ProblemKind {
        code,
        status,
        title,
    }
}

/// Every problem code, with the status it is answered with. Transaction
/// refusals (422 but where noted) come from admission; their codes are
/// the same in a batch answer's per-transaction `code`.
pub const PROBLEMS: &[ProblemKind] = &[
    kind("bad-request", 400, "The request is malformed"),
    kind(
        "bad-cursor",
        400,
        "The page cursor does not belong to this list",
    ),
    kind("bad-limit", 400, "The page limit is out of range"),
    kind("unauthorized", 401, "The admin token is missing or wrong"),
    kind("forbidden", 403, "The admin API is off on this node"),
    kind("not-found", 404, "No such resource"),
    kind(
        "ambiguous",
        409,
        "More than one record matches the request: name one",
    ),
    kind(
        "method-not-allowed",
        405,
        "This route does not take that method",
    ),
    kind(
        "pruned",
        410,
        "This node does not keep that part of history (it joined from a snapshot)",
    ),
    kind(
        "payload-too-large",
        413,
        "The body is over the route's limit",
    ),
    kind(
        "unsupported-media-type",
        415,
        "The body must be JSON (Content-Type: application/json)",
    ),
    // Transaction refusals at admission.
    kind(
        "wrong-chain",
        422,
        "The transaction is signed for another chain",
    ),
    kind(
        "bad-signature",
        422,
        "The transaction's signature is invalid",
    ),
    kind(
        "bad-public-key",
        422,
        "The signer's key is not a valid ed25519 point",
    ),
    kind("invalid-tx", 422, "The transaction is not valid"),
    kind("over-limit", 422, "The transaction is over a size limit"),
    kind(
        "unknown-account",
        422,
        "The signer has no account on the chain",
    ),
    kind(
        "account-inactive",
        422,
        "The signer's account is not active",
    ),
    kind(
        "role-not-allowed",
        422,
        "The signer's roles may not sign this kind of transaction",
    ),
    kind(
        "nonce-too-low",
        422,
        "The nonce is used: this transaction can never be included",
    ),
    kind(
        "nonce-too-high",
        422,
        "The nonce is too far ahead of the account's next nonce",
    ),
    kind(
        "nonce-taken",
        422,
        "Another pending transaction of the account has this nonce",
    ),
    kind("already-pending", 422, "The transaction is already pending"),
    kind(
        "already-included",
        409,
        "The transaction is already on the chain (a signed transaction is included once)",
    ),
    kind(
        "sender-full",
        429,
        "The account has as many pending transactions as the node allows",
    ),
    kind(
        "rate-limited",
        429,
        "The client sent more write requests than it may",
    ),
    kind(
        "internal",
        500,
        "Internal error (the node's log has the details)",
    ),
    kind("mempool-full", 503, "The node's mempool is full"),
    kind("busy", 503, "The node is at its request or admission limit"),
    kind("timeout", 503, "The request took too long"),
    kind("unavailable", 503, "The node is shutting down or not ready"),
];

/// The kind of `code`; an unknown code is answered as `internal`.
pub fn kind_of(code: &str) -> ProblemKind {
    PROBLEMS
        .iter()
        .find(|k| k.code == code)
        .copied()
        .unwrap_or(ProblemKind {
            code: "internal",
            status: 500,
            title: "Internal error (the node's log has the details)",
        })
}

/// The body of every error answer (RFC 9457).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ProblemBody {
    /// `/v1/problems#<code>`: where the code is described.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    /// What went wrong this time, for a person.
    pub detail: String,
    /// The stable machine-readable code (one of `GET /v1/problems`).
    pub code: String,
}

/// An error answer: a code from [`PROBLEMS`] and its detail.
#[derive(Debug)]
pub struct Problem {
    pub code: &'static str,
    pub detail: String,
    /// Seconds for `Retry-After`; every 503 and 429 has one (1 s unless
    /// set).
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(kind_of(self.code).status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn body(&self) -> ProblemBody {
        let k = kind_of(self.code);
        ProblemBody {
            type_uri: format!("/v1/problems#{}", k.code),
            title: k.title.to_string(),
            status: k.status,
            detail: self.detail.clone(),
            code: k.code.to_string(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if matches!(status.as_u16(), 429 | 503) {
            let secs = self.retry_after.unwrap_or(1).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_with_valid_statuses() {
        let mut seen = std::collections::BTreeSet::new();
        for k in PROBLEMS {
            assert!(seen.insert(k.code), "{} twice", k.code);
            assert!(
                k.code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                k.code
            );
            assert!((400..600).contains(&k.status), "{}", k.code);
            assert!(!k.title.is_empty());
        }
    }

    /// Every admission refusal's code is one the API documents.
    #[test]
    fn every_admission_code_is_listed() {
        use aidledger_mempool::AdmitError;
        use aidledger_types::{Hash, PublicKey, TxKind};
        let pk = PublicKey([0; 32]);
        let errs = [
            AdmitError::TooLarge { len: 1, limit: 0 },
            AdmitError::Duplicate(Hash::ZERO),
            AdmitError::UnknownAccount(pk),
            AdmitError::InactiveAccount(pk),
            AdmitError::RoleNotAllowed {
                kind: TxKind::Deposit,
                needed: String::new(),
            },
            AdmitError::NonceTooLow { got: 0, next: 1 },
            AdmitError::NonceTooHigh {
                got: 9,
                next: 1,
                window: 1,
            },
            AdmitError::NonceTaken { nonce: 1 },
            AdmitError::Full { what: "count" },
            AdmitError::SenderFull { limit: 1 },
            AdmitError::Backlog {
                pending: 1,
                limit: 1,
                per_sec: 0,
                held: 1,
            },
        ];
        for e in errs {
            assert!(PROBLEMS.iter().any(|k| k.code == e.code()), "{}", e.code());
        }
        for e in [
            aidledger_crypto::CryptoError::BadSignature,
            aidledger_crypto::CryptoError::BadPublicKey,
            aidledger_crypto::CryptoError::CertHeight {
                expected: 1,
                got: 2,
            },
        ] {
            let r = aidledger_node_core::TxRefusal::from(e);
            assert!(PROBLEMS.iter().any(|k| k.code == r.code), "{}", r.code);
        }
    }

    #[test]
    fn an_answer_is_problem_json_and_busy_ones_say_when_to_come_back() {
        let r = Problem::new("nonce-too-low", "nonce 3 is used").into_response();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        for code in ["busy", "rate-limited", "mempool-full", "sender-full"] {
            let r = Problem::new(code, "later").into_response();
            assert_eq!(r.headers()[header::RETRY_AFTER], "1", "{code}");
        }
        let b = Problem::new("pruned", "below the base").body();
        assert_eq!(
            (b.status, b.type_uri.as_str()),
            (410, "/v1/problems#pruned")
        );
    }
}
