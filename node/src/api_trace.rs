//! `GET /v1/applications/{id}/trace` and `GET /v1/households/{id}/trace`:
//! one application or household followed through the chain. The traces
//! are built by `aidledger_audit::trace`, the same code auditors run.

use aidledger_audit::trace::{self, ApplicationTrace, HouseholdTrace};
use aidledger_audit::StoreState;
use aidledger_types::{Hash, Slug};
use axum::extract::{Path, State};
use axum::Json;

use crate::api::{blocking, AppState};
use crate::api_page::internal;
use crate::problem::{Problem, ProblemBody};

type Failure = Problem;

fn fail(code: &'static str, msg: impl Into<String>) -> Failure {
    Problem::new(code, msg)
}

/// An application followed through the chain: program, plan, attestations, releases, ledger, anomalies.
#[utoipa::path(
    get,
    path = "/v1/applications/{id}/trace",
    tag = "applications",
    params(("id" = String, Path, description = "the application id")),
    responses(
        (status = 200, description = "the application with its program, plan, attestations, releases, ledger entries and anomalies", body = ApplicationTrace),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn application_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApplicationTrace>, Failure> {
    let id = Slug::new(id).map_err(|e| fail("bad-request", e.to_string()))?;
    // A trace reads several ranges of state: off the async workers.
    let store = s.store.clone();
    blocking(move || {
        trace::application(&StoreState(store.as_ref()), &id)
            .map_err(internal)?
            .ok_or_else(|| fail("not-found", format!("no application {id}")))
    })
    .await
}

/// A household followed through the chain: attestations, releases, payments, anomalies.
#[utoipa::path(
    get,
    path = "/v1/households/{id}/trace",
    tag = "households",
    params(("id" = String, Path, description = "the salted household id (64 hex)")),
    responses(
        (status = 200, description = "the household with its attestations, releases, payments and anomalies", body = HouseholdTrace),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn household_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HouseholdTrace>, Failure> {
    let id = Hash::from_hex(&id).map_err(|e| fail("bad-request", e.to_string()))?;
    let store = s.store.clone();
    blocking(move || {
        trace::household(&StoreState(store.as_ref()), &id)
            .map_err(internal)?
            .ok_or_else(|| fail("not-found", "no such household"))
    })
    .await
}
