//! A small blocking HTTP client for a node's JSON API (`/v1/...`), used by
//! the CLI. Non-2xx answers carry a problem body (RFC 9457, ADR 019), whose
//! detail becomes the error message.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api_types::{ProblemBody, SubmitRequest, TxStatus};

/// Largest response body read (blocks and traces can be large).
const BODY_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Page size asked for when following a list.
const PAGE_LIMIT: usize = 1000;
/// Most items the CLI gathers from one list.
pub const GATHER_MAX_ITEMS: usize = 1_000_000;
/// Time allowed for an ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Extra time allowed beyond a submission's own `wait_ms`.
const SUBMIT_SLACK: Duration = Duration::from_secs(15);

/// A refusal the node answered with a problem (any non-2xx but 404): its
/// status, code and `Retry-After`. It is the error's source, so callers
/// that can wait and try again (429, 503) find it with `downcast_ref`;
/// it shows as the node's detail.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    /// The problem's code; empty when the body was not a problem.
    pub code: String,
    pub retry_after: Option<Duration>,
    pub detail: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// Whether the node only asked the client to slow down (429) or come
    /// back later (503): nothing was taken, and the same request may be
    /// sent again after `retry_after`.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 429 | 503)
    }
}

/// The answer to a request that reached the node.
pub enum Answer<T> {
    Ok(T),
    /// 404 with the node's message.
    NotFound(String),
}

