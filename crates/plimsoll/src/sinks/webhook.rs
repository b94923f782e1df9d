//! The webhook (`--webhook URL`): each event POSTed as JSON, retried with exponential backoff on
//! network errors and 5xx/408/429 answers, from the sink's own thread so a dead or slow webhook
//! never slows supervision.

use std::iter;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use ureq::http::{StatusCode, Uri};

use super::{Deliver, Rendered, Shutdown};

/// How hard to try one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RetryPolicy {
    /// Longest time one POST may take, from connecting to the end of the answer.
    pub(super) request_timeout: Duration,
    /// Pauses before each retry: one retry per entry.
    pub(super) backoff: Vec<Duration>,
}

impl RetryPolicy {
    /// Four attempts, 0.5 s, 1 s and 2 s apart, 5 s each at most: about 24 s for an event at
    /// worst.
    pub(super) fn standard() -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_secs(5),
            backoff: vec![
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
            ],
        }
    }
}

/// The configured webhook.
#[derive(Debug)]
pub(super) struct Webhook {
    url: String,
    /// The URL for messages: scheme, host and port only, since webhook paths and queries often
    /// hold a secret token.
    shown: String,
    agent: ureq::Agent,
    policy: RetryPolicy,
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth another try: the network, a timeout, a 5xx, 408 or 429.
    Transient(String),
    /// Will not get better by retrying: another 4xx, or a redirect.
    Permanent(String),
}

impl Webhook {
    /// Checks the URL (http or https, with a host) and sets up the client.
    pub(super) fn new(url: &str) -> anyhow::Result<Webhook> {
        Webhook::with_policy(url, RetryPolicy::standard())
    }

    pub(super) fn with_policy(url: &str, policy: RetryPolicy) -> anyhow::Result<Webhook> {
        let shown = check_url(url)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(policy.request_timeout))
            .user_agent(concat!("plimsoll/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Webhook {
            url: url.to_owned(),
            shown,
            agent,
            policy,
        })
    }

    fn post(&self, json: &str, timeout: Duration) -> Result<(), Failure> {
        let response = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .send(json)
            .map_err(|error| Failure::Transient(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Transient(format!("answered {status}")))
        } else {
            Err(Failure::Permanent(format!("answered {status}")))
        }
    }
}

impl Deliver for Webhook {
    fn deliver(&mut self, event: &Rendered, shutdown: &Shutdown) -> Result<(), String> {
        let pauses = iter::once(None).chain(self.policy.backoff.iter().map(Some));
        let mut last = String::new();
        let mut attempts = 0;
        for pause in pauses {
            if let Some(&pause) = pause {
                if !shutdown.sleep_until(Instant::now() + pause) {
                    break;
                }
            }
            let now = Instant::now();
            let timeout = shutdown
                .cap(now + self.policy.request_timeout)
                .saturating_duration_since(now);
            if timeout.is_zero() {
                break;
            }
            attempts += 1;
            match self.post(&event.json, timeout) {
                Ok(()) => return Ok(()),
                Err(Failure::Transient(message)) => last = message,
                Err(Failure::Permanent(message)) => {
                    last = message;
                    break;
                }
            }
        }
        let plural = if attempts == 1 { "" } else { "s" };
        let cut = if shutdown.is_past() {
            ", cut short by shutdown"
        } else {
            ""
        };
        Err(format!(
            "webhook {}: {last} (after {attempts} attempt{plural}{cut})",
            self.shown
        ))
    }
}

