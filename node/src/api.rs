//! The HTTP JSON API (axum), loopback by default. Reads committed data
//! straight from the store; submissions go to the consensus task.

use std::sync::Arc;
use std::time::Duration;

use aidledger_contracts::{
    keys, Account, Anomaly, Application, Household, MoneyEvent, Org, Plan, Program, Receipt,
    Release, TxOutcome,
};
use aidledger_storage::{RocksStore, Store, TxIndexed};
use aidledger_types::{codec, Hash, OrgId, PublicKey, SignedTx, Slug};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::api_types::*;
use aidledger_crypto::HashedTx;
use aidledger_node_core::{Screened, TxRefusal, Verdict};

use crate::api_page::{self, Page, PageQuery, Part};
use crate::problem::{Problem, ProblemBody, ProblemKind};

use crate::admission::{AdmissionPool, Busy, Lane};
use crate::driver::{DriverMsg, Shared};
use crate::http_server::ClientIp;
use aidledger_mempool::BACKLOG_SENDER_GRACE;

/// Largest batch submission body. `BATCH_SUBMIT_MAX` typical transactions
/// (about 400 hex characters each) fit easily; a batch of the largest
/// transactions hits this limit first and is refused whole.
const BATCH_BODY_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest a submit may wait for its commit.
const WAIT_MAX_MS: u64 = 120_000;
/// Longest a block read may wait for its block (`?wait_ms`).
const BLOCK_WAIT_MAX_MS: u64 = 60_000;
/// Most block reads waiting at once. A wait costs nothing but its request
/// slot, and anyone may ask for one, so without this bound a few hundred
/// waits would hold every slot of `api.max_requests` (256 by default) for
/// a minute; past it a read is answered at once, as without `wait_ms`.
pub(crate) const BLOCK_WAITS_AT_ONCE: usize = 32;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<RocksStore>,
    pub driver: mpsc::Sender<DriverMsg>,
    /// Signature checks off the consensus task (ADR 016).
    pub pool: AdmissionPool,
    pub shared: Arc<Shared>,
    pub info: Arc<NodeInfo>,
    /// What the explorer's reads share (`crate::api_explore`).
    pub explore: Arc<crate::api_explore::ExploreCache>,
}

pub struct NodeInfo {
    pub chain_id: String,
    pub org: OrgId,
    pub node_key: PublicKey,
    pub genesis_hash: Hash,
    /// The admin routes' bearer token (`HOME/keys/admin.token`), when
    /// `api.admin` is on in config.toml; `None` turns the routes off.
    pub admin_token: Option<String>,
}

/// Whether `header` (an `Authorization` value) is `Bearer <token>`. The
/// comparison takes the same time wherever the first difference is.
pub(crate) fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Every error answer of the API (ADR 019).
pub type ApiFailure = Problem;

type ApiResult<T> = Result<Json<T>, ApiFailure>;

pub(crate) fn bad_request(msg: impl Into<String>) -> ApiFailure {
    Problem::new("bad-request", msg.into())
}
/// A body that could not be read as the route's JSON: 413 when it is over
/// the route's limit, 400 otherwise.
fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiFailure {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new("payload-too-large", e.body_text()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new("unsupported-media-type", e.body_text()),
        _ => bad_request(e.body_text()),
    }
}

