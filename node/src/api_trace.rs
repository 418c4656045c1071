//! `GET /v1/applications/{id}/trace` and `GET /v1/households/{id}/trace`:
//! one application or household followed through the chain. The traces
//! are built by `aidledger_audit::trace`, the same code auditors run.

use aidledger_audit::trace::{self, ApplicationTrace, HouseholdTrace};
use aidledger_audit::StoreState;
use aidledger_types::{Hash, Slug};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::api::{hide_internal, AppState};
use crate::api_types::ApiError;

type Failure = (StatusCode, Json<ApiError>);

fn fail(status: StatusCode, code: &str, msg: impl Into<String>) -> Failure {
    (
        status,
        Json(ApiError {
            error: msg.into(),
            code: code.into(),
        }),
    )
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
    let id =
        Slug::new(id).map_err(|e| fail(StatusCode::BAD_REQUEST, "bad-request", e.to_string()))?;
    // A trace reads several ranges of state: off the async workers.
    let store = s.store.clone();
    let key = id.clone();
    tokio::task::spawn_blocking(move || trace::application(&StoreState(store.as_ref()), &key))
        .await
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                hide_internal(e),
            )
        })?
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                hide_internal(e),
            )
        })?
        .map(Json)
        .ok_or_else(|| {
            fail(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no application {id}"),
            )
        })
}

async fn household_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HouseholdTrace>, Failure> {
    let id = Hash::from_hex(&id)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, "bad-request", e.to_string()))?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || trace::household(&StoreState(store.as_ref()), &id))
        .await
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                hide_internal(e),
            )
        })?
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                hide_internal(e),
            )
        })?
        .map(Json)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "not-found", "no such household"))
}
