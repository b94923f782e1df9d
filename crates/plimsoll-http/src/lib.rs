//! The HTTP wire formats of plimsoll, shared by the `plimsoll` binary and `plimsoll-guard`, so
//! that a supervised process and a guarded Rust service answer `/health`, `/metrics` and the
//! admin routes in the same shapes (and `plimsoll watch`, the alert rules and the Grafana
//! dashboard work for both).
//!
//! - [`TargetStatus`]: what is known of one target right now; [`target_json`] and
//!   [`health`] turn it into the JSON of `/health` and `/api/v1/targets`.
//! - [`metrics`]: the Prometheus text of `/metrics`.
//! - [`require_admin`]: the bearer-token guard of the admin routes; [`ApiError`]: the one error
//!   type, every failure a response.
//! - [`thresholds`]: the body of `PUT …/thresholds`, checked.
//! - [`contract`]: checks of the shapes, used by the tests of both servers.

mod auth;
pub mod contract;
mod error;
pub mod metrics;
mod status;
pub mod thresholds;

pub use auth::{bearer_matches, require_admin, require_read, AdminToken, ReadTokens};
pub use error::{log_server_errors, ApiError, ErrorDetail};
pub use status::{action_reply, health, target_json, verdict_json, CgroupStatus, TargetStatus};

/// The admin actions that are a `POST /api/v1/targets/{name}/ACTION`, by their route name.
pub const ACTIONS: [&str; 5] = ["restart", "snapshot", "gc", "clear-cache", "leak-check"];

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
