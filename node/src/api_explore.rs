//! Reads the explorer (ADR 021), and any other reader, needs beyond single
//! records: block summaries newest first, the applications, a program's
//! plans with what each waiting tranche waits for, and the county and
//! region reports that `aidledger audit report --region` prints.

use std::sync::Arc;
use std::time::Duration;

use aidledger_audit::report::{self, AsOf, RegionTotal, Report};
use aidledger_contracts::condition::LeafState;
use aidledger_contracts::{keys, Application, Genesis, Plan};
use aidledger_storage::{RocksStore, Store, GENESIS_MAX_BYTES};
use aidledger_types::snapshot::{SetChange, SET_CHANGES_MAX};
use aidledger_types::{codec, Hash, OrgId, PublicKey, RegionCode, Slug, Timestamp, ValidatorSet};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api::{bad_request, blocking, query_rejection, AppState};
use crate::api_page::{internal, page_limit, Page, PageQuery};
use crate::problem::{Problem, ProblemBody};

/// Most blocks on one page of `/v1/blocks` (each is read whole).
pub const BLOCKS_PAGE_MAX: usize = 100;
/// Most plans on one page of a program's plans (each waiting tranche's
/// condition is evaluated, leaf by leaf, against state: at most 32
/// tranches of at most 64 nodes each per plan).
pub const PLANS_PAGE_MAX: usize = 20;
/// Blocks on a page when the client does not say.
pub const BLOCKS_PAGE_DEFAULT: usize = 20;
/// How long a built report is served before a newer head rebuilds it.
pub const REPORT_FRESH: Duration = Duration::from_secs(5);
/// Most pages of validator-set changes read to name certificate signers.
const SET_CHANGE_PAGES_MAX: usize = 64;

type ApiResult<T> = Result<Json<T>, Problem>;

// ---------------------------------------------------------------- blocks

/// A committed block in a list: its header's main fields and who
/// certified it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockSummary {
    pub height: u64,
    pub hash: Hash,
    /// The block's timestamp (ms since the Unix epoch).
    pub time_ms: u64,
    /// The view it was proposed in.
    pub view: u64,
    pub proposer: PublicKey,
    /// The proposer's organisation in the validator set of the block's
    /// height.
    pub proposer_org: Option<OrgId>,
    pub tx_count: u32,
    pub certificate: Option<CertificateSummary>,
}

/// A commit certificate in a list: its view and its signers.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateSummary {
    pub view: u64,
    /// The signing validators' organisations (the validator index when the
    /// set does not name it).
    pub signers: Vec<String>,
}

/// The validator sets from genesis on, to name a past block's proposer
/// and certificate signers.
pub(crate) struct SetHistory {
    genesis: ValidatorSet,
    changes: Vec<SetChange>,
}

impl SetHistory {
    pub(crate) fn load(store: &RocksStore) -> Result<SetHistory, Problem> {
        let (_, bytes) = store
            .genesis()
            .map_err(internal)?
            .ok_or_else(|| internal("the store holds no genesis"))?;
        let genesis: Genesis =
            codec::decode_with_limit(&bytes, GENESIS_MAX_BYTES).map_err(internal)?;
        let mut changes: Vec<SetChange> = Vec::new();
        for _ in 0..SET_CHANGE_PAGES_MAX {
            let after = changes.last().map_or(0, |c| c.header.height);
            let page = store
                .set_changes(after, SET_CHANGES_MAX)
                .map_err(internal)?;
            let done = page.len() < SET_CHANGES_MAX;
            changes.extend(page);
            if done {
                break;
            }
        }
        Ok(SetHistory {
            genesis: genesis.validators,
            changes,
        })
    }

    /// The history, loaded once and loaded again only when a set change
    /// was committed after the last one it holds (one key probe).
    pub(crate) fn current(
        store: &RocksStore,
        cache: &ExploreCache,
    ) -> Result<Arc<SetHistory>, Problem> {
        if let Some(h) = locked(&cache.sets).clone() {
            let last = h.changes.last().map_or(0, |c| c.header.height);
            if store.set_changes(last, 1).map_err(internal)?.is_empty() {
                return Ok(h);
            }
        }
        let h = Arc::new(SetHistory::load(store)?);
        *locked(&cache.sets) = Some(h.clone());
        Ok(h)
    }

    /// The set that certified the block at `height`.
    pub(crate) fn at(&self, height: u64) -> &ValidatorSet {
        self.changes
            .iter()
            .rev()
            .find(|c| c.header.height < height)
            .map_or(&self.genesis, |c| &c.validators)
    }
}

