//! `GET /v1/applications/{id}/trace` and `GET /v1/households/{id}/trace`:
//! one application or household followed through the chain, a page at a
//! time (ADR 019): the record, and a page of each of its lists read in
//! step; `next` continues all of them. Joined, the pages hold what
//! `aidledger_audit::trace` (the auditors' code) builds from the same
//! state, in key order: a household's ledger entries by program, then
//! sequence, where the audit trace sorts them by height. Like every paged
//! list (ADR 019), pages are read as the chain grows, not from one block.

use aidledger_audit::trace::{ApplicationTrace, HouseholdTrace};
use aidledger_contracts::model::{
    Anomaly, Application, Household, Plan, Program, Recipient, Release, ReleaseSource, Subject,
};
use aidledger_contracts::{keys, Attestation, MoneyEvent, Party};
use aidledger_storage::{RocksStore, Store};
use aidledger_types::{codec, Hash, Slug};
use axum::extract::{Path, Query, State};
use axum::Json;

use crate::api::{get_record, part_page, query_rejection, AppState, PageQueryResult};
use crate::api_page::{self, internal, PageQuery, Part};
use crate::problem::{Problem, ProblemBody};

type Failure = Problem;

fn fail(code: &'static str, msg: impl Into<String>) -> Failure {
    Problem::new(code, msg)
}

/// The release `id`, if it exists.
fn release(store: &RocksStore, id: u64) -> Result<Option<Release>, Failure> {
    store
        .state_get(&keys::release(id))
        .map_err(internal)?
        .map(|b| codec::decode::<Release>(&b).map_err(internal))
        .transpose()
}

/// An application followed through the chain: program, plan, attestations, releases, ledger, anomalies.
///
/// The application, its program and plan, and a page of each of its four lists read in step; `next` continues all four (ADR 019).
#[utoipa::path(
    get,
    path = "/v1/applications/{id}/trace",
    tag = "applications",
    params(("id" = String, Path, description = "the application id"), PageQuery),
    responses(
        (status = 200, description = "the application with its program and plan, and a page of its attestations, releases, ledger entries and anomalies; follow next", body = ApplicationTrace),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn application_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: PageQueryResult,
) -> Result<Json<ApplicationTrace>, Failure> {
    let Query(q) = q.map_err(query_rejection)?;
    let id = Slug::new(id).map_err(|e| fail("bad-request", e.to_string()))?;
    let limit = q.limit()?;
    let subject = Subject::Application(id.clone());
    let attest_prefix = keys::attestations_about_prefix(&subject);
    let store = s.store.clone();
    // Read the record first: the ledger's prefix is its program's.
    let app: Application = {
        let store = store.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            get_record(
                &store,
                &keys::application(&id),
                &format!("application {id}"),
            )
        })
        .await
        .map_err(internal)??
    };
    let ledger_prefix = keys::ledger_prefix(&app.program);
    let parts = api_page::decode_parts(
        q.after.as_deref(),
        &[
            &attest_prefix,
            keys::RELEASE_PREFIX,
            &ledger_prefix,
            keys::ANOMALY_PREFIX,
        ],
    )?;
    tokio::task::spawn_blocking(move || {
        let program: Option<Program> = store
            .state_get(&keys::program(&app.program))
            .map_err(internal)?
            .map(|b| codec::decode(&b).map_err(internal))
            .transpose()?;
        let plan: Option<Plan> = match &app.plan {
            Some(p) => store
                .state_get(&keys::plan(p))
                .map_err(internal)?
                .map(|b| codec::decode(&b).map_err(internal))
                .transpose()?,
            None => None,
        };
        let plan_id = plan.as_ref().map(|p| p.id.clone());
        let of_plan = |src: &ReleaseSource| {
            matches!(src, ReleaseSource::Tranche { plan, .. } if Some(plan) == plan_id.as_ref())
        };
        // Without a plan, nothing was released or paid for it.
        let none_without_plan = |p: &Part| if plan_id.is_some() { p.clone() } else { Part::Done };
        let (attestations, pa) =
            part_page(&store, &attest_prefix, &parts[0], limit, |_: &Attestation| {
                Ok(true)
            })?;
        let (releases, pr) = part_page(
            &store,
            keys::RELEASE_PREFIX,
            &none_without_plan(&parts[1]),
            limit,
            |r: &Release| Ok(of_plan(&r.source)),
        )?;
        let (ledger, pl) = part_page(
            &store,
            &ledger_prefix,
            &none_without_plan(&parts[2]),
            limit,
            |e: &MoneyEvent| Ok(e.plan.is_some() && e.plan == plan_id),
        )?;
        let (anomalies, pn) = part_page(
            &store,
            keys::ANOMALY_PREFIX,
            &parts[3],
            limit,
            |a: &Anomaly| match &a.subject {
                x if x == &subject => Ok(true),
                Subject::Release(r) if plan_id.is_some() => {
                    Ok(release(&store, *r)?.is_some_and(|r| of_plan(&r.source)))
                }
                _ => Ok(false),
            },
        )?;
        Ok(Json(ApplicationTrace {
            application: app,
            program,
            plan,
            attestations,
            releases,
            ledger,
            anomalies,
            next: api_page::encode_parts(&[pa, pr, pl, pn]),
        }))
    })
    .await
    .map_err(internal)?
}

