//! The front layer, the one middleware every request passes through: request
//! ids, the limits ([`super::limits`]), the application state as request
//! data, the mapping of every error (and every bare error status) to a
//! proper page or JSON body, the security headers ([`super::security`]),
//! the HTTP metrics and the access log. The route label of logs and metrics
//! is the route template, or `unmatched` when no route matched: never the
//! raw path.
//!
//! It also attaches the session (read from its cookie only when a handler
//! asks, written back with the response) and turns a handler's panic into
//! the panic page.
//!
//! These were seven layers (SecurityHeaders, RequestLog, Limits, AddData,
//! CatchPanic, the session and its cookie jar); each layer is one more
//! future nested in the request's future, holding its own copy of the
//! `Request` (488 bytes), built on the stack and moved into its parent.
//! Folded into one, every request costs less CPU (docs/performance.md has
//! the figures).

use std::future::{Future, ready};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt as _;
use futures_util::future::{CatchUnwind, Either};
use poem::PathPattern;
use poem::error::NotFoundError;
use poem::http::{HeaderName, HeaderValue, Method, header};
use poem::middleware::PanicHandler as _;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use super::AppState;
use super::errors;
use super::limits::{Admission, Limits};
use super::security;
use super::session::{SessionBinding, SessionMiddleware};
use crate::telemetry::metrics::{self, UNMATCHED_ROUTE};
use tokio::sync::OwnedSemaphorePermit;

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The same, parsed once: a `&str` name is parsed on every lookup.
const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const MAX_REQUEST_ID_LEN: usize = 64;

/// The id of the current request (incoming `X-Request-Id` if it is short and
/// printable, otherwise freshly generated), available as request data.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    fn from_request(req: &Request) -> RequestId {
        let incoming = req
            .headers()
            .get(REQUEST_ID_NAME)
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= MAX_REQUEST_ID_LEN
                    && id.bytes().all(|b| b.is_ascii_graphic())
            });
        match incoming {
            Some(id) => RequestId(id.into()),
            None => RequestId(new_request_id()),
        }
    }
}

