//! The API's HTTP server, bounded against hostile clients: a cap on open
//! connections below the process's file limit (RocksDB and libp2p share
//! it), a deadline for a client to finish its headers, a deadline for the
//! body, a request timeout, and a limit on requests handled at once (over
//! it: 503 at once, never a queue). `/health` and `/metrics` bypass the
//! request limit, so an operator can still look at a node that is flooded.
//! Write routes (every `POST`) are also rate-limited per client address
//! (governor's keyed GCRA limiter): over it, 429 `rate-limited` with
//! `Retry-After`, before the body is read.

use std::net::IpAddr;
use std::num::NonZeroU32;
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
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The client's address, attached to each request by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

type ClientLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

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
    /// Write requests (`POST`) one client address may make per second,
    /// on average...
    pub write_rate_per_client: u32,
    /// ...and at once after a quiet spell.
    pub write_burst_per_client: u32,
}

/// What the server counts: the node's metrics (`aidledger_api_*`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub connections_refused: Counter,
    pub requests_shed: Counter,
    pub timeouts: Counter,
    pub rate_limited: Counter,
    /// Connections closed because the request head did not arrive within
    /// the header deadline.
    pub header_timeouts: Counter,
    /// Requests answered 413 (a body over its route's limit).
    pub too_large: Counter,
}

impl Counters {
    pub fn of(m: &crate::metrics::Metrics) -> Counters {
        Counters {
            connections_refused: m.api_connections_refused.clone(),
            requests_shed: m.api_requests_shed.clone(),
            timeouts: m.api_timeouts.clone(),
            rate_limited: m.api_rate_limited.clone(),
            header_timeouts: m.api_header_timeouts.clone(),
            too_large: m.api_payload_too_large.clone(),
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
    let one = NonZeroU32::MIN;
    let quota =
        governor::Quota::per_second(NonZeroU32::new(limits.write_rate_per_client).unwrap_or(one))
            .allow_burst(NonZeroU32::new(limits.write_burst_per_client).unwrap_or(one));
    let limiter: Arc<ClientLimiter> = Arc::new(governor::RateLimiter::keyed(quota));
    let app = app.layer(axum::middleware::from_fn({
        let requests = requests.clone();
        let counters = counters.clone();
        let limits = limits.clone();
        let limiter = limiter.clone();
        move |req: Request, next: axum::middleware::Next| {
            let requests = requests.clone();
            let counters = counters.clone();
            let limits = limits.clone();
            let limiter = limiter.clone();
            async move { bounded(req, next, &requests, &counters, &limits, &limiter).await }
        }
    }));
    let mut accepted_count: u64 = 0;
    // Every connection's task: at shutdown, each has a moment to finish,
    // and the rest are ended, so that none outlives the server with the
    // app and what the app holds (the store).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = stopping(&mut stop) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
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
        // Forget clients whose budget is full again, now and then, so
        // the limiter's memory follows the clients of the last moments.
        accepted_count += 1;
        if accepted_count.is_multiple_of(1024) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let ip = ClientIp(peer.ip());
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut r: axum::http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(ip);
                r
            },
        ));
        let header_timeout = limits.header_timeout;
        let mut stop = stop.clone();
        let header_timeouts = counters.header_timeouts.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if r.is_err_and(|e| e.is_timeout()) {
                        header_timeouts.inc();
                    }
                }
                // A connection accepted as the node began to stop sees
                // it at once: `wait_for` looks at the value first.
                () = stopping(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CONNECTION_DRAIN, conn).await;
                }
            }
        });
    }
    let drained = tokio::time::timeout(CONNECTION_DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // A client that keeps its connection busy (a request body still
        // coming, a response it does not read) is cut off.
        tracing::info!(
            open = connections.len(),
            "API connections not finished within the shutdown's drain are closed"
        );
    }
    connections.shutdown().await;
}

/// Returns once `stop` is true (at once if it already is) or its sender
/// is gone.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// How long the API's connections may finish their requests once the
/// node stops.
const CONNECTION_DRAIN: Duration = Duration::from_secs(2);