/// A household followed through the chain: attestations, releases, payments, anomalies.
///
/// The household file, and a page of each of its four lists read in step; `next` continues all four (ADR 019).
#[utoipa::path(
    get,
    path = "/v1/households/{id}/trace",
    tag = "households",
    params(("id" = String, Path, description = "the salted household id (64 hex)"), PageQuery),
    responses(
        (status = 200, description = "the household, and a page of its attestations, releases, payments and anomalies; follow next", body = HouseholdTrace),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn household_trace(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: PageQueryResult,
) -> Result<Json<HouseholdTrace>, Failure> {
    let Query(q) = q.map_err(query_rejection)?;
    let id = Hash::from_hex(&id).map_err(|e| fail("bad-request", e.to_string()))?;
    let limit = q.limit()?;
    let subject = Subject::Household(id);
    let attest_prefix = keys::attestations_about_prefix(&subject);
    let parts = api_page::decode_parts(
        q.after.as_deref(),
        &[
            &attest_prefix,
            keys::RELEASE_PREFIX,
            keys::LEDGER_PREFIX,
            keys::ANOMALY_PREFIX,
        ],
    )?;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let household: Household = get_record(&store, &keys::household(&id), "such household")?;
        let (attestations, pa) = part_page(
            &store,
            &attest_prefix,
            &parts[0],
            limit,
            |_: &Attestation| Ok(true),
        )?;
        let (releases, pr) = part_page(
            &store,
            keys::RELEASE_PREFIX,
            &parts[1],
            limit,
            |r: &Release| Ok(r.recipient == Recipient::Household(id)),
        )?;
        let (ledger, pl) = part_page(
            &store,
            keys::LEDGER_PREFIX,
            &parts[2],
            limit,
            |e: &MoneyEvent| Ok(e.to == Party::Household(id) || e.from == Party::Household(id)),
        )?;
        let (anomalies, pn) =
            part_page(
                &store,
                keys::ANOMALY_PREFIX,
                &parts[3],
                limit,
                |a: &Anomaly| match &a.subject {
                    x if x == &subject => Ok(true),
                    Subject::Release(r) => Ok(release(&store, *r)?
                        .is_some_and(|r| r.recipient == Recipient::Household(id))),
                    _ => Ok(false),
                },
            )?;
        Ok(Json(HouseholdTrace {
            household,
            attestations,
            releases,
            ledger,
            anomalies,
            next: api_page::encode_parts(&[pa, pr, pl, pn]),
        }))
    })
    .await
    .map_err(internal)?
}
