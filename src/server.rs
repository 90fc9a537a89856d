//! The accept loop: HTTP/1.1 on hyper, one task per connection, and a
//! bounded drain on shutdown.
//!
//! `poem::Server` did this until session 7. Its per-request work on top of
//! this loop (its HTTP/1-or-2 sniffing connection from hyper-util's `auto`
//! builder, two cancellation tokens polled in a `select!` at every wake-up
//! of every connection, the endpoint behind a `dyn` with its future boxed
//! per request) was 1.3k instructions of a `/healthz` answer (31.5k ->
//! 30.2k; 1.3-1.7k in bare poem, `poem_on_hyper` in
//! `tests/bench/reference.rs`), by the instructions bench
//! (docs/performance.md).
//! Here hyper's own HTTP/1.1 connection drives the endpoint directly, its
//! future stored once per connection, and hyper-util's `GracefulShutdown`
//! does the drain. The loop follows axum's `serve`: a connection error on
//! accept (the peer gave up) is skipped, any other (out of file
//! descriptors, say) is logged and retried after a pause instead of
//! spinning.
//!
//! Only HTTP/1.1 is served: Toolforge's front proxy speaks it to the tool
//! (docs/toolforge.md: TLS ends there), so HTTP/2's prior-knowledge
//! upgrade, which `poem::Server` offered, had no client.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, Request, Response};
use tokio::net::TcpListener;

/// How long to wait before accepting again after an accept error that is
/// not the peer's (axum waits one second too).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished its request and closed.
    Completed,
    /// The drain time ran out with connections still open; they are dropped
    /// with the runtime.
    TimedOut,
}

/// Serves `ep` on `listener` until `shutdown` completes, then stops
/// accepting, lets every connection finish the request it is in (idle
/// keep-alive connections close at once) for up to `drain`, and returns.
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<Drained>
where
    E: Endpoint<Output = Response> + 'static,
{
    let ep = Arc::new(ep);
    let local = LocalAddr(poem::Addr::SocketAddr(listener.local_addr()?));
    let graceful = GracefulShutdown::new();
    // Keep-alive on, hyper's other defaults: no header read timeout (the
    // front proxy buffers request heads) and a 400 KiB read buffer; the
    // header block's own limit is the front layer's (`web::limits`).
    let builder = http1::Builder::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(connection) => connection,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "accepting a connection failed; retrying in a second");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // Small responses go out at once, not after Nagle's delay.
        let _ = stream.set_nodelay(true);
        let service = Service {
            ep: ep.clone(),
            local: local.clone(),
            remote: RemoteAddr(poem::Addr::SocketAddr(remote)),
        };
        let connection = graceful.watch(builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| service.call(req)),
        ));
        tokio::spawn(async move {
            // A client that goes away mid-request or sends garbage ends
            // its own connection; nothing for the operator.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    Ok(
        match tokio::time::timeout(drain, graceful.shutdown()).await {
            Ok(()) => Drained::Completed,
            Err(_) => Drained::TimedOut,
        },
    )
}

/// What poem's `Response` becomes for hyper.
type ResponseBody = http_body_util::combinators::BoxBody<bytes::Bytes, io::Error>;

/// One connection's view of the app: the endpoint and the addresses every
/// request on the connection is given.
struct Service<E> {
    ep: Arc<E>,
    local: LocalAddr,
    remote: RemoteAddr,
}

impl<E: Endpoint<Output = Response> + 'static> Service<E> {
    /// One request, converted to poem's and back with poem's own `From`
    /// impls, as `poem::Server` does.
    fn call(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Result<hyper::Response<ResponseBody>, Infallible>> + use<E> {
        let ep = self.ep.clone();
        let req = Request::from((req, self.local.clone(), self.remote.clone(), Scheme::HTTP));
        // `call` and not `get_response`: the latter is one more `async`
        // level, with one more copy of the `Request` in its state, around
        // a future that is copied into hyper's connection on every request
        // (docs/performance.md, "Hot-path choices").
        async move {
            let resp = ep
                .call(req)
                .await
                .unwrap_or_else(poem::Error::into_response);
            Ok(resp.into())
        }
    }
}

/// Errors that are the peer's doing, not the listener's: skip them.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use poem::EndpointExt as _;
    use poem::endpoint::make;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    use super::*;

    /// Serves an endpoint that answers `/slow` after `slow` and anything
    /// else at once, until the returned sender fires.
    async fn start(
        slow: Duration,
        drain: Duration,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<Drained>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ep = make(move |req: Request| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(slow).await;
            }
            "done"
        })
        .map_to_response();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            listener,
            ep,
            async move {
                let _ = stopped.await;
            },
            drain,
        ));
        (addr, stop, served)
    }

    async fn send(stream: &mut TcpStream, path: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
    }

    /// Reads until the body of a `done` answer has arrived.
    async fn read_answer(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"done") {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before the answer: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn an_in_flight_request_finishes_during_the_drain_and_its_connection_closes() {
        let (addr, stop, served) = start(Duration::from_millis(300), Duration::from_secs(30)).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        send(&mut client, "/slow").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let answer = read_answer(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        // The answer ends the connection: no keep-alive past a drain.
        assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
        assert_eq!(served.await.unwrap().unwrap(), Drained::Completed);
        // And nothing listens any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_do_not_hold_up_the_drain() {
        let drain = Duration::from_secs(30);
        let (addr, stop, served) = start(Duration::ZERO, drain).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        send(&mut idle, "/").await;
        let answer = read_answer(&mut idle).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        // The connection stays open, idle, as browsers and proxies keep them.
        let asked = Instant::now();
        stop.send(()).unwrap();
        assert_eq!(served.await.unwrap().unwrap(), Drained::Completed);
        assert!(asked.elapsed() < drain / 2, "{:?}", asked.elapsed());
        assert_eq!(idle.read(&mut [0u8; 16]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_request_longer_than_the_drain_is_cut_off_when_the_drain_time_runs_out() {
        let drain = Duration::from_millis(200);
        let (addr, stop, served) = start(Duration::from_secs(60), drain).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        send(&mut client, "/slow").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = Instant::now();
        stop.send(()).unwrap();
        assert_eq!(served.await.unwrap().unwrap(), Drained::TimedOut);
        let waited = asked.elapsed();
        assert!(
            waited >= drain && waited < Duration::from_secs(30),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_client_that_speaks_http2_is_closed_not_left_hanging() {
        let (addr, _stop, _served) = start(Duration::ZERO, Duration::from_secs(1)).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
            .await
            .expect("the connection is closed, not left hanging")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        // hyper recognises the HTTP/2 preface and closes the connection.
        assert!(answer.is_empty(), "{answer}");
    }

    #[test]
    fn only_the_peers_errors_are_skipped_silently() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
        ] {
            assert!(is_connection_error(&io::Error::from(kind)), "{kind:?}");
        }
        // Out of file descriptors (EMFILE) is the listener's problem: logged
        // and retried after a pause, not spun on.
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