/// 16 random hex digits: unique enough to find one request in the logs.
fn new_request_id() -> Arc<str> {
    use rand::Rng as _;
    let digits = hex16(rand::thread_rng().r#gen::<u64>());
    // Hex digits are ASCII, so this never falls back.
    std::str::from_utf8(&digits).map_or_else(|_| Arc::from("0"), Arc::from)
}

/// `format!("{n:016x}")` without `fmt` and its `String` (a third of the
/// request id's cost, on every request).
fn hex16(n: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
}

/// Attached to a 405 error: the methods the path does accept, sent as the
/// `Allow` header of the error response.
#[derive(Debug, Clone)]
pub struct AllowHeader(pub HeaderValue);

/// Middleware factory; see the module docs.
#[derive(Debug, Clone)]
pub struct Front {
    state: Arc<AppState>,
    limits: Arc<Limits>,
    sessions: SessionMiddleware,
}

impl Front {
    /// Creates the middleware.
    pub fn new(state: Arc<AppState>, limits: Limits, sessions: SessionMiddleware) -> Self {
        Self {
            state,
            limits: Arc::new(limits),
            sessions,
        }
    }
}

impl<E: Endpoint> Middleware<E> for Front {
    type Output = FrontEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        FrontEndpoint {
            inner: ep,
            state: self.state.clone(),
            limits: self.limits.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

/// Endpoint produced by [`Front`].
#[derive(Debug)]
pub struct FrontEndpoint<E> {
    inner: E,
    state: Arc<AppState>,
    limits: Arc<Limits>,
    sessions: SessionMiddleware,
}

/// Size of a response body when it is known up front (full bodies).
fn body_size(resp: &mut Response) -> Option<u64> {
    let body: http_body_util::combinators::BoxBody<_, _> = resp.take_body().into();
    let size = http_body::Body::size_hint(&body).exact();
    resp.set_body(poem::Body::from(body));
    size
}

impl<E: Endpoint> Endpoint for FrontEndpoint<E> {
    type Output = Response;

    // Not an `async fn`: everything before the handler is done here, at
    // once, and the future returned holds the handler's future and a few
    // words (`FrontFuture`). An `async fn` keeps its `Request` argument in
    // its state for its whole life (the compiler does not overlap captured
    // values with what they are moved into), so each `async` level between
    // hyper and the handler was another 488 bytes, and hyper copies the
    // whole future into its connection's slot on every request
    // (docs/performance.md, "Hot-path choices").
    fn call(&self, mut req: Request) -> impl Future<Output = Result<Response>> + Send {
        let start = Instant::now();
        let id = RequestId::from_request(&req);
        let method = req.method().clone();
        let active = self
            .state
            .metrics
            .request_started(metrics::method_label(&method));
        let started = Started {
            start,
            _active: active,
            html: errors::wants_html(&req),
            https: super::session::is_https(&req),
            id: id.clone(),
            method,
        };
        req.set_data(id);
        req.set_data(self.state.clone());
        match self.limits.admit(&mut req) {
            // Refused: answered now, without a handler.
            Admission::Refused(answer) => Either::Left(ready(Ok(self.finish(started, answer)))),
            Admission::Admitted(permit) => {
                let session = self.sessions.attach(&mut req, started.https);
                // A handler that panics gets the panic page (and no session
                // write); one past the deadline, a 503.
                let handler = AssertUnwindSafe(self.inner.call(req)).catch_unwind();
                Either::Right(FrontFuture {
                    front: self,
                    request: Some((started, Serving { permit, session })),
                    handler: Some(handler),
                    deadline: None,
                })
            }
        }
    }
}

/// What the front layer knows of a request before its handler runs, kept
/// for the answer and the access-log line.
struct Started<'a> {
    start: Instant,
    id: RequestId,
    method: Method,
    html: bool,
    https: bool,
    /// The in-flight gauge's count, until the log line is written.
    _active: metrics::ActiveRequest<'a>,
}

/// What an admitted request holds while its handler runs.
struct Serving {
    /// The concurrency slot (none for `/healthz`).
    permit: Option<OwnedSemaphorePermit>,
    session: SessionBinding,
}

pin_project_lite::pin_project! {
    /// The front layer's future: the handler's own, polled in place, and a
    /// timer only once the handler has not answered at its first poll
    /// (`timeout` reads the clock and builds a timer entry, about 1k
    /// instructions, although the hot routes answer at their first poll).
    /// `request` and `handler` are `None` once it has answered.
    struct FrontFuture<'a, E, F> {
        front: &'a FrontEndpoint<E>,
        request: Option<(Started<'a>, Serving)>,
        #[pin]
        handler: Option<CatchUnwind<AssertUnwindSafe<F>>>,
        #[pin]
        deadline: Option<tokio::time::Sleep>,
    }
}

impl<E: Endpoint, F: Future<Output = Result<E::Output>>> Future for FrontFuture<'_, E, F> {
    type Output = Result<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (Some(handler), Some((started, _))) =
            (this.handler.as_mut().as_pin_mut(), this.request.as_ref())
        else {
            return polled_after_answer();
        };
        // `None`: the deadline passed first.
        let outcome = match handler.poll(cx) {
            Poll::Ready(outcome) => Some(outcome),
            Poll::Pending => {
                if this.deadline.is_none() {
                    let at = tokio::time::Instant::from_std(started.start)
                        + this.front.limits.deadline();
                    this.deadline.set(Some(tokio::time::sleep_until(at)));
                }
                match this.deadline.as_pin_mut().map(|sleep| sleep.poll(cx)) {
                    Some(Poll::Ready(())) => None,
                    _ => return Poll::Pending,
                }
            }
        };
        // The handler is done (or given up): drop it before answering, as
        // the `async` version dropped it at the end of its `match`.
        this.handler.set(None);
        let Some((started, Serving { permit, session })) = this.request.take() else {
            return polled_after_answer();
        };
        // The concurrency slot is the handler's, not the log line's.
        drop(permit);
        let front = *this.front;
        let result = match outcome {
            Some(Ok(Ok(resp))) => {
                let mut resp = resp.into_response();
                front.sessions.write_back(session, &mut resp);
                Ok(resp)
            }
            Some(Ok(Err(err))) => Err(err),
            Some(Err(panic)) => Ok(errors::PanicPage.get_response(panic).into_response()),
            None => Err(front.limits.timed_out()),
        };
        Poll::Ready(Ok(front.finish(started, result)))
    }
}

/// A `FrontFuture` polled again after it answered: a caller's bug, answered
/// with a 500 rather than a panic.
fn polled_after_answer() -> Poll<Result<Response>> {
    Poll::Ready(Err(poem::Error::from_status(
        poem::http::StatusCode::INTERNAL_SERVER_ERROR,
    )))
}

