//! `/v1/docs`: the interactive viewer of the OpenAPI document (Swagger UI,
//! vendored in `node/assets/swagger-ui` and built into the binary, so it
//! works with no internet access). It shows the document; "try it out" is
//! off by default, and when a reader turns it on, it sends requests to
//! this node like any other client.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::problem::ProblemBody;

const BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aidledger node API</title>
<link rel="stylesheet" href="/v1/docs/swagger-ui.css">
</head>
<body>
<div id="api-docs"></div>
<script src="/v1/docs/swagger-ui-bundle.js"></script>
<script src="/v1/docs/init.js"></script>
</body>
</html>
"#;

const INIT: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/v1/openapi.json",
    dom_id: "#api-docs",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false
  });
});
"##;

/// Scripts and styles change only with the binary.
const CACHE: &str = "public, max-age=3600";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    static_file(content_type, CACHE, body)
}

/// A file built into the binary, as the viewer and the explorer serve it.
pub(crate) fn static_file(
    content_type: &'static str,
    cache: &'static str,
    body: &'static [u8],
) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The interactive viewer of this document.
#[utoipa::path(
    get,
    path = "/v1/docs",
    tag = "node",
    responses(
        (status = 200, description = "the interactive viewer of this document", body = String, content_type = "text/html"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn docs() -> Response {
    asset("text/html; charset=utf-8", PAGE.as_bytes())
}

/// The viewer's script (vendored Swagger UI).
#[utoipa::path(
    get,
    path = "/v1/docs/swagger-ui-bundle.js",
    tag = "node",
    responses(
        (status = 200, description = "the viewer's script", body = String, content_type = "text/javascript"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn docs_bundle() -> Response {
    asset("text/javascript; charset=utf-8", BUNDLE)
}

/// The viewer's start-up script.
#[utoipa::path(
    get,
    path = "/v1/docs/init.js",
    tag = "node",
    responses(
        (status = 200, description = "the viewer's start-up script", body = String, content_type = "text/javascript"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn docs_init() -> Response {
    asset("text/javascript; charset=utf-8", INIT.as_bytes())
}

/// The viewer's styles.
#[utoipa::path(
    get,
    path = "/v1/docs/swagger-ui.css",
    tag = "node",
    responses(
        (status = 200, description = "the viewer's styles", body = String, content_type = "text/css"),
        (status = 500, description = "internal error (an error id only)", body = ProblemBody, content_type = "application/problem+json")
    )
)]
pub(crate) async fn docs_css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}