/// Refuses a request whose declared `Content-Length` is over `limit` with
/// 413 before any of its body is read.
async fn declared_length_within(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Problem::new(
            "payload-too-large",
            format!("the body is over this route's limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// A client whose admission lane is at least half full is answered 503
/// busy before its body is parsed (ADR 016): a client that ignores
/// back-pressure costs the node no parsing, and still has one request in
/// flight beside what is queued. The body is read and dropped (at most the
/// batch route's limit, within the body deadline) so the client reads the
/// 503 on a connection that stays open, instead of a reset mid-upload.
async fn lane_has_room(
    State(pool): State<AdmissionPool>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body_util::BodyExt;
    let ip = req.extensions().get::<ClientIp>().copied();
    if let Some(ClientIp(ip)) = ip {
        if pool.lane_half_full(Lane::Client(ip)) {
            pool.count_busy();
            let mut body = http_body_util::Limited::new(req.into_body(), BATCH_BODY_MAX_BYTES);
            while let Some(Ok(_)) = body.frame().await {}
            return busy().into_response();
        }
    }
    next.run(req).await
}

/// Refuses a request of `n` transactions whole, 503 `mempool-full`, when
/// the driver's last snapshot shows the mempool at its backlog limit
/// (ADR 023): a client that keeps sending batches while the chain cannot
/// keep up costs no signature checks. A request of at most
/// [`BACKLOG_SENDER_GRACE`] goes on to the core, which takes it if its
/// account holds fewer than that many pending: an office's few beside
/// another's bulk import. (Before the driver's first snapshot the limit
/// reads 0: no refusal.)
fn backlog_has_room(s: &AppState, n: usize) -> Result<(), ApiFailure> {
    if n <= BACKLOG_SENDER_GRACE {
        return Ok(());
    }
    let (pending, limit) = s
        .shared
        .snapshot
        .read()
        .map(|g| (g.mempool_txs, g.backlog_txs))
        .map_err(|_| internal("status lock poisoned"))?;
    if limit == 0 || pending < limit {
        return Ok(());
    }
    let m = &s.shared.metrics;
    m.refused_txs.inc_by(n as u64);
    m.backlog_refused_txs.inc_by(n as u64);
    Err(Problem::new(
        "mempool-full",
        format!(
            "{pending} transactions are pending, the node's backlog limit of {limit} at the \
             chain's recent commit rate; retry later"
        ),
    ))
}

fn busy() -> ApiFailure {
    Problem::new(
        "busy",
        "the node's admission queue is full for this client; retry after 1 s",
    )
}

fn not_found(msg: impl Into<String>) -> ApiFailure {
    Problem::new("not-found", msg.into())
}
fn internal(msg: impl std::fmt::Display) -> ApiFailure {
    Problem::new("internal", hide_internal(msg))
}

/// Logs an internal error (a storage failure, say, whose text names data
/// paths and library internals) under a fresh error id, and returns what
/// the client may see: the id, nothing else.
pub(crate) fn hide_internal(msg: impl std::fmt::Display) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static BOOT: OnceLock<u32> = OnceLock::new();
    // The start time in ms tells apart ids of one node's restarts.
    let boot = *BOOT.get_or_init(|| crate::clock::now_ms() as u32);
    let id = format!("{boot:08x}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    tracing::error!(error_id = %id, "internal error in the API: {msg}");
    format!("internal error {id}: the node's log has the details under this id")
}
fn unavailable(msg: impl Into<String>) -> ApiFailure {
    Problem::new("unavailable", msg.into())
}

/// Admission for a client's transactions (ADR 016): the screen here, on
/// the request's task; the signature check in the admission pool, in the
/// client's lane; the mempool in the core. One verdict per transaction, in
/// order. Refusals before the core are counted here, so a flood of them
/// never reaches the driver. A request that does not fit the pool is
/// refused whole: 503 busy. While the mempool holds its backlog (ADR 023)
/// a request is refused whole before any work, 503 `mempool-full`; the
/// core checks the bound again for each transaction it admits.
async fn admit(
    s: &AppState,
    client: Option<ClientIp>,
    txs: Vec<HashedTx>,
) -> Result<Vec<Result<Hash, TxRefusal>>, ApiFailure> {
    backlog_has_room(s, txs.len())?;
    let lane = Lane::Client(client.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0));
    let screened = s.pool.admission().screen_hashed(txs);
    let verdicts: Vec<Verdict> = if screened.iter().any(Screened::is_pending) {
        let chunks = s.pool.submit(lane, screened).map_err(|Busy| busy())?;
        let mut all = Vec::new();
        for rx in chunks {
            all.extend(rx.await.map_err(|_| unavailable("node is shutting down"))?);
        }
        all
    } else {
        screened
            .into_iter()
            .map(|s| match s {
                Screened::Refused(e) => Err(e),
                Screened::Pending(_) => Err(TxRefusal::new("internal", "not checked")),
            })
            .collect()
    };
    let mut out: Vec<Result<Hash, TxRefusal>> = Vec::with_capacity(verdicts.len());
    let mut verified = Vec::new();
    let mut slots = Vec::new();
    let mut refused = 0u64;
    for v in verdicts {
        match v {
            Ok(v) => {
                slots.push(out.len());
                out.push(Ok(v.id()));
                verified.push(Ok(v));
            }
            Err(e) => {
                refused += 1;
                out.push(Err(e));
            }
        }
    }
    s.shared.metrics.refused_txs.inc_by(refused);
    if !verified.is_empty() {
        let (reply, rx) = oneshot::channel();
        s.driver
            .send(DriverMsg::Submit {
                txs: verified,
                reply,
            })
            .await
            .map_err(|_| unavailable("node is shutting down"))?;
        let answers = rx.await.map_err(|_| unavailable("node is shutting down"))?;
        for (slot, a) in slots.into_iter().zip(answers) {
            out[slot] = a;
        }
    }
    Ok(out)
}

/// The routes, each registered from its `#[utoipa::path]` operation: the
/// path and the methods come from the annotation, so the router and the
/// OpenAPI document (`crate::openapi`) cannot name different routes. The
/// table lists what was registered, for the route walk.
pub(crate) struct Routes {
    router: Router<AppState>,
    pub(crate) table: Vec<(String, String)>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// Registers `handler` (a method router holding the handler of `P`)
    /// at `P`'s path.
    fn add<P: utoipa::Path>(mut self, handler: axum::routing::MethodRouter<AppState>) -> Routes {
        let path = P::path();
        for m in P::methods() {
            let m = serde_json::to_value(&m)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            self.table.push((m, path.clone()));
        }
        self.router = self.router.route(&path, handler);
        self
    }
}

/// Every route of the API, with the table of what was registered.
pub(crate) fn routes(state: &AppState, body_max_bytes: usize) -> Routes {
    use crate::api_docs::{__path_docs, __path_docs_bundle, __path_docs_css, __path_docs_init};
    use crate::api_explore::{
        __path_applications, __path_blocks, __path_program_plans, __path_region, __path_regions,
    };
    use crate::api_proof::{__path_payment_proof, __path_payment_qr};
    use crate::api_trace::{__path_application_trace, __path_household_trace};
    use crate::explorer::{__path_explorer_css, __path_explorer_js, __path_explorer_page};
    Routes::new()
        .add::<__path_health>(get(health))
        .add::<__path_metrics>(get(metrics))
        .add::<__path_openapi>(get(openapi))
        .add::<__path_docs>(get(crate::api_docs::docs))
        .add::<__path_docs_bundle>(get(crate::api_docs::docs_bundle))
        .add::<__path_docs_init>(get(crate::api_docs::docs_init))
        .add::<__path_docs_css>(get(crate::api_docs::docs_css))
        .add::<__path_problems>(get(problems))
        .add::<__path_status>(get(status))
        .add::<__path_submit>(
            post(submit)
                .layer(axum::middleware::from_fn_with_state(
                    body_max_bytes,
                    declared_length_within,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.pool.clone(),
                    lane_has_room,
                )),
        )
        .add::<__path_submit_batch>(
            post(submit_batch)
                .layer(DefaultBodyLimit::max(BATCH_BODY_MAX_BYTES))
                .layer(axum::middleware::from_fn_with_state(
                    BATCH_BODY_MAX_BYTES,
                    declared_length_within,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.pool.clone(),
                    lane_has_room,
                )),
        )
        .add::<__path_tx_status>(get(tx_status))
        .add::<__path_block_latest>(get(block_latest))
        .add::<__path_blocks>(get(crate::api_explore::blocks))
        .add::<__path_applications>(get(crate::api_explore::applications))
        .add::<__path_program_plans>(get(crate::api_explore::program_plans))
        .add::<__path_regions>(get(crate::api_explore::regions))
        .add::<__path_region>(get(crate::api_explore::region))
        .add::<__path_block_at>(get(block_at))
        .add::<__path_account>(get(account))
        .add::<__path_orgs>(get(orgs))
        .add::<__path_org>(get(org))
        .add::<__path_programs>(get(programs))
        .add::<__path_program>(get(program))
        .add::<__path_program_trace>(get(program_trace))
        .add::<__path_application>(get(application))
        .add::<__path_application_trace>(get(crate::api_trace::application_trace))
        .add::<__path_plan>(get(plan))
        .add::<__path_household>(get(household))
        .add::<__path_household_trace>(get(crate::api_trace::household_trace))
        .add::<__path_release>(get(release))
        .add::<__path_payment_proof>(get(crate::api_proof::payment_proof))
        .add::<__path_payment_qr>(get(crate::api_proof::payment_qr))
        .add::<__path_anomalies>(get(anomalies))
        .add::<__path_isolate>(post(isolate))
        .add::<__path_explorer_page>(get(crate::explorer::explorer_page))
        .add::<__path_explorer_js>(get(crate::explorer::explorer_js))
        .add::<__path_explorer_css>(get(crate::explorer::explorer_css))
}

pub fn router(state: AppState, body_max_bytes: usize) -> Router {
    routes(&state, body_max_bytes)
        .router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_max_bytes))
        .layer(axum::middleware::map_response(problems_only))
        .with_state(state)
}