/// The per-request bounds: the request limit (but for health and
/// metrics) and the request deadline.
async fn bounded(
    req: Request,
    next: axum::middleware::Next,
    requests: &Semaphore,
    counters: &Counters,
    limits: &Limits,
    limiter: &ClientLimiter,
) -> Response {
    if req.method() == axum::http::Method::POST {
        if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>().copied() {
            if let Err(not_until) = limiter.check_key(&ip) {
                counters.rate_limited.inc();
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut p = crate::problem::Problem::new(
                    "rate-limited",
                    format!(
                        "this client sent more write requests than api.write_rate_per_client \
                         allows ({} a second, bursts of {}); retry after {secs} s",
                        limits.write_rate_per_client, limits.write_burst_per_client
                    ),
                );
                p.retry_after = Some(secs);
                return p.into_response();
            }
        }
    }
    let exempt = matches!(req.uri().path(), "/health" | "/metrics");
    let _permit = if exempt {
        None
    } else {
        match requests.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                counters.requests_shed.inc();
                return failure(
                    "busy",
                    "the node is handling as many requests as it allows; retry shortly",
                );
            }
        }
    };
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(r) => {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                counters.too_large.inc();
            }
            r
        }
        Err(_) => {
            counters.timeouts.inc();
            failure("timeout", "the request took too long")
        }
    }
}

fn failure(code: &'static str, msg: &str) -> Response {
    crate::problem::Problem::new(code, msg).into_response()
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
            write_rate_per_client: 1_000,
            write_burst_per_client: 1_000,
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

    /// Once the node stops, `serve` returns only after every connection's
    /// task has ended: a request in flight that finishes within the drain
    /// is answered, one that would run on is cut off, and nothing the app
    /// holds (on a node, the store) outlives the server.
    #[test]
    fn serve_returns_only_once_every_connection_has_ended() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        // A stand-in for the store: each handler holds a clone.
        let held = Arc::new(());
        // A handler that answers `body` after `delay`, holding its clone.
        let holding = |delay: Duration, body: &'static str| {
            let held = held.clone();
            get(move || {
                let h = held.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    drop(h);
                    body
                }
            })
        };
        let app = Router::new()
            .route("/quick", holding(Duration::from_millis(300), "quick"))
            .route("/stuck", holding(Duration::from_secs(600), "never"));
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, rx) = watch::channel(false);
        let server = rt.spawn(serve(listener, app, limits(8), Counters::default(), rx));
        let ask = |path: &'static str| {
            let a = addr.clone();
            std::thread::spawn(move || {
                request(&a, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            })
        };
        let (quick, stuck) = (ask("/quick"), ask("/stuck"));
        std::thread::sleep(Duration::from_millis(150));
        stop.send_replace(true);
        rt.block_on(server).unwrap();
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "a connection's task outlived the server"
        );
        let quick = quick.join().unwrap();
        assert!(quick.starts_with("HTTP/1.1 200"), "{quick}");
        assert!(quick.ends_with("quick"), "{quick}");
        let stuck = stuck.join().unwrap();
        assert!(!stuck.contains("never"), "{stuck}");
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

    /// One client over its write budget gets 429 with Retry-After; its
    /// reads are not limited, and the limit is per client address.
    #[test]
    fn a_client_over_its_write_rate_gets_429_with_retry_after() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = Router::new()
            .route("/w", post(|| async { "written" }))
            .route("/r", get(|| async { "read" }));
        let l = Limits {
            write_rate_per_client: 1,
            write_burst_per_client: 3,
            ..limits(64)
        };
        let (addr, counters, _stop) = start(&rt, app, l);
        let post_w =
            "POST /w HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        for i in 0..3 {
            let r = request(&addr, post_w);
            assert!(r.starts_with("HTTP/1.1 200"), "write {i}: {r}");
        }
        let r = request(&addr, post_w);
        assert!(r.starts_with("HTTP/1.1 429"), "{r}");
        assert!(r.contains("rate-limited"), "{r}");
        assert!(r.to_lowercase().contains("retry-after: 1"), "{r}");
        for _ in 0..10 {
            let r = request(
                &addr,
                "GET /r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            );
            assert!(r.starts_with("HTTP/1.1 200"), "reads are not limited: {r}");
        }
        assert_eq!(counters.rate_limited.get(), 1);
        // The budget refills: one write a second.
        std::thread::sleep(Duration::from_millis(1100));
        let r = request(&addr, post_w);
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // Another client address (127.0.0.2 is loopback too) has its own
        // budget.
        let other = std::net::SocketAddr::new("127.0.0.2".parse().unwrap(), 0);
        let target: std::net::SocketAddr = addr.parse().unwrap();
        let mut s = rt
            .block_on(async {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind(other).unwrap();
                sock.connect(target).await.unwrap().into_std()
            })
            .unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(post_w.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
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
        let (addr, counters, _stop) = start(&rt, app, limits(4));
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
        // Counted (the task that closed it may finish a moment later).
        let counted = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            counters.header_timeouts.get() == 1
        });
        assert!(counted, "{}", counters.header_timeouts.get());
    }
}
