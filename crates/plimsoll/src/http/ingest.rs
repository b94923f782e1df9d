//! `POST /api/v1/ingest` (remote samples, behind the ingest token), its CORS (only for the
//! `--cors-origin` origins), and `GET /agent/plimsoll-browser.js` (the browser monitor, open to
//! any page: it is public code).
//!
//! Order of the checks: the origin (403), the token (401; 403 when ingest is off), the body
//! size (413), its shape (400 naming the field; 413 over the samples per request), then the
//! limits of `ingest::Ingest` (429, 503). A refused request is counted by reason in
//! `plimsoll_ingest_rejected_total`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plimsoll_http::ApiError;

use super::HttpState;
use crate::ingest::body::{self, BodyError};
use crate::ingest::Refusal;

/// The largest body read, bytes.
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// The browser monitor, embedded.
const AGENT_JS: &str = include_str!("../../agents/browser/plimsoll-browser.js");

/// `GET /agent/plimsoll-browser.js`.
pub(crate) async fn agent_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            // Any page may import it (a module script is fetched in CORS mode), also a
            // cross-origin isolated one.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
        ],
        AGENT_JS,
    )
        .into_response()
}

/// `POST /api/v1/ingest`: 204 once the samples are taken in.
pub(crate) async fn post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Some((ingest, token)) = state.ingest.as_ref() else {
        return Err(ApiError::Forbidden(
            "ingest is off: no ingest token is configured (PLIMSOLL_INGEST_TOKEN, or \
             --ingest-token-file of plimsoll)"
                .to_owned(),
        ));
    };
    if !plimsoll_http::bearer_matches(&headers, token) {
        ingest.count_refusal("token");
        return Err(ApiError::IngestUnauthorized);
    }
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ingest.count_refusal("too_large");
            ApiError::TooLarge(format!(
                "the body is over {} KiB (send fewer samples per request)",
                MAX_BODY / 1024
            ))
        } else {
            ingest.count_refusal("malformed");
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let batch =
        body::parse(&bytes, crate::supervise::now_unix_ms()).map_err(|error| match error {
            BodyError::Malformed(message) => {
                ingest.count_refusal("malformed");
                ApiError::BadRequest(message)
            }
            BodyError::TooMany(message) => {
                ingest.count_refusal("too_large");
                ApiError::TooLarge(message)
            }
        })?;
    match ingest.accept(&batch, Instant::now()) {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(Refusal::Rate(message) | Refusal::Full(message)) => {
            Err(ApiError::TooManyRequests(message))
        }
        Err(Refusal::Stopping) => Err(ApiError::Unavailable("plimsoll is stopping".to_owned())),
    }
}

/// `OPTIONS /api/v1/ingest`: the preflight, answered by [`cors`] for allowed origins.
pub(crate) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Middleware on the ingest route: a request from a page (with `Origin`) goes on only from a
/// configured origin, and its answer carries `Access-Control-Allow-Origin` for it; the
/// preflight is answered here. Requests without `Origin` (a server-side reporter) go on.
pub(crate) async fn cors(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| state.cors_origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
    if !allowed {
        if let Some((ingest, _)) = state.ingest.as_ref() {
            ingest.count_refusal("origin");
        }
        let shown = crate::bounded::excerpt(&String::from_utf8_lossy(origin.as_bytes()));
        let mut response = ApiError::Forbidden(format!(
            "origin '{shown}' may not post to ingest (allow it with --cors-origin {shown})"
        ))
        .into_response();
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
        return response;
    }
    let mut response = if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    response
}
