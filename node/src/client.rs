//! A small blocking HTTP client for a node's JSON API (`/v1/...`), used by
//! the CLI. Non-2xx answers carry an [`ApiError`] body, which becomes the
//! error message.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api_types::{ApiError, SubmitRequest, TxStatus};

/// Largest response body read (blocks and traces can be large).
const BODY_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Time allowed for an ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Extra time allowed beyond a submission's own `wait_ms`.
const SUBMIT_SLACK: Duration = Duration::from_secs(15);

/// The answer to a request that reached the node.
pub enum Answer<T> {
    Ok(T),
    /// 404 with the node's message.
    NotFound(String),
}

pub struct Client {
    base: String,
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
        Ok(Client { base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn agent(timeout: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(Duration::from_secs(5)))
            .max_redirects(0)
            .build()
            .into()
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
        let msg = match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => e.error,
            Err(_) => {
                let t: String = text.trim().chars().take(200).collect();
                if t.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {t}")
                }
            }
        };
        if status.as_u16() == 404 {
            return Ok(Answer::NotFound(msg));
        }
        Err(anyhow!(msg))
    }

    /// `GET path`, as raw JSON; a 404 is an `Answer::NotFound`.
    pub fn get_value(&self, path: &str) -> Result<Answer<serde_json::Value>> {
        let resp = Self::agent(REQUEST_TIMEOUT)
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

    fn post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let resp = Self::agent(timeout)
            .post(&self.url(path))
            .header("accept", "application/json")
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

    /// True if `GET /health` answers 2xx within a short timeout.
    pub fn healthy(&self) -> bool {
        Self::agent(Duration::from_secs(2))
            .get(&self.url("/health"))
            .call()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }
}
