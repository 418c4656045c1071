//! The API's HTTP server, bounded against hostile clients: a cap on open
//! connections below the process's file limit (RocksDB and libp2p share
//! it), a deadline for a client to finish its headers, a deadline for the
//! body, a request timeout, and a limit on requests handled at once (over
//! it: 503 at once, never a queue). `/health` and `/metrics` bypass the
//! request limit, so an operator can still look at a node that is flooded.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The server's limits (`[api]` in config.toml).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Most requests handled at once (health and metrics aside).
    pub max_requests: usize,
    /// A client must send its whole request head within this.
    pub header_timeout: Duration,
    /// A client must send its whole body within this.
    pub body_timeout: Duration,
    /// A request must be answered within this (a submit that waits for
    /// its commit has its own, shorter, bound inside).
    pub request_timeout: Duration,
}

/// What the server counts: the node's metrics (`aidledger_api_*`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub connections_refused: Counter,
    pub requests_shed: Counter,
    pub timeouts: Counter,
}

impl Counters {
    pub fn of(m: &crate::metrics::Metrics) -> Counters {
        Counters {
            connections_refused: m.api_connections_refused.clone(),
            requests_shed: m.api_requests_shed.clone(),
            timeouts: m.api_timeouts.clone(),
        }
    }
}

/// The soft limit on open files of this process, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Raises this process's soft open-file limit to its hard limit (at most
/// 65,536): a node holds RocksDB's files, libp2p's sockets and the API's
/// connections, and the usual soft default of 1,024 leaves the API a few
/// hundred. Returns the soft limit in force afterwards.
pub fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let want = hard.min(65_536);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_err() {
        return Some(soft);
    }
    Some(want.max(soft))
}

/// `wanted`, but at most a quarter of the process's file limit: the rest
/// is for RocksDB's files and libp2p's sockets.
pub fn connection_cap(wanted: usize) -> usize {
    match open_file_limit() {
        Some(n) => wanted.min((n / 4).max(16) as usize),
        None => wanted,
    }
}

/// Serves `app` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    counters: Counters,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let requests = Arc::new(Semaphore::new(limits.max_requests));
    // A body must arrive within its deadline: a client trickling it cannot
    // hold a request slot for long (its size is bounded by each route).
    let app = app.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let app = app.layer(axum::middleware::from_fn({
        let requests = requests.clone();
        let counters = counters.clone();
        let limits = limits.clone();
        move |req: Request, next: axum::middleware::Next| {
            let requests = requests.clone();
            let counters = counters.clone();
            let limits = limits.clone();
            async move { bounded(req, next, &requests, &counters, &limits).await }
        }
    }));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, usually: back off a little.
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            counters.connections_refused.inc();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let header_timeout = limits.header_timeout;
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

/// The per-request bounds: the request limit (but for health and
/// metrics) and the request deadline.
async fn bounded(
    req: Request,
    next: axum::middleware::Next,
    requests: &Semaphore,
    counters: &Counters,
    limits: &Limits,
) -> Response {
    let exempt = matches!(req.uri().path(), "/health" | "/metrics");
    let _permit = if exempt {
        None
    } else {
        match requests.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                counters.requests_shed.inc();
                return failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the node is handling as many requests as it allows; retry shortly",
                );
            }
        }
    };
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            counters.timeouts.inc();
            failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long",
            )
        }
    }
}

fn failure(status: StatusCode, code: &str, msg: &str) -> Response {
    (
        status,
        axum::Json(crate::api_types::ApiError {
            error: msg.to_string(),
            code: code.to_string(),
        }),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the tests time the server's deadlines
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use std::io::{Read, Write};

    fn limits(max_requests: usize) -> Limits {
        Limits {
            max_connections: 64,
            max_requests,
            header_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Starts `serve` on a free loopback port; returns its address.
    fn start(
        rt: &tokio::runtime::Runtime,
        app: Router,
        l: Limits,
    ) -> (String, Counters, watch::Sender<bool>) {
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let counters = Counters::default();
        let (tx, rx) = watch::channel(false);
        rt.spawn(serve(listener, app, l, counters.clone(), rx));
        (addr, counters, tx)
    }

    fn request(addr: &str, raw: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn requests_over_the_limit_get_503_at_once_and_health_still_answers() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "done"
                }),
            )
            .route("/health", get(|| async { "ok" }));
        let (addr, counters, _stop) = start(&rt, app, limits(1));
        let a = addr.clone();
        let first = std::thread::spawn(move || {
            request(
                &a,
                "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let second = request(
            &addr,
            "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert!(second.starts_with("HTTP/1.1 503"), "{second}");
        assert!(second.contains("busy"), "{second}");
        let health = request(
            &addr,
            "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(first.join().unwrap().starts_with("HTTP/1.1 200"));
        assert_eq!(counters.requests_shed.get(), 1);
    }

    #[test]
    fn a_body_that_does_not_arrive_in_time_fails_and_frees_the_slot() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = Router::new().route(
            "/echo",
            post(|body: axum::body::Bytes| async move {
                match std::str::from_utf8(&body) {
                    Ok(s) => (StatusCode::OK, s.to_string()),
                    Err(_) => (StatusCode::BAD_REQUEST, String::new()),
                }
            }),
        );
        let (addr, _, _stop) = start(&rt, app, limits(1));
        // Promises ten bytes, sends three.
        let t = std::time::Instant::now();
        let r = request(
            &addr,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc",
        );
        assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // The one request slot is free again.
        let ok = request(
            &addr,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz",
        );
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("xyz"),
            "{ok}"
        );
    }

    #[test]
    fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = Router::new().route("/health", get(|| async { "ok" }));
        let (addr, _, _stop) = start(&rt, app, limits(4));
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "closed after {:?}",
            t.elapsed()
        );
    }
}
