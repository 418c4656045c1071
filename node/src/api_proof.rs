//! `GET /v1/proofs/payment` and `GET /v1/proofs/payment/qr.svg`: a
//! household's payment proof (ADR 020) as a file, and its receipt code as
//! a QR code for a printed receipt. The proof is built by
//! `aidledger_audit::proof`, the code `aidledger proof verify` checks it
//! with, and is checked before it is served. Nothing in it needs trusting
//! this node: a reader checks it against the genesis alone.

use std::sync::Arc;

use aidledger_audit::proof::{self, PaymentProof, ProofError, ProofRequest};
use aidledger_types::{Hash, Slug};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::{bad_request, query_rejection, AppState};
use crate::api_page::internal;
use crate::problem::{Problem, ProblemBody};

/// Proofs built at once. Finding a payment without its release id reads
/// its program's ledger, so requests past this are refused (503 `busy`)
/// rather than queued. The permit is held by the build itself, to its
/// end, even when the request that started it times out or hangs up.
pub const PROOFS_AT_ONCE: usize = 2;
/// Proofs kept after they are built, how many bytes of them at most (a
/// proof may be up to 8 MiB), and for how long.
const CACHED_PROOFS: usize = 32;
const CACHED_BYTES: usize = 16 << 20;
const CACHED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// A built proof as it is served: its JSON, encoded once, and the receipt
/// code its QR code draws.
pub(crate) struct Built {
    json: axum::body::Bytes,
    receipt_code: String,
}

/// The proofs built in the last [`CACHED_FOR`]: a receipt's QR code is
/// asked for right after its proof, and is not built again. Bounded in
/// count and in bytes.
#[derive(Default)]
pub struct ProofCache {
    recent:
        std::sync::Mutex<std::collections::VecDeque<(String, tokio::time::Instant, Arc<Built>)>>,
}

impl ProofCache {
    fn get(&self, key: &str) -> Option<Arc<Built>> {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|(_, at, _)| at.elapsed() < CACHED_FOR);
        r.iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, p)| p.clone())
    }

    fn put(&self, key: String, p: Arc<Built>) {
        if p.json.len() > CACHED_BYTES {
            return;
        }
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes: usize = r.iter().map(|(_, _, b)| b.json.len()).sum();
        while r.len() >= CACHED_PROOFS || bytes + p.json.len() > CACHED_BYTES {
            match r.pop_front() {
                Some((_, _, old)) => bytes -= old.json.len(),
                None => break,
            }
        }
        r.push_back((key, tokio::time::Instant::now(), p));
    }
}

/// Which payment: the household, the program and the period.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProofQuery {
    /// The salted household id (64 hex).
    household: String,
    /// The program's id.
    program: String,
    /// The entitlement period paid.
    period: u32,
    /// The entitlement, when the household has several of the program's
    /// paying that period.
    entitlement: Option<String>,
    /// The release that paid, when known: the proof is then built from
    /// its block alone. It must be the payment the other fields name.
    release: Option<u64>,
}

fn request(q: ProofQuery) -> Result<ProofRequest, Problem> {
    let household =
        Hash::from_hex(&q.household).map_err(|e| bad_request(format!("household: {e}")))?;
    let program = Slug::new(q.program).map_err(|e| bad_request(format!("program: {e}")))?;
    let entitlement = q
        .entitlement
        .map(Slug::new)
        .transpose()
        .map_err(|e| bad_request(format!("entitlement: {e}")))?;
    Ok(ProofRequest {
        household,
        program,
        period: q.period,
        entitlement,
        release: q.release,
    })
}

async fn build(s: &AppState, req: ProofRequest) -> Result<Arc<Built>, Problem> {
    let key = format!(
        "{}/{}/{}/{}/{}",
        req.household.to_hex(),
        req.program,
        req.period,
        req.entitlement.as_ref().map(Slug::as_str).unwrap_or(""),
        req.release.map(|r| r.to_string()).unwrap_or_default()
    );
    if let Some(p) = s.explore.proof_cache.get(&key) {
        return Ok(p);
    }
    let Ok(permit) = s.explore.proofs.clone().try_acquire_owned() else {
        return Err(Problem::new(
            "busy",
            format!("{PROOFS_AT_ONCE} proofs are being built; try again shortly"),
        ));
    };
    let store = s.store.clone();
    let p = tokio::task::spawn_blocking(move || {
        let p = proof::payment_proof(store.as_ref(), &req);
        drop(permit);
        p
    })
    .await
    .map_err(internal)?
    .map_err(|e| match e {
        ProofError::NotFound(m) => Problem::new("not-found", m),
        ProofError::Ambiguous(m) => Problem::new("ambiguous", m),
        ProofError::Unavailable(m) => Problem::new("pruned", m),
        ProofError::Store(m) => internal(m),
    })?;
    let p = Arc::new(Built {
        json: serde_json::to_vec(&p).map_err(internal)?.into(),
        receipt_code: p.receipt_code,
    });
    s.explore.proof_cache.put(key, p.clone());
    Ok(p)
}

