//! The one error type of the HTTP server: every failure of a handler is a response. Clients get
//! a specific message for their own mistakes and a generic one for ours; the detail of ours
//! rides along in the response's extensions for the logging middleware (`log_server_errors`),
//! which is the only place that logs.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// What went wrong while answering a request.
#[derive(Debug)]
pub enum ApiError {
    /// The request names something that does not exist (a target, …); the message names it.
    NotFound(String),
    /// The request is malformed (a bad `since`, a bad body); the message names the value.
    BadRequest(String),
    /// An admin route without the right bearer token.
    Unauthorized,
    /// The request body is larger than the route reads; the message says the limit.
    TooLarge(String),
    /// A read route, behind a read token, without it (nor the admin token).
    ReadUnauthorized,
    /// An admin route while no admin token is configured: admin actions are off.
    AdminDisabled,
    /// The target cannot do this now (watched, between two runs, the action failed); why.
    Conflict(String),
    /// The target, or plimsoll, cannot do this at all (gc of a process without an agent); why.
    NotImplemented(String),
    /// The target's loop did not answer in time.
    Timeout(String),
    /// Our own failure (the store, a panicked task); the detail is logged, never sent.
    Internal(String),
    /// The ingest route without the right ingest token.
    IngestUnauthorized,
    /// Refused whoever asks (ingest off, an origin not allowed); why.
    Forbidden(String),
    /// The client sends too much, too often; why (429, `Retry-After: 1`).
    TooManyRequests(String),
    /// The server cannot take this now (it is stopping); why.
    Unavailable(String),
}

/// The detail of a server error, for the logging middleware.
#[derive(Debug, Clone)]
pub struct ErrorDetail(pub String);

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized | ApiError::ReadUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AdminDisabled => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::IngestUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, detail) = match self {
            ApiError::NotFound(message)
            | ApiError::BadRequest(message)
            | ApiError::TooLarge(message)
            | ApiError::Conflict(message)
            | ApiError::NotImplemented(message)
            | ApiError::Forbidden(message)
            | ApiError::TooManyRequests(message)
            | ApiError::Unavailable(message) => (message, None),
            ApiError::IngestUnauthorized => (
                "missing or wrong ingest token (send 'Authorization: Bearer TOKEN' with the \
                 ingest token)"
                    .to_owned(),
                None,
            ),
            ApiError::Unauthorized => (
                "missing or wrong admin token (send 'Authorization: Bearer TOKEN')".to_owned(),
                None,
            ),
            ApiError::ReadUnauthorized => (
                "missing or wrong read token (send 'Authorization: Bearer TOKEN' with the read \
                 or the admin token)"
                    .to_owned(),
                None,
            ),
            ApiError::AdminDisabled => (
                "admin actions are off: no admin token is configured (PLIMSOLL_ADMIN_TOKEN, or \
                 --admin-token-file of plimsoll)"
                    .to_owned(),
                None,
            ),
            ApiError::Timeout(message) => (message.clone(), Some(message)),
            ApiError::Internal(detail) => ("internal error".to_owned(), Some(detail)),
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(detail) = detail {
            response.extensions_mut().insert(ErrorDetail(detail));
        }
        response
    }
}

/// Middleware: logs the responses that are our fault (5xx), with the detail the client did
/// not get.
pub async fn log_server_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status().is_server_error() {
        let detail = response
            .extensions()
            .get::<ErrorDetail>()
            .map_or("", |d| d.0.as_str());
        tracing::warn!(%method, %path, status = response.status().as_u16(), error = %detail, "HTTP request failed");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail_from_the_client_but_keep_it_for_the_log() {
        let response = ApiError::Internal("disk on fire".to_owned()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let detail = response
            .extensions()
            .get::<ErrorDetail>()
            .map(|d| d.0.clone());
        assert_eq!(detail.as_deref(), Some("disk on fire"));
    }

    #[test]
    fn client_errors_carry_no_log_detail() {
        let response = ApiError::NotFound("no target 'x'".to_owned()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.extensions().get::<ErrorDetail>().is_none());
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer"))
        );
    }
}
