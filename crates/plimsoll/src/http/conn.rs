//! The accept loop and the connections of the HTTP server, written out rather than left to
//! `axum::serve` because a supervisor must survive its clients: at most `max_connections` are
//! open at once (one more is closed at once), a client must send its request head within
//! `header_timeout` (which also ends a keep-alive connection idle that long), a connection
//! that moves no byte for `idle_timeout` while no request is being handled is closed, and
//! running out of file descriptors makes the loop log once per burst and back off, not stop.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::fds::{self, Burst};

/// How long the loop waits before accepting again when no descriptor is left.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this long about refused connections or missing descriptors.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one server allows its clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub(crate) max_connections: usize,
    /// Time to send a request head, counted from when the server waits for one.
    pub(crate) header_timeout: Duration,
    /// Time without a byte either way while no request is handled (a stalled body, a client
    /// that does not read its response).
    pub(crate) idle_timeout: Duration,
}

impl Limits {
    /// The limits of a server in a process allowed `fd_limit` open files.
    pub(crate) fn for_fd_limit(fd_limit: u64) -> Limits {
        Limits {
            max_connections: fds::http_connections(fd_limit),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets the
/// open connections finish their requests (the caller bounds how long).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = pin!(shutdown);
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refused = Burst::new(WARN_EVERY);
    let mut exhausted = Burst::new(WARN_EVERY);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) if connections.len() >= limits.max_connections => {
                    drop(stream);
                    if let Some(closed) = refused.hit(Instant::now()) {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            closed,
                            "too many HTTP connections: closing new ones at once"
                        );
                    }
                }
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, router.clone(), limits, closing_seen.clone()));
                }
                Err(error) if fds::exhausted(&error) => {
                    if let Some(times) = exhausted.hit(Instant::now()) {
                        tracing::warn!(
                            %error,
                            times,
                            open_connections = connections.len(),
                            "cannot accept HTTP connections: out of file descriptors; retrying"
                        );
                    }
                    tokio::time::sleep(EXHAUSTED_BACKOFF).await;
                }
                // A connection that failed before it was accepted (reset, aborted): its own
                // problem, not the listener's.
                Err(error) => tracing::debug!(%error, "an HTTP connection failed while accepted"),
            },
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it ends, times out, or the server closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let handling = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = Handling::begin(&handling);
        let request = request.map(|body| Received::new(body, &handling));
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(busy);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut served = pin!(builder.serve_connection(io, service));
    let mut shutting_down = false;
    loop {
        let check_at = tokio::time::Instant::from_std(activity.last() + limits.idle_timeout);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended");
                }
                return;
            }
            changed = closing.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    served.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(check_at) => {
                if !activity.busy() && activity.last().elapsed() >= limits.idle_timeout {
                    tracing::debug!("closing an idle HTTP connection");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests being handled.
    handling: AtomicUsize,
    /// Request bodies still arriving.
    receiving: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            receiving: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Whether a handler is at work on a whole request (so no byte moving is expected).
    fn busy(&self) -> bool {
        self.handling.load(Ordering::Relaxed) > 0 && self.receiving.load(Ordering::Relaxed) == 0
    }
}

/// A request being handled: while one is, the connection is not idle (the handler may wait
/// on a target's loop), unless its body is still arriving.
struct Handling(Arc<Activity>);

impl Handling {
    fn begin(activity: &Arc<Activity>) -> Handling {
        activity.handling.fetch_add(1, Ordering::Relaxed);
        Handling(activity.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body, counted in its connection's `Activity` as arriving until its end has
/// been read (or it is dropped): a body that stalls leaves the connection idle.
struct Received {
    inner: Incoming,
    activity: Arc<Activity>,
    arriving: bool,
}

impl Received {
    fn new(inner: Incoming, activity: &Arc<Activity>) -> Received {
        let arriving = !inner.is_end_stream();
        if arriving {
            activity.receiving.fetch_add(1, Ordering::Relaxed);
        }
        Received {
            inner,
            activity: activity.clone(),
            arriving,
        }
    }

    fn arrived(&mut self) {
        if std::mem::take(&mut self.arriving) {
            self.activity.receiving.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.arrived();
    }
}

impl hyper::body::Body for Received {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.arrived();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that notes in its `Activity` every read or write that moved bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::{get, put};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "slow"
                }),
            )
            .route("/echo", put(|body: String| async move { body }))
    }

    fn limits(max_connections: usize, header_ms: u64, idle_ms: u64) -> Limits {
        Limits {
            max_connections,
            header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    /// A server on a free loopback port; it stops when the sender is dropped.
    async fn start(limits: Limits) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, app(), limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Everything the server sends until it closes (at most 5 s), and how long that took.
    async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw));
        match read.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("the server did not close the connection: {other:?}"),
        }
        (
            String::from_utf8_lossy(&raw).into_owned(),
            started.elapsed(),
        )
    }

    async fn get_closing(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        until_closed(&mut stream).await.0
    }

    #[tokio::test]
    async fn past_the_cap_a_connection_is_closed_at_once_and_a_freed_slot_is_reused() {
        let (addr, _stop) = start(limits(2, 5_000, 5_000)).await;
        let first = TcpStream::connect(addr).await.expect("connect");
        let _second = TcpStream::connect(addr).await.expect("connect");
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let (sent, took) = until_closed(&mut third).await;
        assert_eq!(sent, "");
        assert!(took < Duration::from_secs(2), "closed only after {took:?}");
        drop(first);
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let answer = get_closing(addr, "/hello").await;
                if !answer.is_empty() {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a freed slot is used again");
        assert!(answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_sends_no_whole_head_is_closed_after_the_header_timeout() {
        let (addr, _stop) = start(limits(8, 300, 10_000)).await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut partial = TcpStream::connect(addr).await.expect("connect");
        partial
            .write_all(b"GET /hello HTTP/1.1\r\nHost")
            .await
            .expect("send");
        let connected = Instant::now();
        for stream in [&mut silent, &mut partial] {
            until_closed(stream).await;
            let took = connected.elapsed();
            assert!(
                took >= Duration::from_millis(200) && took < Duration::from_secs(3),
                "closed after {took:?}"
            );
        }
        // A keep-alive connection idle between requests ends the same way.
        let mut kept = TcpStream::connect(addr).await.expect("connect");
        kept.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let (answer, _) = until_closed(&mut kept).await;
        assert!(answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn a_stalled_body_is_idle_but_a_slow_handler_is_not() {
        let (addr, _stop) = start(limits(8, 5_000, 300)).await;
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        stalled
            .write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .await
            .expect("send");
        let (answer, took) = until_closed(&mut stalled).await;
        assert_eq!(answer, "");
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
        let answer = get_closing(addr, "/slow").await;
        assert!(answer.ends_with("slow"), "{answer}");
    }

    #[tokio::test]
    async fn the_accept_loop_survives_running_out_of_descriptors() {
        let (addr, _stop) = start(limits(64, 5_000, 5_000)).await;
        // Connected without yielding: they wait in the backlog until the server runs.
        let clients: Vec<std::net::TcpStream> = (0..4)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let open = fds::open_now().expect("open descriptors");
        // Room for one accepted connection and nothing more.
        setrlimit(Resource::RLIMIT_NOFILE, open + 1, hard).expect("lower the limit");
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restore the limit");
        for client in clients {
            client.set_nonblocking(true).expect("nonblocking");
            let mut stream = TcpStream::from_std(client).expect("tokio stream");
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("send");
            let (answer, _) = until_closed(&mut stream).await;
            assert!(answer.ends_with("hello"), "{answer}");
        }
    }
}
