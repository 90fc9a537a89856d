//! Errors -> responses, in one place. What the user caused (unknown page,
//! wrong method, bad input) becomes a clear 4xx page or JSON error; what went
//! wrong inside becomes an opaque 500 whose cause is logged once, with the
//! request id. Nothing here ever shows a cause chain or a secret to the user.

use poem::http::{StatusCode, header};
use poem::{IntoResponse, Request, Response};
use serde::Serialize;

use super::AppState;

/// Whether the client prefers an HTML page (a browser) to JSON.
pub fn wants_html(req: &Request) -> bool {
    req.header(header::ACCEPT)
        .map(|a| a.contains("text/html"))
        .unwrap_or(false)
}

/// The JSON body of every error the service returns outside the OpenAPI routes.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// A stable, machine-readable code.
    pub error: &'a str,
    /// What happened and what to do, for a person.
    pub message: &'a str,
    /// The request id, to quote when reporting a problem.
    pub request_id: &'a str,
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    tool_name: &'a str,
    title: &'a str,
    message: &'a str,
    request_id: &'a str,
    flashes: [(); 0],
}

/// A short code and a user-facing explanation for a status.
pub fn describe(status: StatusCode, method: &str) -> (&'static str, String) {
    match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            "There is no page at this address. Check the link, or start again from the home page."
                .into(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("This address does not accept {method} requests."),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "The request body is too large.".into())
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "The request headers are too large. Clearing this site's cookies may help.".into(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "unavailable",
            "The tool is busy or a request took too long. Please try again in a moment.".into(),
        ),
        s if s.is_client_error() => (
            "bad_request",
            "The request could not be understood. Start again from the home page.".into(),
        ),
        _ => (
            "internal_error",
            "Something went wrong on our side. Please try again; if it keeps happening, report it \
             with the request id below."
                .into(),
        ),
    }
}

/// Renders an error as an HTML page or JSON, as the client prefers.
pub fn render(
    state: &AppState,
    html: bool,
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response {
    if html {
        let title = status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            tool_name: &state.config.tool_name,
            title,
            message,
            request_id,
            flashes: [],
        };
        match state.templates.render("error", &page) {
            Ok(body) => {
                return Response::builder()
                    .status(status)
                    .content_type("text/html; charset=utf-8")
                    .body(body);
            }
            Err(e) => tracing::error!(error = %e, "could not render the error page"),
        }
    }
    let body = ErrorBody {
        error: code,
        message,
        request_id,
    };
    let json = serde_json::to_string(&body).unwrap_or_else(|_| String::from("{}"));
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(json)
}

/// What a panicking handler answers: a bare 500, which the request-log
/// middleware turns into the usual error page and logs.
#[derive(Debug, Clone, Copy)]
pub struct PanicPage;

impl poem::middleware::PanicHandler for PanicPage {
    type Response = Response;

    fn get_response(&self, _err: Box<dyn std::any::Any + Send + 'static>) -> Response {
        let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        resp.set_data(Panicked);
        resp
    }
}

/// Marks a response produced by [`PanicPage`].
#[derive(Debug, Clone, Copy)]
pub struct Panicked;