impl<E: Endpoint> FrontEndpoint<E> {
    /// The answer to a request, from its handler's or the limits' `result`:
    /// the error pages, the security headers, the request id, the metrics
    /// and the access-log line.
    fn finish(&self, started: Started<'_>, result: Result<Response>) -> Response {
        // `_active` is held to the end: the in-flight gauge counts the
        // request until its log line is written.
        let Started {
            start,
            id,
            method,
            html,
            https,
            _active,
        } = started;
        let method_label = metrics::method_label(&method);
        let (mut resp, route, failure) = match result {
            Ok(resp) => {
                let mut resp = resp.into_response();
                let route = resp.data::<PathPattern>().map(|p| p.0.clone());
                let panicked = resp.data::<errors::Panicked>().is_some();
                let status = resp.status();
                let failure = panicked.then(|| "handler panicked".to_owned());
                // An empty error body gets a proper one, except for HEAD,
                // whose body is empty by definition.
                if (status.is_client_error() || status.is_server_error())
                    && method != poem::http::Method::HEAD
                    && body_size(&mut resp) == Some(0)
                {
                    let (code, message) = errors::describe(status, method.as_str());
                    // Keep what the inner layer said about the error
                    // (Retry-After on an overload 503, Allow on a 405).
                    let mut kept = std::mem::take(resp.headers_mut());
                    kept.remove(header::CONTENT_TYPE);
                    kept.remove(header::CONTENT_LENGTH);
                    resp = errors::render(&self.state, html, status, code, &message, &id.0);
                    resp.headers_mut().extend(kept);
                }
                (resp, route, failure)
            }
            Err(err) => {
                // A nested router marks its own 404 with the prefix it was
                // mounted at: a path that matched nothing is unmatched.
                let route = if err.is::<NotFoundError>() {
                    None
                } else {
                    err.data::<PathPattern>().map(|p| p.0.clone())
                };
                let allow = err.data::<AllowHeader>().map(|a| a.0.clone());
                // Whatever extractor hit the body limit, the answer is 413.
                let status = if super::limits::is_body_too_large(&err) {
                    poem::http::StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    err.status()
                };
                let (code, described) = errors::describe(status, method.as_str());
                let (message, failure) = if status.is_server_error() {
                    (described, Some(err.to_string()))
                } else if code != "bad_request" {
                    (described, None)
                } else {
                    // Extractor errors say which parameter was wrong.
                    (err.to_string().chars().take(300).collect(), None)
                };
                let mut resp = errors::render(&self.state, html, status, code, &message, &id.0);
                if let Some(allow) = allow {
                    resp.headers_mut().insert(header::ALLOW, allow);
                }
                (resp, route, failure)
            }
        };

        security::apply(resp.headers_mut(), https);
        if let Ok(value) = HeaderValue::from_str(&id.0) {
            resp.headers_mut().insert(REQUEST_ID_NAME, value);
        }
        let status = resp.status().as_u16();
        let bytes = body_size(&mut resp);
        let elapsed = start.elapsed();
        self.state
            .metrics
            .request_finished(method_label, route.as_ref(), status, elapsed);
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let route = route.as_deref().unwrap_or(UNMATCHED_ROUTE);
        // Strings as `&str`, not `%Display`, and the message too as a
        // `message` field rather than the macro's format string (which is
        // recorded as `fmt::Arguments`, through `fmt`): recorded as they
        // are. The line is the same, in JSON and in text.
        match failure {
            Some(error) => tracing::error!(
                target: "access",
                message = "request failed",
                request_id = &*id.0, method = method.as_str(), route, status, latency_ms, bytes, error,
            ),
            None => tracing::info!(
                target: "access",
                message = "request",
                request_id = &*id.0, method = method.as_str(), route, status, latency_ms, bytes,
            ),
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sixteen_hex_digits_as_format_writes_them() {
        for n in [
            0,
            1,
            0xf,
            0x10,
            0xdead_beef,
            u64::MAX - 1,
            u64::MAX,
            1 << 63,
        ] {
            let digits = hex16(n);
            assert_eq!(
                std::str::from_utf8(&digits).ok(),
                Some(&*format!("{n:016x}"))
            );
        }
        let id = new_request_id();
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(new_request_id(), id);
    }
}
