//! `GET /`: the dashboard, a static page that polls `/health` and the API and draws with uPlot.
//! Every asset is compiled into the binary (no CDN: it works offline and behind firewalls).

use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use plimsoll_http::ApiError;

const PAGE: &str = include_str!("../../assets/dashboard.html");

/// The assets the page loads from `/assets/{file}`: name, content type, text.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/uPlot.min.css"),
    ),
];

pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, text) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::NotFound(format!("no asset '{file}'")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        *text,
    )
        .into_response())
}