/// Checks a webhook URL; returns it as shown in messages (scheme, host, port).
fn check_url(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .map_err(|error| anyhow!("invalid webhook URL '{url}': {error}"))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        bail!("invalid webhook URL '{url}': expected http://HOST/… or https://HOST/…");
    }
    let Some(host) = uri.host().filter(|host| !host.is_empty()) else {
        bail!("invalid webhook URL '{url}': it names no host");
    };
    let host = host.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;
    use crate::event::Event;
    use crate::sinks::tests::{event, eventually, TestServer};
    use crate::sinks::{SinkConfig, Sinks, Worker, WEBHOOK_QUEUE};

    fn quick(retries: usize) -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_secs(5),
            backoff: vec![Duration::from_millis(10); retries],
        }
    }

    fn worker(url: &str, policy: RetryPolicy) -> Worker {
        let webhook = Webhook::with_policy(url, policy).expect("webhook");
        Worker::spawn("webhook", 16, webhook).expect("worker")
    }

    fn send(worker: &Worker, event: &Event) {
        worker.offer(Arc::new(Rendered::new(event)));
    }

    /// A loopback port with nobody listening.
    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[test]
    fn webhook_retries_a_500_then_delivers_the_json() {
        let server = TestServer::start(&[500, 200]);
        let worker = worker(&server.url(), quick(3));
        let sent = event(5);
        send(&worker, &sent);
        eventually("delivery", || worker.stats().delivered == 1);
        assert_eq!(worker.stats().failed, 0);

        let requests = server.requests.lock().expect("lock").clone();
        assert_eq!(requests.len(), 2, "the 500 is retried once");
        for (head, body) in &requests {
            assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\ncontent-type: application/json\r\n"),
                "{head}"
            );
            let posted: serde_json::Value = serde_json::from_str(body).expect("json body");
            assert_eq!(posted, sent.to_json());
        }
        server.join();
    }

    #[test]
    fn a_client_error_is_not_retried() {
        let server = TestServer::start(&[404]);
        let worker = worker(&server.url(), quick(3));
        send(&worker, &event(1));
        eventually("the failure", || worker.stats().failed == 1);
        let error = worker.stats().last_error.unwrap_or_default();
        assert!(error.contains("404"), "{error}");
        assert!(error.contains("(after 1 attempt)"), "{error}");
        server.join();
    }

    #[test]
    fn a_dead_webhook_fails_after_its_retries_without_showing_the_secret() {
        let url = format!("http://127.0.0.1:{}/secret-token", closed_port());
        let worker = worker(&url, quick(2));
        send(&worker, &event(1));
        eventually("the failure", || worker.stats().failed == 1);
        let stats = worker.stats();
        assert_eq!((stats.delivered, stats.dropped), (0, 0));
        let error = stats.last_error.unwrap_or_default();
        assert!(error.contains("(after 3 attempts)"), "{error}");
        assert!(error.starts_with("webhook http://127.0.0.1:"), "{error}");
        assert!(!error.contains("secret-token"), "{error}");
    }

    #[test]
    fn a_silent_webhook_times_out() {
        // Connections complete in the backlog, but nobody ever answers.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let policy = RetryPolicy {
            request_timeout: Duration::from_millis(200),
            backoff: Vec::new(),
        };
        let worker = worker(&url, policy);
        send(&worker, &event(1));
        eventually("the timeout", || worker.stats().failed == 1);
        let error = worker.stats().last_error.unwrap_or_default();
        assert!(error.contains("timeout"), "{error}");
        drop(listener);
    }

    #[test]
    fn a_burst_against_a_dead_webhook_is_dropped_not_blocked() {
        let sinks = Sinks::new(&SinkConfig {
            events: None,
            on_event: None,
            webhook: Some(format!("http://127.0.0.1:{}/hook", closed_port())),
            hook_timeout: Duration::from_secs(10),
        })
        .expect("sinks");
        // The first event sits in its backoff (3.5 s in all) while the rest arrive.
        for n in 0..10_000 {
            sinks.emit(&event(n));
        }
        let dropped = sinks.stats()[0].dropped;
        assert!(
            dropped >= 10_000 - WEBHOOK_QUEUE as u64 - 1,
            "dropped {dropped}"
        );

        let stats = sinks.close(Instant::now() + Duration::from_millis(100));
        assert_eq!(stats[0].delivered, 0);
        assert!(stats[0].failed >= 1, "{stats:?}");
        assert_eq!(stats[0].failed + stats[0].dropped, 10_000, "{stats:?}");
        let error = stats[0].last_error.as_deref().unwrap_or_default();
        assert!(error.contains("cut short by shutdown"), "{error}");
    }

    #[test]
    fn a_bad_url_is_an_error_naming_it() {
        for url in [
            "ftp://example.com/hook",
            "not a url",
            "",
            "http://",
            "localhost:8080/hook",
            "/just/a/path",
        ] {
            let error = Webhook::new(url).expect_err(url);
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid webhook URL '{url}'")),
                "{error}"
            );
        }
    }

    #[test]
    fn good_urls_are_shown_without_path_or_credentials() {
        for (url, shown) in [
            ("http://127.0.0.1:9464/x", "http://127.0.0.1:9464"),
            (
                "https://hooks.example.com/services/T0/B0/XYZ?token=1",
                "https://hooks.example.com",
            ),
            ("HTTPS://user:pw@Example.com/x", "https://example.com"),
        ] {
            assert_eq!(check_url(url).expect(url), shown);
        }
    }
}