/// One client per node URL, with one HTTP agent: its connections are kept
/// and reused across requests (the CLI's bulk commands make thousands).
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// `base` is `http://host:port` (a trailing `/` is dropped).
    pub fn new(base: &str) -> Result<Client> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("node URL {base:?} must start with http:// (e.g. http://127.0.0.1:26701)");
        }
        if base.starts_with("https://") {
            bail!(
                "node URL {base:?}: https is not supported; the API listens on loopback over http"
            );
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(Duration::from_secs(5)))
            .max_redirects(0)
            .build()
            .into();
        Ok(Client { base, agent })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the node at {}: {e} (is it running? set --node or AIDLEDGER_NODE)",
            self.base
        )
    }

    /// Reads a response: the body as JSON on 2xx, the API error otherwise.
    fn finish(
        &self,
        path: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<Answer<serde_json::Value>> {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_MAX_BYTES)
            .read_to_string()
            .with_context(|| format!("reading the answer to {path} from {}", self.base))?;
        if status.is_success() {
            let v = serde_json::from_str(&text)
                .with_context(|| format!("the answer to {path} is not JSON"))?;
            return Ok(Answer::Ok(v));
        }
        let (msg, code) = match serde_json::from_str::<ProblemBody>(&text) {
            Ok(e) => (e.detail, e.code),
            Err(_) => {
                let t: String = text.trim().chars().take(200).collect();
                let msg = if t.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {t}")
                };
                (msg, String::new())
            }
        };
        if status.as_u16() == 404 {
            return Ok(Answer::NotFound(msg));
        }
        Err(anyhow::Error::new(Refused {
            status: status.as_u16(),
            code,
            retry_after,
            detail: msg,
        }))
    }

    /// `GET path`, as raw JSON; a 404 is an `Answer::NotFound`.
    pub fn get_value(&self, path: &str) -> Result<Answer<serde_json::Value>> {
        let resp = self
            .agent
            .get(&self.url(path))
            .header("accept", "application/json")
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.finish(path, resp)
    }

    /// `GET path` as raw JSON; a 404 is an error with the node's message.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        match self.get_value(path)? {
            Answer::Ok(v) => Ok(v),
            Answer::NotFound(m) => Err(anyhow!(m)),
        }
    }

    /// `GET path`, decoded into `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let v = self.get_json(path)?;
        serde_json::from_value(v).with_context(|| format!("unexpected answer to {path}"))
    }

    /// `GET path`, decoded into `T`; `None` on 404.
    pub fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.get_value(path)? {
            Answer::Ok(v) => serde_json::from_value(v)
                .map(Some)
                .with_context(|| format!("unexpected answer to {path}")),
            Answer::NotFound(_) => Ok(None),
        }
    }

    /// Every item of a paginated list route (ADR 019), following `next`
    /// with the largest pages. Refused, not cut, past [`GATHER_MAX_ITEMS`].
    pub fn get_all(&self, path: &str) -> Result<Vec<serde_json::Value>> {
        let mut items = Vec::new();
        self.follow(path, |mut page| {
            match page.get_mut("items").map(serde_json::Value::take) {
                Some(serde_json::Value::Array(a)) => items.extend(a),
                _ => bail!("the answer to {path} is not a page of items"),
            }
            Ok(items.len())
        })?;
        Ok(items)
    }

    /// A whole paginated trace: its first page with the arrays `lists`
    /// joined from every page.
    pub fn get_trace(&self, path: &str, lists: &[&str]) -> Result<serde_json::Value> {
        let mut whole: Option<serde_json::Value> = None;
        self.follow(path, |mut page| {
            let Some(w) = whole.as_mut() else {
                whole = Some(page);
                return Ok(lists
                    .iter()
                    .filter_map(|l| whole.as_ref()?.get(l)?.as_array().map(Vec::len))
                    .sum());
            };
            let mut n = 0;
            for l in lists {
                if let (Some(serde_json::Value::Array(more)), Some(serde_json::Value::Array(acc))) =
                    (page.get_mut(*l).map(serde_json::Value::take), w.get_mut(*l))
                {
                    acc.extend(more);
                    n += acc.len();
                }
            }
            Ok(n)
        })?;
        let mut whole = whole.ok_or_else(|| anyhow!("no answer to {path}"))?;
        if let Some(o) = whole.as_object_mut() {
            o.remove("next");
        }
        Ok(whole)
    }

    /// Reads `path` page by page (`limit` the largest, `after` the page
    /// before's `next`), handing each page to `take`, which says how many
    /// items it holds so far.
    fn follow(
        &self,
        path: &str,
        mut take: impl FnMut(serde_json::Value) -> Result<usize>,
    ) -> Result<()> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                None => format!("{path}{sep}limit={PAGE_LIMIT}"),
                Some(c) => format!("{path}{sep}limit={PAGE_LIMIT}&after={c}"),
            };
            let page = self.get_json(&url)?;
            let next = match page.get("next") {
                Some(serde_json::Value::String(c))
                    if c.bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'-') =>
                {
                    Some(c.clone())
                }
                None | Some(serde_json::Value::Null) => None,
                Some(other) => bail!("the answer to {path} has a bad next cursor: {other}"),
            };
            if take(page)? > GATHER_MAX_ITEMS {
                bail!(
                    "{path} has more than {GATHER_MAX_ITEMS} items; read it page by page with \
                     the API (?limit=&after=)"
                );
            }
            match next {
                Some(c) if after.as_ref() != Some(&c) => after = Some(c),
                Some(_) => bail!("the node answered {path} with the same cursor twice"),
                None => return Ok(()),
            }
        }
    }

    fn post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let resp = self
            .agent
            .post(&self.url(path))
            .header("accept", "application/json")
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        match self.finish(path, resp)? {
            Answer::Ok(v) => Ok(v),
            Answer::NotFound(m) => Err(anyhow!(m)),
        }
    }

    /// `POST /v1/txs`: submits an encoded signed transaction, waiting up to
    /// `wait_ms` for it to commit. Returns the raw JSON and its decoding.
    pub fn submit(&self, tx_hex: String, wait_ms: u64) -> Result<(serde_json::Value, TxStatus)> {
        let req = SubmitRequest {
            tx: tx_hex,
            wait_ms,
        };
        let timeout = Duration::from_millis(wait_ms) + SUBMIT_SLACK;
        let v = self.post("/v1/txs", &req, timeout)?;
        let st = serde_json::from_value(v.clone()).context("unexpected answer to POST /v1/txs")?;
        Ok((v, st))
    }

    /// `POST /v1/txs/batch`: up to `BATCH_SUBMIT_MAX` encoded signed
    /// transactions; one result per transaction, in order.
    pub fn submit_batch(&self, txs: Vec<String>) -> Result<crate::api_types::BatchSubmitResponse> {
        let n = txs.len();
        let v = self.post(
            "/v1/txs/batch",
            &crate::api_types::BatchSubmitRequest { txs },
            REQUEST_TIMEOUT + SUBMIT_SLACK,
        )?;
        let r: crate::api_types::BatchSubmitResponse =
            serde_json::from_value(v).context("unexpected answer to POST /v1/txs/batch")?;
        if r.results.len() != n {
            bail!(
                "the node answered {} results for {n} transactions",
                r.results.len()
            );
        }
        Ok(r)
    }

    /// True if `GET /health` answers 2xx within a short timeout.
    pub fn healthy(&self) -> bool {
        self.agent
            .get(&self.url("/health"))
            .config()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .call()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }
}