fn summary(
    store: &RocksStore,
    sets: &SetHistory,
    height: u64,
) -> Result<Option<BlockSummary>, Problem> {
    let Some(block) = store.block(height).map_err(internal)? else {
        return Ok(None);
    };
    let set = sets.at(height);
    let h = &block.header;
    let certificate = store
        .certificate(height)
        .map_err(internal)?
        .map(|c| CertificateSummary {
            view: c.view,
            signers: c
                .signatures
                .iter()
                .map(|s| {
                    set.get(s.validator as usize)
                        .map_or_else(|| format!("#{}", s.validator), |v| v.org.to_string())
                })
                .collect(),
        });
    Ok(Some(BlockSummary {
        height,
        hash: block.hash(),
        time_ms: h.timestamp.ms(),
        view: h.view,
        proposer: h.proposer,
        proposer_org: set
            .validators()
            .iter()
            .find(|v| v.key == h.proposer)
            .map(|v| v.org.clone()),
        tx_count: h.tx_count,
        certificate,
    }))
}

/// A block page's bounds: `after` is the height of the last block of the
/// page before (the list runs down from the head).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlockPageQuery {
    /// The `next` of the page before (a height); absent for the first page.
    pub after: Option<String>,
    /// Blocks on the page: 1 to 100, 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// The committed blocks, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/blocks",
    tag = "blocks",
    params(BlockPageQuery),
    responses(
        (status = 200, description = "a page of block summaries, newest first", body = Page<BlockSummary>),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn blocks(
    State(s): State<AppState>,
    q: Result<Query<BlockPageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Page<BlockSummary>> {
    let Query(q) = q.map_err(query_rejection)?;
    let limit = page_limit(q.limit, BLOCKS_PAGE_DEFAULT, BLOCKS_PAGE_MAX)?;
    let below = match q.after.as_deref() {
        None => None,
        Some(a) => Some(
            a.parse::<u64>()
                .ok()
                .filter(|h| *h >= 1 && a.len() <= 20)
                .ok_or_else(|| {
                    Problem::new(
                        "bad-cursor",
                        "the cursor is not a block height: pass the `next` of the page before, unchanged",
                    )
                })?,
        ),
    };
    let store = s.store.clone();
    let cache = s.explore.clone();
    blocking(move || {
        let head = store.head().map_err(internal)?.map_or(0, |h| h.height);
        let base = store.base().map_err(internal)?.max(1);
        let top = below.map_or(head, |b| b.saturating_sub(1).min(head));
        let sets = SetHistory::current(&store, &cache)?;
        let mut items = Vec::with_capacity(limit);
        let mut h = top;
        while h >= base && items.len() < limit {
            match summary(&store, &sets, h)? {
                Some(b) => items.push(b),
                None => break,
            }
            h -= 1;
        }
        let next = match items.last() {
            Some(last) if last.height > base => Some(last.height.to_string()),
            _ => None,
        };
        Ok(Page { items, next })
    })
    .await
}

// ---------------------------------------------------------- applications

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApplicationQuery {
    /// Only the applications to this program.
    program: Option<String>,
    /// The `next` of the page before; absent for the first page.
    after: Option<String>,
    /// Items on the page: 1 to 1000, 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The project applications, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/applications",
    tag = "applications",
    params(ApplicationQuery),
    responses(
        (status = 200, description = "a page of applications with their votes", body = Page<Application>),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn applications(
    State(s): State<AppState>,
    q: Result<Query<ApplicationQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Page<Application>> {
    let Query(q) = q.map_err(query_rejection)?;
    let program = q
        .program
        .map(|p| Slug::new(p).map_err(|e| bad_request(e.to_string())))
        .transpose()?;
    let page = PageQuery {
        after: q.after,
        limit: q.limit,
    };
    let store = s.store.clone();
    blocking(move || {
        crate::api::list_page(
            &store,
            keys::APPLICATION_PREFIX,
            &page,
            |a: &Application| Ok(program.as_ref().is_none_or(|p| &a.program == p)),
        )
    })
    .await
}

// ----------------------------------------------------------------- plans

/// A plan page's bounds.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PlanPageQuery {
    /// The `next` of the page before; absent for the first page.
    after: Option<String>,
    /// Plans on the page: 1 to 20, 20 when absent.
    #[param(minimum = 1, maximum = 20)]
    limit: Option<usize>,
}

/// A plan with, for each tranche that still waits, whether its condition
/// holds now and which parts of it do.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub plan: Plan,
    /// Whether the plan has the approvals it needs to release.
    pub approved: bool,
    /// One per pending tranche, in the plan's order (released and
    /// cancelled tranches are not evaluated).
    pub tranches: Vec<TrancheView>,
}

/// A pending tranche's condition evaluated at the last block, as the
/// contracts evaluate it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TrancheView {
    pub id: Slug,
    /// The condition in the condition language.
    pub condition: String,
    pub holds: bool,
    /// Each leaf of the condition (a negated leaf shown with its `not`).
    pub leaves: Vec<LeafState>,
}

/// A program's disbursement plans with what each waiting tranche waits for.
#[utoipa::path(
    get,
    path = "/v1/programs/{id}/plans",
    tag = "programs",
    params(("id" = String, Path, description = "the program id"), PlanPageQuery),
    responses(
        (status = 200, description = "a page of the program's plans, each tranche's condition evaluated at the last block", body = Page<PlanView>),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn program_plans(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PlanPageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Page<PlanView>> {
    let Query(q) = q.map_err(query_rejection)?;
    let q = PageQuery {
        limit: Some(page_limit(q.limit, PLANS_PAGE_MAX, PLANS_PAGE_MAX)?),
        after: q.after,
    };
    let program = Slug::new(id).map_err(|e| bad_request(e.to_string()))?;
    let store = s.store.clone();
    blocking(move || {
        if store
            .state_get(&keys::program(&program))
            .map_err(internal)?
            .is_none()
        {
            return Err(Problem::new("not-found", format!("no program {program}")));
        }
        let page = crate::api::list_page(&store, keys::PLAN_PREFIX, &q, |p: &Plan| {
            Ok(p.program == program)
        })?;
        // Each plan is read again, and evaluated, at one moment: the head
        // block's height and time with the state it left.
        let view = store.point_in_time();
        let (height, time) = match view.head().map_err(internal)? {
            Some(h) => {
                let b = view
                    .block(h.height)
                    .map_err(internal)?
                    .ok_or_else(|| internal(format!("head block {} is missing", h.height)))?;
                (h.height, b.header.timestamp)
            }
            None => (0, Timestamp(0)),
        };
        let state = aidledger_audit::ViewState(&view);
        let mut items = Vec::with_capacity(page.items.len());
        for listed in page.items {
            let Some(bytes) = view.state_get(&keys::plan(&listed.id)).map_err(internal)? else {
                continue;
            };
            let plan: Plan = codec::decode(&bytes).map_err(internal)?;
            let checks = aidledger_execution::read_tranche_checks(&state, height, time, &plan)
                .map_err(internal)?;
            items.push(PlanView {
                approved: plan.approved(),
                tranches: checks
                    .into_iter()
                    .map(|c| TrancheView {
                        id: c.id,
                        condition: c.condition,
                        holds: c.holds,
                        leaves: c.leaves,
                    })
                    .collect(),
                plan,
            });
        }
        Ok(Page {
            items,
            next: page.next,
        })
    })
    .await
}

// --------------------------------------------------------------- reports

/// What the explorer's reads share between requests: the last report
/// built, and the validator-set history.
///
/// A report reads the whole state, so one is built at a time, in a task of
/// its own that fills the cache whatever happens to the request that
/// started it. While a newer one is built, readers get the last one (its
/// `as_of` says which block it is of); only the very first report is
/// waited for.
pub struct ExploreCache {
    reports: std::sync::Mutex<Reports>,
    sets: std::sync::Mutex<Option<Arc<SetHistory>>>,
    /// Payment proofs being built (`api_proof`): a permit goes with each
    /// build to its end, whatever happens to the request.
    pub(crate) proofs: Arc<tokio::sync::Semaphore>,
    /// Proofs built in the last seconds, so a receipt's QR code, asked
    /// for right after its proof, is not built again.
    pub(crate) proof_cache: crate::api_proof::ProofCache,
    /// Block reads waiting for their block (`?wait_ms`): a permit each, so
    /// waits cannot take every request slot; past them a read is answered
    /// at once.
    pub(crate) block_waits: Arc<tokio::sync::Semaphore>,
}

impl Default for ExploreCache {
    fn default() -> Self {
        ExploreCache {
            reports: Default::default(),
            sets: Default::default(),
            proofs: Arc::new(tokio::sync::Semaphore::new(
                crate::api_proof::PROOFS_AT_ONCE,
            )),
            proof_cache: Default::default(),
            block_waits: Arc::new(tokio::sync::Semaphore::new(crate::api::BLOCK_WAITS_AT_ONCE)),
        }
    }
}

#[derive(Default)]
struct Reports {
    last: Option<CachedReport>,
    building: bool,
    /// Requests waiting for the first report.
    waiting: Vec<tokio::sync::oneshot::Sender<Result<Arc<Report>, String>>>,
}

struct CachedReport {
    height: u64,
    built: tokio::time::Instant,
    report: Arc<Report>,
}

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The report as of the head, or the last one built while a newer one is
/// under way (at most [`REPORT_FRESH`] older when the head moved).
async fn current_report(s: &AppState) -> Result<Arc<Report>, Problem> {
    let head = s.store.head().map_err(internal)?.map_or(0, |h| h.height);
    let first = {
        let mut r = locked(&s.explore.reports);
        if let Some(l) = r
            .last
            .as_ref()
            .filter(|l| l.height >= head || l.built.elapsed() < REPORT_FRESH)
        {
            return Ok(l.report.clone());
        }
        if !r.building {
            r.building = true;
            build_report(s.store.clone(), s.explore.clone());
        }
        if let Some(l) = &r.last {
            return Ok(l.report.clone());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        r.waiting.push(tx);
        rx
    };
    first
        .await
        .map_err(|_| internal("the report build ended without an answer"))?
        .map_err(internal)
}

/// Builds a report from one point in time off the async workers, and puts
/// it in the cache.
fn build_report(store: Arc<RocksStore>, cache: Arc<ExploreCache>) {
    tokio::task::spawn_blocking(move || {
        let built = report::point_in_time_snapshot(store.as_ref())
            .and_then(|snap| report::build(&snap, None))
            .map(Arc::new)
            .map_err(|e| e.to_string());
        let mut r = locked(&cache.reports);
        r.building = false;
        if let Ok(report) = &built {
            r.last = Some(CachedReport {
                height: report.as_of.height,
                built: tokio::time::Instant::now(),
                report: report.clone(),
            });
        }
        for w in r.waiting.drain(..) {
            let _ = w.send(built.clone());
        }
    });
}

/// One region code's totals in one currency.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegionRow {
    pub region: String,
    /// Empty for a region with households but no money.
    pub currency: String,
    /// Deposits into programs whose scope is this region.
    pub deposited: u64,
    pub released: u64,
    pub settled: u64,
    /// How many releases went to this region.
    pub releases: u64,
    pub households_registered: u64,
    pub households_reached: u64,
}

fn row(r: &report::RegionReport) -> RegionRow {
    RegionRow {
        region: r.region.clone(),
        currency: r.currency.clone(),
        deposited: r.deposited,
        released: r.released,
        settled: r.settled,
        releases: r.releases.len() as u64,
        households_registered: r.households_registered,
        households_reached: r.households_reached,
    }
}

/// Every region's row, as `aidledger audit report` lists them.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RegionIndex {
    pub as_of: AsOf,
    pub rows: Vec<RegionRow>,
}

/// One county's or township's report, as `aidledger audit report --region`
/// prints it (without the list of households).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RegionView {
    pub as_of: AsOf,
    pub region: String,
    /// The rows of every code the region covers.
    pub rows: Vec<RegionRow>,
    /// One per currency: the sums of the rows.
    pub totals: Vec<RegionTotal>,
    pub households_registered: u64,
    pub households_reached: u64,
}

/// The money and households of every region code.
#[utoipa::path(
    get,
    path = "/v1/reports/regions",
    tag = "reports",
    responses(
        (status = 200, description = "every region code's totals per currency, as of a recent block", body = RegionIndex),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn regions(State(s): State<AppState>) -> ApiResult<RegionIndex> {
    let r = current_report(&s).await?;
    Ok(Json(RegionIndex {
        as_of: r.as_of.clone(),
        rows: r.regions.iter().map(row).collect(),
    }))
}

/// Which region's report (`?code=gansu/linxia`: a query parameter,
/// because region codes hold slashes).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RegionQuery {
    /// The region code; a county covers its townships' codes.
    code: String,
}

/// A county's or township's report: every code it covers, with totals.
#[utoipa::path(
    get,
    path = "/v1/reports/region",
    tag = "reports",
    params(RegionQuery),
    responses(
        (status = 200, description = "the region's rows and totals, as of a recent block", body = RegionView),
        (status = 400, description = "malformed request, id, cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn region(
    State(s): State<AppState>,
    q: Result<Query<RegionQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<RegionView> {
    let Query(q) = q.map_err(query_rejection)?;
    let code = RegionCode::new(q.code).map_err(|e| bad_request(e.to_string()))?;
    let r = current_report(&s).await?;
    let g = report::regional(&r, &code).map_err(internal)?;
    Ok(Json(RegionView {
        as_of: g.as_of,
        region: g.region,
        rows: g.rows.iter().map(row).collect(),
        totals: g.totals,
        households_registered: g.households_registered,
        households_reached: g.households_reached,
    }))
}