/// Every error answer is a problem (ADR 019): one that an extractor or a
/// layer wrote in its own shape (a path that is not UTF-8, say) is
/// rewritten as one, its text kept as the detail.
async fn problems_only(r: Response) -> Response {
    let status = r.status();
    let is_problem = r.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(crate::problem::PROBLEM_JSON.as_bytes())
    });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return r;
    }
    let code = match status.as_u16() {
        404 => "not-found",
        405 => "method-not-allowed",
        413 => "payload-too-large",
        415 => "unsupported-media-type",
        429 => "rate-limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "bad-request",
    };
    let body = axum::body::to_bytes(r.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    let detail = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else if code == "internal" {
        hide_internal(text)
    } else {
        text
    };
    Problem::new(code, detail).into_response()
}

async fn no_route(uri: axum::http::Uri) -> ApiFailure {
    not_found(format!(
        "no route {} (the routes are in /v1/openapi.json)",
        uri.path().chars().take(200).collect::<String>()
    ))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiFailure {
    Problem::new(
        "method-not-allowed",
        format!(
            "{method} is not allowed on {}",
            uri.path().chars().take(200).collect::<String>()
        ),
    )
}

/// Every error code the API answers with, its status and title (ADR 019).
#[utoipa::path(
    get,
    path = "/v1/problems",
    tag = "node",
    responses(
        (status = 200, description = "every error code the API answers with, its status and title", body = [ProblemKind]),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn problems() -> Json<&'static [crate::problem::ProblemKind]> {
    Json(crate::problem::PROBLEMS)
}

/// Liveness: `ok` while the node runs.
#[utoipa::path(
    get,
    path = "/health",
    tag = "node",
    responses(
        (status = 200, description = "the node is up", body = String, content_type = "text/plain"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn health() -> &'static str {
    "ok"
}

/// Prometheus metrics.
///
/// OpenMetrics for a client that asks for it (Prometheus does), the
/// Prometheus text format otherwise.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "node",
    responses(
        (status = 200, description = "Prometheus text format, or OpenMetrics when asked for in Accept", body = String, content_type = "text/plain"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.shared.metrics.render(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.shared.metrics.render_text(),
        )
            .into_response()
    }
}

/// This document (OpenAPI 3.1), generated from the code.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "node",
    responses(
        (status = 200, description = "this document", body = Object),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

/// The node: chain, height, view, leader, peers, roots, base, modules.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "node",
    responses(
        (status = 200, description = "height, view, leader, peers, roots", body = NodeStatus),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn status(State(s): State<AppState>) -> ApiResult<NodeStatus> {
    let snap = s
        .shared
        .snapshot
        .read()
        .map_err(|_| internal("status lock poisoned"))?
        .clone();
    let base = s.store.base().map_err(internal)?;
    Ok(Json(NodeStatus {
        base,
        chain_id: s.info.chain_id.clone(),
        org: s.info.org.clone(),
        node_key: snap.node_key.unwrap_or(s.info.node_key),
        peer_id: snap.peer_id,
        validator: snap.validator,
        genesis_hash: s.info.genesis_hash,
        height: snap.height,
        block_hash: snap.block_hash,
        state_root: snap.state_root,
        view: snap.view,
        leader: snap.leader,
        peers: snap.peers,
        mempool_txs: snap.mempool_txs,
        last_block_time_ms: snap.last_block_time_ms,
        voting: snap.voting,
        next_due_ms: snap.next_due.map(|d| d.at.0),
        next_due_reason: snap.next_due.map(|d| d.reason.as_str().to_string()),
        modules: snap
            .modules
            .iter()
            .flat_map(|m| m.iter())
            .map(ToString::to_string)
            .collect(),
        upgrade: snap.upgrade.map(|u| UpgradeInfo {
            modules: u.modules.iter().map(ToString::to_string).collect(),
            at_height: u.at_height,
            missing: u.missing.iter().map(ToString::to_string).collect(),
        }),
    }))
}

fn committed_status(store: &RocksStore, id: Hash) -> Result<Option<TxStatus>, ApiFailure> {
    let Some(found) = store.tx_location(&id).map_err(internal)? else {
        return Ok(None);
    };
    status_of(id, found).map(Some)
}

fn status_of(id: Hash, (loc, receipt): TxIndexed) -> Result<TxStatus, ApiFailure> {
    let receipt: Receipt = codec::decode(&receipt).map_err(internal)?;
    let next_step = (!receipt.is_applied()).then(|| REJECTED_NEXT_STEP.to_string());
    Ok(TxStatus {
        id,
        status: TxState::Committed,
        height: Some(loc.height),
        index: Some(loc.index),
        receipt: Some(receipt),
        next_step,
    })
}

/// The answer to a resend of a transaction that is already on the chain.
fn resent_text(id: &Hash, height: u64, receipt: &[u8]) -> String {
    let outcome = match codec::decode::<Receipt>(receipt) {
        Ok(r) => match r.outcome {
            TxOutcome::Applied => "applied".to_string(),
            TxOutcome::Rejected { code, reason } => format!("rejected: {code}: {reason}"),
        },
        Err(_) => "receipt unreadable".to_string(),
    };
    format!(
        "transaction {} is already included at height {height} ({outcome}); a signed \
         transaction is included once, so this copy was not queued. To try again, sign a new \
         transaction",
        id.short()
    )
}

/// Submits up to 2,000 signed transactions at once (batch-verified; does not wait).
#[utoipa::path(
    post,
    path = "/v1/txs/batch",
    tag = "transactions",
    request_body(content = BatchSubmitRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "one result per transaction, in order", body = BatchSubmitResponse),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "body over the route's limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "body not declared as JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "client or account over its limit (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "node busy or shutting down (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn submit_batch(
    State(s): State<AppState>,
    client: Option<axum::Extension<ClientIp>>,
    body: Result<Json<BatchSubmitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<BatchSubmitResponse>, ApiFailure> {
    // The parse itself refuses more than BATCH_SUBMIT_MAX transactions.
    let Json(req) = body.map_err(json_rejection)?;
    let mut results: Vec<BatchItem> = Vec::with_capacity(req.txs.len());
    let mut txs = Vec::new();
    let mut slots = Vec::new();
    for (i, h) in req.txs.iter().enumerate() {
        // Each transaction's id and witness hash are computed here, once,
        // for the answer, the index look-up and admission.
        let decoded = hex::decode(h.trim())
            .map_err(|_| ("bad-request", "tx must be hex".to_string()))
            .and_then(|b| SignedTx::decode(&b).map_err(|e| ("bad-request", format!("tx: {e}"))))
            .map(HashedTx::new);
        match decoded {
            Ok(tx) => {
                results.push(BatchItem {
                    id: Some(tx.id()),
                    error: None,
                    code: None,
                    included_at: None,
                });
                slots.push(i);
                txs.push(tx);
            }
            Err((code, e)) => results.push(BatchItem {
                id: None,
                error: Some(e),
                code: Some(code.to_string()),
                included_at: None,
            }),
        }
    }
    // Transactions already on the chain get their height, not a queue
    // slot: one index read for the whole batch.
    let ids: Vec<Hash> = txs.iter().map(HashedTx::id).collect();
    let mut fresh_txs = Vec::with_capacity(txs.len());
    let mut fresh_slots = Vec::with_capacity(txs.len());
    for ((tx, slot), found) in txs.into_iter().zip(slots).zip(s.store.tx_locations(&ids)) {
        match found.map_err(internal)? {
            Some((loc, receipt)) => {
                results[slot].error = Some(resent_text(&tx.id(), loc.height, &receipt));
                results[slot].code = Some("already-included".to_string());
                results[slot].included_at = Some(loc.height);
            }
            None => {
                fresh_txs.push(tx);
                fresh_slots.push(slot);
            }
        }
    }
    let (txs, slots) = (fresh_txs, fresh_slots);
    if !txs.is_empty() {
        let verdicts = admit(&s, client.map(|c| c.0), txs).await?;
        for (slot, v) in slots.into_iter().zip(verdicts) {
            if let Err(r) = v {
                results[slot].error = Some(r.reason);
                results[slot].code = Some(r.code.to_string());
            }
        }
    }
    let admitted = results.iter().filter(|r| r.error.is_none()).count();
    Ok(Json(BatchSubmitResponse { admitted, results }))
}

/// Submits one signed transaction; waits up to `wait_ms` for its commit.
#[utoipa::path(
    post,
    path = "/v1/txs",
    tag = "transactions",
    request_body(content = SubmitRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "committed (already, or within wait_ms)", body = TxStatus),
        (status = 202, description = "admitted, pending", body = TxStatus),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "body over the route's limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "body not declared as JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "transaction refused at admission", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "client or account over its limit (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "node busy or shutting down (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn submit(
    State(s): State<AppState>,
    client: Option<axum::Extension<ClientIp>>,
    body: Result<Json<SubmitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<TxStatus>), ApiFailure> {
    let Json(req) = body.map_err(json_rejection)?;
    let bytes = hex::decode(req.tx.trim()).map_err(|_| bad_request("tx must be hex"))?;
    let tx = HashedTx::new(SignedTx::decode(&bytes).map_err(|e| bad_request(format!("tx: {e}")))?);
    let id = tx.id();
    if let Some(done) = committed_status(&s.store, id)? {
        return Ok((StatusCode::OK, Json(done)));
    }
    // Subscribe before submitting so a fast commit is not missed.
    let commits = s.shared.commits.subscribe();
    match admit(&s, client.map(|c| c.0), vec![tx])
        .await?
        .pop()
        .unwrap_or_else(|| Err(TxRefusal::new("internal", "no verdict")))
    {
        Ok(_) => {}
        Err(r) => return Err(Problem::new(r.code, r.reason)),
    }
    let pending = TxStatus {
        id,
        status: TxState::Pending,
        height: None,
        index: None,
        receipt: None,
        next_step: None,
    };
    if req.wait_ms == 0 {
        return Ok((StatusCode::ACCEPTED, Json(pending)));
    }
    // However the wait ends, even by the node's stop, a transaction not
    // committed yet is pending: it was admitted here, and gossiped.
    until_committed(
        commits,
        s.shared.stopping.subscribe(),
        Duration::from_millis(req.wait_ms.min(WAIT_MAX_MS)),
        |n| n.txs.contains(&id),
        || Ok(committed_status(&s.store, id)?.is_some()),
    )
    .await?;
    match committed_status(&s.store, id)? {
        Some(done) => Ok((StatusCode::OK, Json(done))),
        None => Ok((StatusCode::ACCEPTED, Json(pending))),
    }
}

fn parse_hash(s: &str) -> Result<Hash, ApiFailure> {
    Hash::from_hex(s).map_err(|e| bad_request(e.to_string()))
}

/// A transaction: committed with its receipt, pending, or unknown to this node.
#[utoipa::path(
    get,
    path = "/v1/txs/{id}",
    tag = "transactions",
    params(("id" = String, Path, description = "the transaction id (64 hex)")),
    responses(
        (status = 200, description = "committed with its receipt, pending, or unknown", body = TxStatus),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "node busy or shutting down (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn tx_status(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<TxStatus> {
    let id = parse_hash(&id)?;
    if let Some(done) = committed_status(&s.store, id)? {
        return Ok(Json(done));
    }
    let (reply, rx) = oneshot::channel();
    s.driver
        .send(DriverMsg::IsPending { id, reply })
        .await
        .map_err(|_| unavailable("node is shutting down"))?;
    let pending = rx.await.unwrap_or(false);
    Ok(Json(TxStatus {
        id,
        status: if pending {
            TxState::Pending
        } else {
            TxState::Unknown
        },
        height: None,
        index: None,
        receipt: None,
        next_step: None,
    }))
}

fn block_view(store: &RocksStore, height: u64) -> Result<BlockView, ApiFailure> {
    let base = store.base().map_err(internal)?;
    if height < base {
        // A pruned node (ADR 017 part 4): it joined from a snapshot.
        return Err(Problem::new(
            "pruned",
            format!(
                "this node keeps history from height {base} (it joined from a snapshot); ask a \
                 node that keeps all history for height {height}"
            ),
        ));
    }
    let block = store
        .block(height)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no block at height {height}")))?;
    let certificate = store.certificate(height).map_err(internal)?;
    let mut txs = Vec::with_capacity(block.txs.len());
    for tx in &block.txs {
        let id = tx.id();
        let applied = match store.tx_location(&id).map_err(internal)? {
            Some((_, r)) => codec::decode::<Receipt>(&r)
                .map(|r| r.is_applied())
                .unwrap_or(false),
            None => false,
        };
        txs.push(BlockTx {
            id,
            kind: tx.body.kind,
            signer: tx.body.signer,
            nonce: tx.body.nonce,
            applied,
        });
    }
    Ok(BlockView {
        hash: block.hash(),
        header: block.header,
        txs,
        certificate,
    })
}

/// `GET /v1/blocks/{height}`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlockWaitQuery {
    /// For a block not committed yet: wait up to this many milliseconds
    /// (at most 60000) and answer as soon as it commits, instead of 404 at
    /// once. A follower of the chain asks for the next height with a wait
    /// instead of polling. Absent or 0: answer at once. At most 32 reads
    /// wait at once; past them a read is answered at once.
    #[param(maximum = 60000)]
    pub wait_ms: Option<u64>,
}

/// A committed block with its commit certificate; with `wait_ms`, a block
/// about to commit as soon as it does.
#[utoipa::path(
    get,
    path = "/v1/blocks/{height}",
    tag = "blocks",
    params(("height" = u64, Path, description = "the block height"), BlockWaitQuery),
    responses(
        (status = 200, description = "a committed block with its certificate", body = BlockView),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record (with wait_ms: not committed within the wait)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "below this node's base height (it joined from a snapshot)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "with wait_ms: the node is shutting down before the block committed (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn block_at(
    State(s): State<AppState>,
    Path(h): Path<String>,
    q: Result<Query<BlockWaitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<BlockView> {
    let h: u64 = h
        .parse()
        .map_err(|_| bad_request("height must be a number or `latest`"))?;
    let Query(q) = q.map_err(query_rejection)?;
    let wait_ms = q.wait_ms.unwrap_or(0);
    if wait_ms > BLOCK_WAIT_MAX_MS {
        return Err(bad_request(format!(
            "wait_ms must be 0 to {BLOCK_WAIT_MAX_MS}"
        )));
    }
    if wait_ms > 0 {
        if let Ok(_permit) = s.explore.block_waits.clone().try_acquire_owned() {
            wait_for_height(&s, h, Duration::from_millis(wait_ms)).await?;
        }
    }
    let store = s.store.clone();
    blocking(move || block_view(&store, h)).await
}

/// Returns once block `height` is committed here, or after `wait`,
/// whichever is first; the caller then reads the store either way.
async fn wait_for_height(s: &AppState, height: u64, wait: Duration) -> Result<(), ApiFailure> {
    // Subscribe before looking, so a commit between the look and the wait
    // is not missed.
    let commits = s.shared.commits.subscribe();
    let stored = || -> Result<bool, ApiFailure> {
        Ok(s.store
            .head()
            .map_err(internal)?
            .is_some_and(|hd| hd.height >= height))
    };
    if stored()? {
        return Ok(());
    }
    let stopping = s.shared.stopping.subscribe();
    let end = until_committed(commits, stopping, wait, |n| n.height >= height, &stored).await?;
    // A wait cut short by the stop is not a block that failed to come:
    // the client should ask again, here after the restart or elsewhere.
    if end == WaitEnd::Stopping && !stored()? {
        return Err(unavailable(format!(
            "the node is shutting down before block {height} committed here; ask again after \
             its restart, or ask another member"
        )));
    }
    Ok(())
}

/// How a wait for a commit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WaitEnd {
    /// What was waited for committed, or the wait ran out: the caller
    /// looks at the store.
    Over,
    /// The node is stopping, so no commit will come.
    Stopping,
}

/// Waits on `commits` (subscribed before the caller last looked at the
/// store) until a notice `is_it`, or `wait` passes, or the node is
/// stopping (`stopping` turns true: no commit will come). A notice is sent
/// after its block is stored. When notices were missed (the receiver
/// lagged), `in_store` says whether the store already has what is waited
/// for.
async fn until_committed(
    mut commits: tokio::sync::broadcast::Receiver<Arc<crate::driver::CommitNotice>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    wait: Duration,
    is_it: impl Fn(&crate::driver::CommitNotice) -> bool,
    in_store: impl Fn() -> Result<bool, ApiFailure>,
) -> Result<WaitEnd, ApiFailure> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if *stopping.borrow_and_update() {
            return Ok(WaitEnd::Stopping);
        }
        let notice = tokio::select! {
            n = tokio::time::timeout_at(deadline, commits.recv()) => n,
            changed = stopping.changed() => match changed {
                Ok(()) => continue,
                // The node's state is gone: it is stopping too.
                Err(_) => return Ok(WaitEnd::Stopping),
            },
        };
        match notice {
            Ok(Ok(n)) if is_it(&n) => return Ok(WaitEnd::Over),
            Ok(Ok(_)) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                if in_store()? {
                    return Ok(WaitEnd::Over);
                }
            }
            // The commits' sender is gone: the node is stopping.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return Ok(WaitEnd::Stopping)
            }
            Err(_) => return Ok(WaitEnd::Over),
        }
    }
}

/// The last committed block with its commit certificate.
#[utoipa::path(
    get,
    path = "/v1/blocks/latest",
    tag = "blocks",
    responses(
        (status = 200, description = "the last committed block with its certificate", body = BlockView),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn block_latest(State(s): State<AppState>) -> ApiResult<BlockView> {
    let head = s
        .store
        .head()
        .map_err(internal)?
        .ok_or_else(|| not_found("no blocks yet"))?;
    Ok(Json(block_view(&s.store, head.height)?))
}

pub(crate) fn get_record<T: serde::Serialize + DeserializeOwned>(
    store: &RocksStore,
    key: &[u8],
    what: &str,
) -> Result<T, ApiFailure> {
    let bytes = store
        .state_get(key)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no {what}")))?;
    codec::decode(&bytes).map_err(internal)
}

fn slug(s: &str) -> Result<Slug, ApiFailure> {
    Slug::new(s).map_err(|e| bad_request(e.to_string()))
}

/// An account: organisation, roles, next nonce, status.
#[utoipa::path(
    get,
    path = "/v1/accounts/{key}",
    tag = "registry",
    params(("key" = String, Path, description = "the account's public key (64 hex)")),
    responses(
        (status = 200, description = "the account", body = Account),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn account(State(s): State<AppState>, Path(k): Path<String>) -> ApiResult<Account> {
    let key = PublicKey::from_hex(&k).map_err(|e| bad_request(e.to_string()))?;
    Ok(Json(get_record(
        &s.store,
        &keys::account(&key),
        &format!("account {k}"),
    )?))
}

/// One page of the records under `prefix`, as the list routes answer.
pub(crate) fn list_page<T: DeserializeOwned + serde::Serialize>(
    store: &RocksStore,
    prefix: &[u8],
    q: &PageQuery,
    keep: impl FnMut(&T) -> Result<bool, ApiFailure>,
) -> Result<Page<T>, ApiFailure> {
    let limit = q.limit()?;
    let (items, next) = api_page::scan(store, prefix, q.after_key(prefix)?, limit, keep)?;
    Ok(Page {
        items,
        next: next.map(hex::encode),
    })
}

/// A query string that did not parse: 400 with the reason.
pub(crate) fn query_rejection(e: axum::extract::rejection::QueryRejection) -> ApiFailure {
    bad_request(e.body_text())
}

pub(crate) type PageQueryResult =
    Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>;

/// The member organisations, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/orgs",
    tag = "registry",
    params(PageQuery),
    responses(
        (status = 200, description = "a page of organisations", body = Page<Org>),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn orgs(State(s): State<AppState>, q: PageQueryResult) -> ApiResult<Page<Org>> {
    let Query(q) = q.map_err(query_rejection)?;
    let store = s.store.clone();
    blocking(move || list_page(&store, keys::ORG_PREFIX, &q, |_| Ok(true))).await
}

/// Runs a page read off the async workers (it may read thousands of
/// records).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiFailure> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map(Json)
}

/// One member organisation.
#[utoipa::path(
    get,
    path = "/v1/orgs/{id}",
    tag = "registry",
    params(("id" = String, Path, description = "the organisation id")),
    responses(
        (status = 200, description = "the organisation", body = Org),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn org(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Org> {
    let id = OrgId::new(id).map_err(|e| bad_request(e.to_string()))?;
    Ok(Json(get_record(
        &s.store,
        &keys::org(&id),
        &format!("organisation {id}"),
    )?))
}

/// The fund programs with their balances, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/programs",
    tag = "programs",
    params(PageQuery),
    responses(
        (status = 200, description = "a page of programs with their balances", body = Page<Program>),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn programs(State(s): State<AppState>, q: PageQueryResult) -> ApiResult<Page<Program>> {
    let Query(q) = q.map_err(query_rejection)?;
    let store = s.store.clone();
    blocking(move || list_page(&store, keys::PROGRAM_PREFIX, &q, |_| Ok(true))).await
}

/// One fund program with its balances.
#[utoipa::path(
    get,
    path = "/v1/programs/{id}",
    tag = "programs",
    params(("id" = String, Path, description = "the program id")),
    responses(
        (status = 200, description = "the program with its balances", body = Program),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn program(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Program> {
    let id = slug(&id)?;
    Ok(Json(get_record(
        &s.store,
        &keys::program(&id),
        &format!("program {id}"),
    )?))
}

/// The program a release pays from, if the release exists.
fn release_program(store: &RocksStore, id: u64) -> Result<Option<Slug>, ApiFailure> {
    match store.state_get(&keys::release(id)).map_err(internal)? {
        Some(b) => Ok(Some(
            codec::decode::<Release>(&b).map_err(internal)?.program,
        )),
        None => Ok(None),
    }
}

/// Whether an anomaly concerns `program`: it names the program, or it is
/// about one of the program's releases or applications. Anomalies about a
/// household alone are in the household's trace.
fn anomaly_in_program(store: &RocksStore, a: &Anomaly, program: &Slug) -> Result<bool, ApiFailure> {
    use aidledger_contracts::{AnomalyKind, Subject};
    match (&a.kind, &a.subject) {
        (AnomalyKind::IneligibleRecipient { program: p, .. }, _) if p == program => Ok(true),
        (AnomalyKind::SettlementMismatch { release, .. }, _)
        | (AnomalyKind::SettlementOverdue { release, .. }, _)
        | (_, Subject::Release(release)) => {
            Ok(release_program(store, *release)?.as_ref() == Some(program))
        }
        (_, Subject::Application(app)) => {
            match store.state_get(&keys::application(app)).map_err(internal)? {
                Some(b) => {
                    Ok(&codec::decode::<Application>(&b).map_err(internal)?.program == program)
                }
                None => Ok(false),
            }
        }
        (_, Subject::Household(_)) => Ok(false),
    }
}

/// One list's page of a compound cursor, and where that list goes on.
pub(crate) fn part_page<T: DeserializeOwned + serde::Serialize>(
    store: &RocksStore,
    prefix: &[u8],
    part: &Part,
    limit: usize,
    keep: impl FnMut(&T) -> Result<bool, ApiFailure>,
) -> Result<(Vec<T>, Part), ApiFailure> {
    let after = match part {
        Part::Done => return Ok((Vec::new(), Part::Done)),
        Part::Start => None,
        Part::After(k) => Some(k.clone()),
    };
    let (items, next) = api_page::scan(store, prefix, after, limit, keep)?;
    Ok((items, Part::from_next(next)))
}

/// A program's money trail: ledger entries, releases and anomalies.
///
/// The program, and a page of each of its three lists read in step;
/// `next` continues all three (ADR 019).
#[utoipa::path(
    get,
    path = "/v1/programs/{id}/trace",
    tag = "programs",
    params(("id" = String, Path, description = "the program id"), PageQuery),
    responses(
        (status = 200, description = "the program and a page of its ledger entries, releases and anomalies; follow next", body = ProgramTrace),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn program_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: PageQueryResult,
) -> ApiResult<ProgramTrace> {
    let Query(q) = q.map_err(query_rejection)?;
    let id = slug(&id)?;
    let limit = q.limit()?;
    let ledger_prefix = keys::ledger_prefix(&id);
    let parts = api_page::decode_parts(
        q.after.as_deref(),
        &[&ledger_prefix, keys::RELEASE_PREFIX, keys::ANOMALY_PREFIX],
    )?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let prefixes: [&[u8]; 3] = [&ledger_prefix, keys::RELEASE_PREFIX, keys::ANOMALY_PREFIX];
        let program: Program = get_record(&store, &keys::program(&id), &format!("program {id}"))?;
        let (ledger, l) = part_page(&store, prefixes[0], &parts[0], limit, |_: &MoneyEvent| {
            Ok(true)
        })?;
        let (releases, r) = part_page(&store, prefixes[1], &parts[1], limit, |r: &Release| {
            Ok(r.program == id)
        })?;
        let (anomalies, a) = part_page(&store, prefixes[2], &parts[2], limit, |a: &Anomaly| {
            anomaly_in_program(&store, a, &id)
        })?;
        let next = [l, r, a];
        Ok(Json(ProgramTrace {
            program,
            ledger,
            releases,
            anomalies,
            next: api_page::encode_parts(&next),
        }))
    })
    .await
    .map_err(internal)?
}

/// A project application with its votes.
#[utoipa::path(
    get,
    path = "/v1/applications/{id}",
    tag = "applications",
    params(("id" = String, Path, description = "the application id")),
    responses(
        (status = 200, description = "the application with its votes", body = Application),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn application(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Application> {
    let id = slug(&id)?;
    Ok(Json(get_record(
        &s.store,
        &keys::application(&id),
        &format!("application {id}"),
    )?))
}

/// A disbursement plan with its tranches and their conditions.
#[utoipa::path(
    get,
    path = "/v1/plans/{id}",
    tag = "applications",
    params(("id" = String, Path, description = "the plan id")),
    responses(
        (status = 200, description = "the disbursement plan with its tranches", body = Plan),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn plan(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Plan> {
    let id = slug(&id)?;
    Ok(Json(get_record(
        &s.store,
        &keys::plan(&id),
        &format!("plan {id}"),
    )?))
}

/// A household file by its salted id (no personal data).
#[utoipa::path(
    get,
    path = "/v1/households/{id}",
    tag = "households",
    params(("id" = String, Path, description = "the salted household id (64 hex)")),
    responses(
        (status = 200, description = "the household file (salted id, region, status; no personal data)", body = Household),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn household(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Household> {
    let id = parse_hash(&id)?;
    Ok(Json(get_record(
        &s.store,
        &keys::household(&id),
        "such household",
    )?))
}

/// A release (a disbursement the contracts made) and its settlement.
#[utoipa::path(
    get,
    path = "/v1/releases/{id}",
    tag = "programs",
    params(("id" = u64, Path, description = "the release number")),
    responses(
        (status = 200, description = "the release and its settlement", body = Release),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn release(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Release> {
    let id: u64 = id
        .parse()
        .map_err(|_| bad_request("release id must be a number"))?;
    Ok(Json(get_record(
        &s.store,
        &keys::release(id),
        &format!("release {id}"),
    )?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AnomalyQuery {
    /// Only anomalies still open.
    #[serde(default)]
    open: bool,
    /// The `next` of the page before; absent for the first page.
    after: Option<String>,
    /// Items on the page: 1 to 1000, 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The anomalies the cross-checks raised, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/anomalies",
    tag = "anomalies",
    params(AnomalyQuery),
    responses(
        (status = 200, description = "a page of anomalies", body = Page<Anomaly>),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn anomalies(
    State(s): State<AppState>,
    q: Result<Query<AnomalyQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Page<Anomaly>> {
    let Query(q) = q.map_err(query_rejection)?;
    let page = PageQuery {
        after: q.after,
        limit: q.limit,
    };
    let open = q.open;
    let store = s.store.clone();
    blocking(move || {
        list_page(&store, keys::ANOMALY_PREFIX, &page, |a: &Anomaly| {
            Ok(!open || a.status == aidledger_contracts::AnomalyStatus::Open)
        })
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IsolateRequest {
    isolated: bool,
}

/// Fault drills: cuts this node off from its peers, or heals it.
///
/// At the application layer; needs the admin token and `api.admin = true`.
#[utoipa::path(
    post,
    path = "/v1/admin/isolate",
    tag = "admin",
    request_body(content = IsolateRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "isolation changed"),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "admin token missing or wrong", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "the admin API is off", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "body not declared as JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "node busy or shutting down (Retry-After)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
async fn isolate(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Json<IsolateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiFailure> {
    let Some(token) = &s.info.admin_token else {
        return Err(Problem::new(
            "forbidden",
            "the admin API is off (set api.admin = true in config.toml)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(given, token) {
        return Err(Problem::new(
            "unauthorized",
            "admin routes need the node's admin token (HOME/keys/admin.token) as \
             'Authorization: Bearer <token>'",
        ));
    }
    let Json(req) = body.map_err(json_rejection)?;
    s.driver
        .send(DriverMsg::Isolate(req.isolated))
        .await
        .map_err(|_| unavailable("node is shutting down"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod admin_token {
    use super::bearer_matches;

    #[test]
    fn only_the_exact_bearer_token_opens_the_admin_routes() {
        let t = "0123456789abcdef0123456789abcdef";
        assert!(bearer_matches(Some(&format!("Bearer {t}")), t));
        for bad in [
            None,
            Some(""),
            Some(t),
            Some("Bearer "),
            Some("Bearer 0123456789abcdef0123456789abcde"),
            Some("Bearer 0123456789abcdef0123456789abcdeF"),
            Some("Bearer 0123456789abcdef0123456789abcdef0"),
            Some("Basic 0123456789abcdef0123456789abcdef"),
        ] {
            assert!(!bearer_matches(bad, t), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod hidden_errors {
    /// What a client sees of an internal error is an id, never the text
    /// (which names data paths and library internals).
    #[test]
    fn an_internal_error_shows_the_client_an_id_not_the_text() {
        let a = super::hide_internal("IO error: /var/lib/aidledger/data/000123.sst: corruption");
        let b = super::hide_internal("the same again");
        assert!(!a.contains("/var/lib") && !a.contains("corruption"), "{a}");
        assert!(a.starts_with("internal error ") && a.contains("log"), "{a}");
        assert_ne!(a, b, "each error gets its own id");
    }

    #[test]
    fn every_503_says_when_to_come_back_and_others_do_not() {
        use super::*;
        let r = busy().into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = unavailable("stopping").into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = bad_request("no").into_response();
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn channels() -> (
        tokio::sync::broadcast::Sender<Arc<crate::driver::CommitNotice>>,
        tokio::sync::watch::Sender<bool>,
    ) {
        (
            tokio::sync::broadcast::channel(16).0,
            tokio::sync::watch::channel(false).0,
        )
    }

    /// A request's wait for height 7, up to ten minutes, on its own task.
    fn waiting_for_7(
        commits: &tokio::sync::broadcast::Sender<Arc<crate::driver::CommitNotice>>,
        stopping: &tokio::sync::watch::Sender<bool>,
    ) -> tokio::task::JoinHandle<Result<WaitEnd, ApiFailure>> {
        tokio::spawn(until_committed(
            commits.subscribe(),
            stopping.subscribe(),
            Duration::from_secs(600),
            |n| n.height >= 7,
            || Ok(false),
        ))
    }

    /// Ends the test rather than wait out a ten-minute wait.
    async fn ended<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("the wait did not end")
    }

    /// How a wait of `wait` for a commit nobody makes ends.
    async fn waited_for_nothing(
        commits: tokio::sync::broadcast::Receiver<Arc<crate::driver::CommitNotice>>,
        stopping: tokio::sync::watch::Receiver<bool>,
        wait: Duration,
    ) -> WaitEnd {
        ended(until_committed(
            commits,
            stopping,
            wait,
            |_| false,
            || Ok(false),
        ))
        .await
        .unwrap()
    }

    /// A request waiting for a commit is answered once the node stops,
    /// not at the end of its wait (ten minutes here): no commit will come.
    /// A request that begins to wait when the node is already stopping,
    /// or once the node's state (or its commits' sender) is gone, does not
    /// wait. A commit still ends the wait as before, and only the one
    /// waited for; so does a wait that runs out, which is not a stop.
    #[tokio::test]
    async fn a_wait_for_a_commit_ends_when_the_node_stops() {
        let wait = Duration::from_secs(600);
        let (commits, stopping) = channels();
        let waiting = waiting_for_7(&commits, &stopping);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        stopping.send_replace(true);
        assert_eq!(ended(waiting).await.unwrap().unwrap(), WaitEnd::Stopping);
        let begun_while_stopping =
            waited_for_nothing(commits.subscribe(), stopping.subscribe(), wait).await;
        assert_eq!(begun_while_stopping, WaitEnd::Stopping);

        let (commits, stopping) = channels();
        let waiting = waiting_for_7(&commits, &stopping);
        let notice = |height| {
            Arc::new(crate::driver::CommitNotice {
                height,
                txs: Vec::new(),
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        commits.send(notice(6)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "height 6 is not the one waited for");
        commits.send(notice(7)).unwrap();
        assert_eq!(ended(waiting).await.unwrap().unwrap(), WaitEnd::Over);

        let (commits, stopping) = channels();
        let rx = stopping.subscribe();
        drop(stopping);
        let state_gone = waited_for_nothing(commits.subscribe(), rx, wait).await;
        assert_eq!(state_gone, WaitEnd::Stopping);

        let (commits, stopping) = channels();
        let rx = commits.subscribe();
        drop(commits);
        let no_commits = waited_for_nothing(rx, stopping.subscribe(), wait).await;
        assert_eq!(no_commits, WaitEnd::Stopping);

        let (commits, stopping) = channels();
        let short = Duration::from_millis(50);
        let ran_out = waited_for_nothing(commits.subscribe(), stopping.subscribe(), short).await;
        assert_eq!(ran_out, WaitEnd::Over);
    }
}
