//! The reference servers every figure is compared with, shared by the load
//! and instructions benches: a minimal hyper server and bare poem, both
//! answering bytes captured from hello-oauth (`<name>.body` and
//! `<name>.head` in a directory: `healthz` for `/healthz`, `home` for
//! everything else).
//!
//! The same bytes means the whole answer: the body and every header the
//! service sends (its security headers, `cache-control`, the request id),
//! but `date` and `content-length`, which hyper writes itself for both. Until
//! session 13 the references sent the body with `content-type` alone, three
//! header lines against the service's eleven (a 123-byte head against 574),
//! so the ratios charged the service with hyper's encoding of eight headers
//! the references never sent; `--body-only` still serves that answer, for
//! comparison (docs/performance.md, "The yardstick's bytes").

use std::path::Path;

/// Runs the reference server the arguments ask for, if they ask for one:
/// `--serve-baseline` (hyper), `--serve-poem-on-hyper` (bare poem on the
/// service's accept loop, the load bench's "poem floor") or
/// `--serve-poem-floor` (bare poem on `poem::Server`), each followed by the
/// address and the directory of captured answers, and `--body-only`
/// anywhere. Never returns when it serves; `false` when none was asked for.
/// Both benches run their own binary this way as the reference process.
pub fn serve_if_asked(args: &[String]) -> bool {
    let body_only = args.iter().any(|a| a == "--body-only");
    type Serve = fn(&str, &Path, bool);
    let servers: [(&str, Serve); 3] = [
        ("--serve-baseline", baseline::serve),
        ("--serve-poem-on-hyper", poem_on_hyper::serve),
        ("--serve-poem-floor", poem_floor::serve),
    ];
    for (flag, serve) in servers {
        if let Some(pos) = args.iter().position(|a| a == flag) {
            serve(&args[pos + 1], Path::new(&args[pos + 2]), body_only);
            return true;
        }
    }
    false
}

/// Bare poem: the same bytes as the baseline from a `Route` with one
/// endpoint per page, served by `poem::Server`, with no middleware. Not a
/// budget: it shows how much of the gap to the hyper baseline is the
/// framework's own, before any of hello-oauth's work. The instructions bench
/// measures it beside [`poem_on_hyper`]; the load bench runs only the latter.
pub mod poem_floor {
    use std::path::Path;

    use poem::endpoint::make_sync;
    use poem::listener::TcpListener;
    use poem::{Body, Response, Route, Server, get};

    use super::baseline::{Page, page};

    pub fn answer(page: Page) -> impl poem::Endpoint<Output = Response> {
        get(make_sync(move |_| {
            let mut response = Response::builder().body(Body::from_bytes(page.body.clone()));
            *response.headers_mut() = page.headers.clone();
            response
        }))
    }

    pub fn serve(addr: &str, dir: &Path, body_only: bool) {
        let app = Route::new()
            .at("/healthz", answer(page(dir, "healthz", body_only)))
            .at("/", answer(page(dir, "home", body_only)));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(Server::new(TcpListener::bind(addr)).run(app))
            .unwrap();
    }
}

/// Bare poem's `Route` and endpoints, served by the service's own accept
/// loop (`hello_oauth::server`, hyper's HTTP/1.1 connection) instead of
/// `poem::Server`: measured by the instructions bench only. Against bare
/// poem it prices `poem::Server`'s per-request work (its HTTP/1-or-2
/// sniffing connection, the cancellation tokens it polls at every wake-up,
/// the boxed endpoint), which the service stopped paying in session 7; it
/// is the floor the service's own middleware and handlers are measured
/// from (docs/performance.md), and what the load bench calls bare poem: the
/// same accept loop and socket options as the service, so the difference is
/// the service's own work.
pub mod poem_on_hyper {
    use std::path::Path;
    use std::time::Duration;

    use poem::Route;

    use super::baseline::page;
    use super::poem_floor::answer;

    pub fn serve(addr: &str, dir: &Path, body_only: bool) {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let app = Route::new()
            .at("/healthz", answer(page(dir, "healthz", body_only)))
            .at("/", answer(page(dir, "home", body_only)));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            hello_oauth::server::serve(
                listener,
                app,
                std::future::pending::<()>(),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        });
    }
}

/// The minimal hyper server the figures are compared with: it answers the
/// bytes captured from hello-oauth, with nothing else in the way.
pub mod baseline {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::path::Path;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    /// One page's captured body (`<name>.body`) and headers (`<name>.head`,
    /// one `name: value` a line); the bare-poem reference serves the same.
    /// A prepared map, cloned into every answer: the cheapest way hyper has
    /// to send a set of headers it did not compute.
    pub struct Page {
        pub body: Bytes,
        pub headers: HeaderMap,
    }

    /// The headers of an answer as the load bench writes them: those that
    /// hyper writes itself (`date`, `content-length`) and those about the
    /// capturing connection (`connection`) left out. With `body_only`,
    /// `content-type` alone (the references' answer until session 13).
    pub fn parse_head(head: &str, body_only: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in head.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = HeaderName::from_bytes(name.trim().as_bytes()).unwrap();
            if ["date", "content-length", "connection", "transfer-encoding"]
                .contains(&name.as_str())
                || (body_only && name != CONTENT_TYPE)
            {
                continue;
            }
            headers.append(name, HeaderValue::from_str(value.trim()).unwrap());
        }
        headers
    }

    /// Writes one answer of the service where [`page`] reads it:
    /// `<name>.body`, and `<name>.head` from its header lines (the status
    /// line left out; `\r\n` or `\n` between them).
    pub fn capture(dir: &Path, name: &str, header_lines: &str, body: &[u8]) {
        std::fs::write(dir.join(format!("{name}.body")), body).unwrap();
        let head: String = header_lines
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.join(format!("{name}.head")), head).unwrap();
    }

    pub fn page(dir: &Path, name: &str, body_only: bool) -> Page {
        let head = std::fs::read_to_string(dir.join(format!("{name}.head"))).unwrap();
        Page {
            body: Bytes::from(std::fs::read(dir.join(format!("{name}.body"))).unwrap()),
            headers: parse_head(&head, body_only),
        }
    }

    pub fn serve(addr: &str, dir: &Path, body_only: bool) {
        let addr: SocketAddr = addr.parse().unwrap();
        let pages: &'static [Page; 2] = Box::leak(Box::new([
            page(dir, "healthz", body_only),
            page(dir, "home", body_only),
        ]));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // As the service's accept loop does: the same socket options
                // mean the same kernel path. Without it this server cost
                // 8.15 us per `/healthz` under wrk against 7.7 with it
                // (session 9): Nagle's bookkeeping made the yardstick slower.
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                        let page = if req.uri().path() == "/healthz" {
                            &pages[0]
                        } else {
                            &pages[1]
                        };
                        let mut response = Response::new(Full::new(page.body.clone()));
                        *response.headers_mut() = page.headers.clone();
                        Ok::<_, Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
}
