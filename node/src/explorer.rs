//! The explorer (ADR 021): a read-only web app every node serves at `/`,
//! built into the binary (`node/assets/explorer`, hand-written, no build
//! step) so it works with no internet access. It reads the same public
//! API as any client. The page is served under a strict
//! Content-Security-Policy: scripts and styles only from this node, no
//! inline code, requests only to this node, no framing. Everything it
//! shows comes from a ledger that any signing key writes to, so the app
//! builds its DOM from text nodes only; the policy is the second wall.

use axum::http::{header, HeaderValue};
use axum::response::Response;

use crate::problem::ProblemBody;

const PAGE: &[u8] = include_bytes!("../assets/explorer/index.html");
const SCRIPT: &[u8] = include_bytes!("../assets/explorer/app.js");
const STYLE: &[u8] = include_bytes!("../assets/explorer/app.css");

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    // Small files: a browser asks again, so a new binary's app is seen at
    // once.
    let mut r = crate::api_docs::static_file(content_type, "no-cache", body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The explorer: consortium, blocks, programs, applications, anomalies,
/// household cards and county reports, in Chinese and English.
#[utoipa::path(
    get,
    path = "/",
    tag = "explorer",
    responses(
        (status = 200, description = "the explorer web app (its views are chosen by the URL's #fragment)", body = String, content_type = "text/html"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn explorer_page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The explorer's script.
#[utoipa::path(
    get,
    path = "/explorer/app.js",
    tag = "explorer",
    responses(
        (status = 200, description = "the explorer's script", body = String, content_type = "text/javascript"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn explorer_js() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The explorer's style sheet.
#[utoipa::path(
    get,
    path = "/explorer/app.css",
    tag = "explorer",
    responses(
        (status = 200, description = "the explorer's style sheet", body = String, content_type = "text/css"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn explorer_css() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app must not load anything from elsewhere, nor run inline code
    /// the policy would block (a browser test would only see a blank
    /// page).
    #[test]
    fn the_app_names_no_other_origin_and_has_no_inline_code() {
        let page = std::str::from_utf8(PAGE).unwrap_or_default();
        let script = std::str::from_utf8(SCRIPT).unwrap_or_default();
        let style = std::str::from_utf8(STYLE).unwrap_or_default();
        for (name, text) in [("index.html", page), ("app.js", script), ("app.css", style)] {
            for bad in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace is a name, not a request.
                let hits = text
                    .match_indices(bad)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/"))
                    .count();
                assert_eq!(hits, 0, "{name} names another origin ({bad})");
            }
        }
        for bad in [
            "<script>",
            "<style",
            " style=\"",
            " onclick=",
            " onload=",
            "javascript:",
        ] {
            assert!(!page.contains(bad), "index.html has inline code: {bad}");
        }
        assert!(page.contains("/explorer/app.js") && page.contains("/explorer/app.css"));
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
        ] {
            assert!(!script.contains(bad), "app.js uses {bad}");
        }
    }
}
