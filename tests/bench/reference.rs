//! The reference servers every figure is compared with, shared by the load
//! and instructions benches: a minimal hyper server and bare poem, both
//! answering bytes captured from hello-oauth (`<name>.body` and
//! `<name>.type` in a directory: `healthz` for `/healthz`, `home` for
//! everything else).

/// Bare poem: the same bytes as the baseline from a `Route` with one
/// endpoint per page, served by `poem::Server`, with no middleware. Not a
/// budget: it shows how much of the gap to the hyper baseline is the
/// framework's own, before any of hello-oauth's work. The instructions bench
/// measures it beside [`poem_on_hyper`]; the load bench runs only the latter.
#[allow(dead_code)] // the load bench uses `answer` only
pub mod poem_floor {
    use std::path::Path;

    use poem::endpoint::make_sync;
    use poem::listener::TcpListener;
    use poem::{Body, Response, Route, Server, get};

    use super::baseline::{Page, page};

    pub fn answer(page: Page) -> impl poem::Endpoint<Output = Response> {
        get(make_sync(move |_| {
            Response::builder()
                .content_type(page.content_type.as_str())
                .body(Body::from_bytes(page.body.clone()))
        }))
    }

    pub fn serve(addr: &str, dir: &Path) {
        let app = Route::new()
            .at("/healthz", answer(page(dir, "healthz")))
            .at("/", answer(page(dir, "home")));
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

    pub fn serve(addr: &str, dir: &Path) {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let app = Route::new()
            .at("/healthz", answer(page(dir, "healthz")))
            .at("/", answer(page(dir, "home")));
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
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    /// One page's captured bytes (`<name>.body`) and content type
    /// (`<name>.type`); the bare-poem reference serves the same.
    pub struct Page {
        pub body: Bytes,
        pub content_type: String,
    }

    pub fn page(dir: &Path, name: &str) -> Page {
        Page {
            body: Bytes::from(std::fs::read(dir.join(format!("{name}.body"))).unwrap()),
            content_type: std::fs::read_to_string(dir.join(format!("{name}.type"))).unwrap(),
        }
    }

    pub fn serve(addr: &str, dir: &Path) {
        let addr: SocketAddr = addr.parse().unwrap();
        let pages: &'static [Page; 2] =
            Box::leak(Box::new([page(dir, "healthz"), page(dir, "home")]));
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
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", page.content_type.as_str())
                                .body(Full::new(page.body.clone()))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
}
