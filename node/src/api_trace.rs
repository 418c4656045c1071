//! `GET /v1/applications/{id}/trace` and `GET /v1/households/{id}/trace`:
//! one application or household followed through the chain. The traces
//! are built by `aidledger_audit::trace`, the same code auditors run.

use aidledger_audit::trace::{self, ApplicationTrace, HouseholdTrace};
use aidledger_audit::StoreState;
use aidledger_types::{Hash, Slug};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::{hide_internal, AppState};
use crate::problem::Problem;

type Failure = Problem;

fn fail(code: &'static str, msg: impl Into<String>) -> Failure {
    Problem::new(code, msg)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/applications/{id}/trace", get(application_trace))
        .route("/v1/households/{id}/trace", get(household_trace))
}

async fn application_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApplicationTrace>, Failure> {
    let id = Slug::new(id).map_err(|e| fail("bad-request", e.to_string()))?;
    // A trace reads several ranges of state: off the async workers.
    let store = s.store.clone();
    let key = id.clone();
    tokio::task::spawn_blocking(move || trace::application(&StoreState(store.as_ref()), &key))
        .await
        .map_err(|e| fail("internal", hide_internal(e)))?
        .map_err(|e| fail("internal", hide_internal(e)))?
        .map(Json)
        .ok_or_else(|| fail("not-found", format!("no application {id}")))
}

async fn household_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HouseholdTrace>, Failure> {
    let id = Hash::from_hex(&id).map_err(|e| fail("bad-request", e.to_string()))?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || trace::household(&StoreState(store.as_ref()), &id))
        .await
        .map_err(|e| fail("internal", hide_internal(e)))?
        .map_err(|e| fail("internal", hide_internal(e)))?
        .map(Json)
        .ok_or_else(|| fail("not-found", "no such household"))
}
