//! The OpenAPI document of the HTTP API, served at `/v1/openapi.json`
//! (ADR 019). It is generated from the code: each route's
//! `#[utoipa::path]` annotation, which the router also registers from
//! (`api::routes`), and the `ToSchema` derives of every request and answer
//! type. The tests validate it with an OpenAPI validator and walk every
//! route against it.

use std::sync::OnceLock;

use utoipa::OpenApi;

use crate::api::*;
use crate::api_docs::{__path_docs, __path_docs_bundle, __path_docs_css, __path_docs_init};
use crate::api_explore::{
    __path_applications, __path_blocks, __path_program_plans, __path_region, __path_regions,
};
use crate::api_proof::{__path_payment_proof, __path_payment_qr};
use crate::api_trace::{__path_application_trace, __path_household_trace};
use crate::explorer::{__path_explorer_css, __path_explorer_js, __path_explorer_page};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aidledger node API",
        version = "1",
        description = "Submit signed transactions to one aidledger node and read the state it has \
                       committed. Hashes and keys are lowercase hex; amounts are integer minor \
                       units; times are milliseconds since the Unix epoch. Lists and the program \
                       trace come in pages: pass `next` back as `after` until it is null. Every \
                       error is an RFC 9457 problem (`application/problem+json`) with a stable \
                       `code`; `GET /v1/problems` lists them. Served on loopback by default."
    ),
    paths(
        health,
        metrics,
        openapi,
        docs,
        docs_bundle,
        docs_init,
        docs_css,
        problems,
        status,
        submit,
        submit_batch,
        tx_status,
        block_latest,
        block_at,
        blocks,
        account,
        orgs,
        org,
        programs,
        program,
        program_trace,
        program_plans,
        applications,
        application,
        application_trace,
        plan,
        household,
        household_trace,
        release,
        payment_proof,
        payment_qr,
        anomalies,
        regions,
        region,
        isolate,
        explorer_page,
        explorer_js,
        explorer_css,
    ),
    tags(
        (name = "node", description = "The node itself: health, metrics, status, this document and its viewer (/v1/docs)"),
        (name = "transactions", description = "Submitting signed transactions and reading their receipts"),
        (name = "blocks", description = "Committed blocks with their commit certificates"),
        (name = "registry", description = "Member organisations and accounts"),
        (name = "programs", description = "Fund programs, their ledgers and releases"),
        (name = "applications", description = "Project applications, approvals and disbursement plans"),
        (name = "households", description = "Household files (salted ids; no personal data on chain) and their payment proofs, checked offline with `aidledger proof verify`"),
        (name = "anomalies", description = "What the cross-checks raised"),
        (name = "reports", description = "County and region reports, as `aidledger audit report --region` prints them"),
        (name = "explorer", description = "The explorer web app served at / (read-only; zh-CN and English)"),
        (name = "admin", description = "Fault drills; off unless api.admin = true"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;
    use std::sync::{Arc, RwLock};

    use aidledger_node_core::{Admission, Mutants};
    use aidledger_storage::RocksStore;
    use aidledger_types::{ChainId, Hash, OrgId, PublicKey};
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::document;
    use crate::admission::{AdmissionPool, PoolConfig};
    use crate::api::{router, routes, AppState, NodeInfo};
    use crate::driver::{Shared, Snapshot};
    use crate::metrics::Metrics;

    fn state(dir: &std::path::Path) -> AppState {
        let store = Arc::new(RocksStore::open(dir.join("db")).unwrap());
        let (driver, _rx) = tokio::sync::mpsc::channel(16);
        let chain = ChainId::new("openapi-test").unwrap();
        let admission = Arc::new(Admission::new(
            chain,
            store.clone(),
            64,
            1 << 20,
            &Mutants::default(),
        ));
        let pool = AdmissionPool::start(
            admission,
            PoolConfig {
                threads: 1,
                queue_txs: 64,
                lane_txs: 16,
            },
            driver.clone(),
            None,
        )
        .unwrap();
        AppState {
            store,
            driver,
            pool,
            shared: Arc::new(Shared {
                snapshot: RwLock::new(Snapshot::default()),
                commits: tokio::sync::broadcast::channel(16).0,
                metrics: Metrics::new(),
                stopping: tokio::sync::watch::channel(false).0,
            }),
            info: Arc::new(NodeInfo {
                chain_id: "openapi-test".into(),
                org: OrgId::new("state-bank").unwrap(),
                node_key: PublicKey([1; 32]),
                genesis_hash: Hash::ZERO,
                admin_token: None,
            }),
            explore: Default::default(),
        }
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: Value = serde_json::from_str(document()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch", "head"].contains(&method.as_str()) {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    /// The route walk: the routes the router registers are exactly the
    /// document's operations, and each answers from its own handler (not
    /// the unknown-route or wrong-method fallback).
    #[tokio::test]
    async fn every_route_is_documented_and_every_operation_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let registered: BTreeSet<(String, String)> =
            routes(&s, 1 << 16).table.into_iter().collect();
        let documented = documented();
        assert!(documented.len() >= 28, "{documented:?}");
        assert_eq!(registered, documented);

        let app = router(s, 1 << 16);
        for (method, path) in &documented {
            let uri = path
                .replace("{id}", "x")
                .replace("{height}", "1")
                .replace("{key}", "00");
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let r = app.clone().oneshot(req).await.unwrap();
            let status = r.status().as_u16();
            let body = axum::body::to_bytes(r.into_body(), 8 << 20).await.unwrap();
            let text = String::from_utf8_lossy(&body);
            assert_ne!(status, 405, "{method} {uri}: {text}");
            assert!(
                !(status == 404 && text.contains("no route")),
                "{method} {uri} is documented but not served: {text}"
            );
        }
    }

    /// Payment proofs read a program's ledger: past the proofs being
    /// built, a request is refused at once (503 `busy`), never queued; and
    /// one is served again once a build ends.
    #[tokio::test]
    async fn proofs_past_the_limit_are_refused_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let app = router(s.clone(), 1 << 16);
        let uri = "/v1/proofs/payment?household=\
                   0000000000000000000000000000000000000000000000000000000000000000\
                   &program=some-fund&period=1";
        let ask = |app: axum::Router| async move {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let r = app.oneshot(req).await.unwrap();
            let status = r.status().as_u16();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8_lossy(&body).to_string())
        };
        let held = s
            .explore
            .proofs
            .try_acquire_many(crate::api_proof::PROOFS_AT_ONCE as u32)
            .unwrap();
        let (status, text) = ask(app.clone()).await;
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("\"busy\""), "{text}");
        drop(held);
        // Free again: this store has no genesis, so the answer is the
        // store's, not `busy`.
        let (status, text) = ask(app).await;
        assert_ne!(status, 503, "{text}");
    }

    /// Waiting block reads are bounded: with every wait taken, a read that
    /// asks to wait is answered at once (here 404: the block is not made),
    /// so waits never hold every request slot.
    #[tokio::test]
    async fn block_waits_past_the_limit_are_answered_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let app = router(s.clone(), 1 << 16);
        let held = s
            .explore
            .block_waits
            .try_acquire_many(crate::api::BLOCK_WAITS_AT_ONCE as u32)
            .unwrap();
        let req = Request::builder()
            .uri("/v1/blocks/5?wait_ms=60000")
            .body(Body::empty())
            .unwrap();
        // Were it to wait, it would take the whole minute.
        let r = tokio::time::timeout(std::time::Duration::from_secs(20), app.oneshot(req))
            .await
            .expect("a read past the waits was made to wait")
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        drop(held);
    }

    /// A block read waiting for a commit while the node stops is told so,
    /// 503 with Retry-After, not the 404 of a wait that ran out: the client
    /// asks again after the restart or asks another member. Without a wait
    /// the answer stays 404.
    #[tokio::test]
    async fn a_block_wait_cut_by_the_stop_is_503_not_404() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let app = router(s.clone(), 1 << 16);
        let get = |uri: &str| {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let app = app.clone();
            async move {
                tokio::time::timeout(std::time::Duration::from_secs(20), app.oneshot(req))
                    .await
                    .expect("the read waited on past the stop")
                    .unwrap()
            }
        };
        let waiting = tokio::spawn(get("/v1/blocks/5?wait_ms=60000"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "block 5 is not made: the read waits"
        );
        s.shared.stopping.send_replace(true);
        let r = waiting.await.unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("shutting down before block 5"), "{text}");
        // A read begun while stopping does not wait either.
        let r = get("/v1/blocks/5?wait_ms=60000").await;
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(get("/v1/blocks/5").await.status().as_u16(), 404);
    }

    /// Every operation has a typed success answer and describes its path
    /// parameters (the hand-written document did not).
    #[test]
    fn every_operation_has_schemas_and_declares_its_path_parameters() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let ok = op["responses"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(c, _)| c.starts_with('2'))
                    .unwrap_or_else(|| panic!("{method} {path}: no 2xx answer"));
                if ok.0 != "204" {
                    assert!(
                        ok.1["content"]
                            .as_object()
                            .is_some_and(|c| c.values().all(|m| m["schema"].is_object())),
                        "{method} {path}: the answer has no schema: {}",
                        ok.1
                    );
                }
                for p in path.split('{').skip(1) {
                    let name = p.split('}').next().unwrap();
                    assert!(
                        op["parameters"].as_array().is_some_and(|ps| ps
                            .iter()
                            .any(|x| x["name"] == name && x["in"] == "path")),
                        "{method} {path}: path parameter {name} is not declared"
                    );
                }
                for (code, r) in op["responses"].as_object().unwrap() {
                    if code.starts_with('4') || code.starts_with('5') {
                        assert!(
                            r["content"]["application/problem+json"]["schema"].is_object(),
                            "{method} {path} {code}: not a problem"
                        );
                    }
                }
            }
        }
    }

    /// The document passes an OpenAPI validator (openapi-spec-validator,
    /// which `scripts/prereqs.sh openapi` installs). Skipped, with a notice,
    /// where it is absent.
    #[test]
    fn the_document_passes_an_openapi_validator() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, document()).unwrap();
        let out = match std::process::Command::new("openapi-spec-validator")
            .arg(&file)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!(
                    "NOTICE: openapi-spec-validator is not runnable ({e}); skipping the \
                     OpenAPI validation (scripts/prereqs.sh openapi installs it)"
                );
                return;
            }
        };
        assert!(
            out.status.success(),
            "the OpenAPI document is invalid:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