/// A payment proof: the household's entitlement payment for one period, with its Merkle path, certificate and the validator-set changes from genesis. Check it offline with `aidledger proof verify FILE --genesis genesis.json`.
#[utoipa::path(
    get,
    path = "/v1/proofs/payment",
    tag = "households",
    params(ProofQuery),
    responses(
        (status = 200, description = "the proof file (ADR 020)", body = PaymentProof),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such payment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "several entitlements paid that period: name one", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "this node does not keep the block that paid (it joined from a snapshot)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "busy: too many proofs are being built", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn payment_proof(
    State(s): State<AppState>,
    q: Result<Query<ProofQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(query_rejection)?;
    // Served as encoded when built: neither copied nor encoded again.
    let p = build(&s, request(q)?).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], p.json.clone()).into_response())
}

/// The payment's receipt code as a QR code (SVG), for a printed receipt.
#[utoipa::path(
    get,
    path = "/v1/proofs/payment/qr.svg",
    tag = "households",
    params(ProofQuery),
    responses(
        (status = 200, description = "the receipt code as a QR code", body = String, content_type = "image/svg+xml"),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such payment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "several entitlements paid that period: name one", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "this node does not keep the block that paid (it joined from a snapshot)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "busy: too many proofs are being built", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn payment_qr(
    State(s): State<AppState>,
    q: Result<Query<ProofQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(query_rejection)?;
    let p = build(&s, request(q)?).await?;
    let svg = qr_svg(&p.receipt_code).map_err(internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        ],
        svg,
    )
        .into_response())
}

/// The QR code of `text`, medium error correction, with its quiet zone,
/// as an SVG at least 240 pixels wide.
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(len: usize) -> Arc<Built> {
        Arc::new(Built {
            json: vec![b' '; len].into(),
            receipt_code: String::new(),
        })
    }

    /// The cache holds at most [`CACHED_PROOFS`] proofs and
    /// [`CACHED_BYTES`] of them, dropping the oldest first; a proof larger
    /// than the whole budget is served but not kept.
    #[test]
    fn the_cache_is_bounded_in_count_and_bytes() {
        let c = ProofCache::default();
        for i in 0..CACHED_PROOFS + 5 {
            c.put(format!("k{i}"), built(10));
        }
        assert!(c.get("k0").is_none() && c.get("k4").is_none());
        assert!(c.get("k5").is_some() && c.get(&format!("k{}", CACHED_PROOFS + 4)).is_some());
        let c = ProofCache::default();
        let big = CACHED_BYTES / 3 + 1;
        for i in 0..3 {
            c.put(format!("b{i}"), built(big));
        }
        // Three of them do not fit: the first went.
        assert!(c.get("b0").is_none());
        assert!(c.get("b1").is_some() && c.get("b2").is_some());
        c.put("huge".into(), built(CACHED_BYTES + 1));
        assert!(c.get("huge").is_none());
        assert!(c.get("b2").is_some(), "an uncacheable proof evicts nothing");
        let held: usize = c
            .recent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| b.json.len())
            .sum();
        assert!(held <= CACHED_BYTES);
    }

    /// The QR code reads back as the receipt code: its modules, drawn as
    /// a grey image, decoded by an independent QR reader.
    #[test]
    fn qr_reads_back() {
        let text = "AIDLEDGER-PAYMENT-1;chain=demo;program=rural-min-2027;entitlement=monthly;\
                    period=3;household=6f1c0d8e5b3a29f7c4e1d0b9a8f7e6d5c4b3a2918070605040302010f0e0d0c0;\
                    amount=120000 CNY;release=17;height=42;\
                    event=9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";
        let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
            .unwrap();
        let width = code.width();
        let colors = code.to_colors();
        let scale = 4;
        let quiet = 4;
        let side = (width + 2 * quiet) * scale;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            if mx < quiet || my < quiet || mx >= width + quiet || my >= width + quiet {
                return 255;
            }
            match colors[(my - quiet) * width + (mx - quiet)] {
                qrcode::Color::Dark => 0,
                qrcode::Color::Light => 255,
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, text);
        // The SVG the route serves has a size, so a browser lays it out.
        let svg = qr_svg(text).unwrap();
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));
        assert!(svg.contains("width=\"") && svg.contains("height=\""));
        assert!(!svg.contains("<script"));
    }
}
