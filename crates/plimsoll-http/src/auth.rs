//! The bearer-token guards. Admin routes need `Authorization: Bearer TOKEN` with the configured
//! admin token: no token configured turns admin actions off (403); a missing or wrong one is
//! 401. Read routes are open unless a read token is configured; then they need it, or the
//! admin token (401 otherwise). Tokens are compared in constant time, so response timing does
//! not reveal how much of a guess was right.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::ApiError;

/// The bearer token of the admin routes; `None` turns them off.
#[derive(Debug, Clone)]
pub struct AdminToken(pub Option<String>);

impl AdminToken {
    /// The token of `PLIMSOLL_ADMIN_TOKEN` (surrounding blanks trimmed), if set and not blank.
    pub fn from_env() -> AdminToken {
        let token = std::env::var("PLIMSOLL_ADMIN_TOKEN").ok();
        AdminToken(token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()))
    }
}

/// Middleware on the admin routes: `from_fn_with_state(AdminToken(..), require_admin)`.
pub async fn require_admin(
    State(AdminToken(token)): State<AdminToken>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = token.as_deref() else {
        return Err(ApiError::AdminDisabled);
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

/// The tokens that open the read routes: with no `read` token they are open to all.
#[derive(Debug, Clone)]
pub struct ReadTokens {
    /// The read token; `None` leaves reads open.
    pub read: Option<String>,
    /// The admin token, which opens reads too.
    pub admin: Option<String>,
}

/// Middleware on the read routes: `from_fn_with_state(ReadTokens { .. }, require_read)`.
pub async fn require_read(
    State(tokens): State<ReadTokens>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(read) = tokens.read.as_deref() else {
        return Ok(next.run(request).await);
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
        .unwrap_or_default();
    // Both compared, whatever the first gave: the time does not tell which one matched.
    let is_read = constant_time_eq(given.as_bytes(), read.as_bytes());
    let is_admin = tokens
        .admin
        .as_deref()
        .is_some_and(|admin| constant_time_eq(given.as_bytes(), admin.as_bytes()));
    if !given.is_empty() && (is_read | is_admin) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::ReadUnauthorized)
    }
}

/// Whether `headers` carry `Authorization: Bearer TOKEN` with exactly `token` (compared in
/// constant time): the check of a route guarded by a token of its own, such as ingest.
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
        .unwrap_or_default();
    !given.is_empty() & constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether `a` equals `b`, in a time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        // Compare against something of `b` even past its end, so the loop's work depends only
        // on the length of the guess.
        let y = b.get(i).copied().unwrap_or(!x);
        difference |= x ^ y;
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_values_are_parsed_leniently_but_not_loosely() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
