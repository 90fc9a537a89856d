//! Limits that keep a flood or a hostile client from turning into unbounded
//! memory or stuck tasks: at most N requests in flight (the rest get a quick
//! 503 with `Retry-After`), a bounded request body and header block, and a
//! deadline per request. `/healthz` is exempt from the concurrency limit so
//! that an overload never looks like a dead process to Kubernetes.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use poem::http::{Method, StatusCode, header};
use poem::{Body, Request, Response, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest header block accepted (names + values), in bytes.
    pub max_header_bytes: usize,
    /// Requests served at once; more get 503.
    pub max_concurrent: usize,
    /// Deadline for one request.
    pub request_timeout: Duration,
}

/// Middleware factory; see the module docs.
#[derive(Debug, Clone)]
pub struct Limits {
    settings: LimitSettings,
    permits: Arc<Semaphore>,
}

impl Limits {
    /// Creates the middleware.
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
        }
    }
}

/// Whether `err` comes from reading a body past the limit (the body is cut
/// off by `http_body_util::Limited`, wrapped in an `io::Error`, wrapped in
/// poem's read error): the answer is then 413, whatever the extractor made
/// of it.
pub fn is_body_too_large(err: &poem::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        // An `io::Error`'s `source()` skips the error it wraps (and poem
        // wraps the body's `io::Error` in another): look inside.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

fn status(code: StatusCode) -> poem::Error {
    poem::Error::from_status(code)
}

/// What [`Limits::admit`] decided about a request.
#[derive(Debug)]
pub enum Admission {
    /// Go on; the permit (none for `/healthz`) must live as long as the
    /// request is being served.
    Admitted(Option<OwnedSemaphorePermit>),
    /// Refused: answer with this.
    Refused(Result<Response>),
}

impl Limits {
    /// Checks `req` against the limits and, when it passes, caps its body.
    /// The front layer ([`super::middleware::Front`]) calls this and then
    /// serves the request under [`Limits::deadline`]: no future of the
    /// limits' own on every request.
    pub fn admit(&self, req: &mut Request) -> Admission {
        let permit = if req.uri().path() == "/healthz" {
            None
        } else {
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::warn!(
                        limit = self.settings.max_concurrent,
                        "overloaded: request refused"
                    );
                    let mut resp = status(StatusCode::SERVICE_UNAVAILABLE).into_response();
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                    return Admission::Refused(Ok(resp));
                }
            }
        };

        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.settings.max_header_bytes {
            return Admission::Refused(Err(status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)));
        }

        let max_body = self.settings.max_body_bytes;
        let declared = req
            .header(header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body as u64) {
            return Admission::Refused(Err(status(StatusCode::PAYLOAD_TOO_LARGE)));
        }
        // A body without a length (chunked) is cut off at the limit while it
        // is read, so no extractor can buffer more than `max_body`.
        // GET and HEAD handlers never read a body, and an unread body is
        // never buffered: only the others pay for wrapping it.
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let body: http_body_util::combinators::BoxBody<_, _> = req.take_body().into();
            let limited = http_body_util::Limited::new(body, max_body)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                .boxed();
            req.set_body(Body::from(limited));
        }
        Admission::Admitted(permit)
    }

    /// How long a request may take.
    pub fn deadline(&self) -> Duration {
        self.settings.request_timeout
    }

    /// The answer to a request that ran past [`Limits::deadline`].
    pub fn timed_out(&self) -> poem::Error {
        tracing::warn!(
            timeout_seconds = self.settings.request_timeout.as_secs_f64(),
            "request timed out"
        );
        status(StatusCode::SERVICE_UNAVAILABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_error(inner: std::io::Error) -> poem::Error {
        // As poem reports a body that failed while being read: its own
        // `io::Error` around the body's, inside `ReadBodyError::Io`.
        poem::error::ReadBodyError::Io(std::io::Error::other(inner)).into()
    }

    /// The error a body over the limit gives, made as `Limits::call` makes it.
    async fn cut_off() -> std::io::Error {
        let body = http_body_util::Full::new(bytes::Bytes::from(vec![b'a'; 100]));
        let limited = http_body_util::Limited::new(body, 10)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        match limited.collect().await {
            Ok(_) => panic!("100 bytes went through a 10-byte limit"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_body_cut_off_at_the_limit_is_told_apart_from_other_read_errors() {
        assert!(is_body_too_large(&read_error(cut_off().await)));
        assert!(is_body_too_large(&poem::Error::new(
            cut_off().await,
            StatusCode::BAD_REQUEST
        )));

        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!is_body_too_large(&read_error(reset)));
        assert!(!is_body_too_large(&poem::Error::from_status(
            StatusCode::BAD_REQUEST
        )));
    }
}
