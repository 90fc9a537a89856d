//! The JSON API, described by OpenAPI (poem-openapi): the service that holds
//! every operation, the document served at `/openapi.json` and printed by
//! `hello-oauth openapi`, and the explorer at `/api/docs`.
//!
//! Every operation's responses, errors included, are `ApiResponse` variants,
//! so the document lists them. The document is generated from the types
//! alone (no configuration enters it): it is the same on every instance and
//! is committed as `openapi/openapi.json`. Doc comments on operations and
//! types are published in it: never put a secret or an internal host there.
//!
//! Groups of operations live in their own modules and are listed in
//! [`Api`]: `ops` (health, readiness, metrics) and `auth` (`/api/v1/me`,
//! `/api/v1/userinfo`).

use std::sync::{Arc, OnceLock};

use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Result, Route};
use poem_openapi::registry::MetaApi;
use poem_openapi::{LicenseObject, Object, OpenApi as _, OpenApiService, ServerObject, Tags};

use super::account::AuthApi;
use super::middleware::AllowHeader;
use super::ops::OpsApi;

/// Every operation group of the API ([`api`] builds it).
pub type Api = (OpsApi, AuthApi);

/// The operation groups, as the service holds them.
fn api() -> Api {
    (OpsApi, AuthApi)
}

/// Where the explorer is served.
pub const EXPLORER_PATH: &str = "/api/docs";
/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";

/// The tags that group operations in the document and the explorer.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Health, readiness and metrics: for Toolforge's health check, for
    /// monitoring and for operators.
    #[oai(rename = "ops")]
    Ops,
    /// Who is logged in, and their account on the wiki: for scripts and
    /// pages that hold the session cookie of a login at `/login`.
    #[oai(rename = "auth")]
    Auth,
}

/// The body of every error response of the API.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ApiError {
    /// A stable, machine-readable code, e.g. `unauthorized`.
    pub error: String,
    /// What happened and what to do, for a person.
    pub message: String,
    /// The request id (also in the `X-Request-Id` header), to quote when
    /// reporting a problem.
    pub request_id: String,
}

impl poem_openapi::types::Example for ApiError {
    fn example() -> Self {
        ApiError {
            error: "unauthorized".into(),
            message: "This endpoint needs the metrics token as a bearer token.".into(),
            request_id: "5f0c6a1e9b2d4c87".into(),
        }
    }
}

impl ApiError {
    /// An error body for the current request.
    pub fn new(error: &str, message: impl Into<String>, request_id: &str) -> ApiError {
        ApiError {
            error: error.to_owned(),
            message: message.into(),
            request_id: request_id.to_owned(),
        }
    }
}

/// The OpenAPI service: every operation plus the document's metadata.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(api(), "hello-oauth", env!("CARGO_PKG_VERSION"))
        .description(
            "The JSON API of hello-oauth, a Toolforge tool that logs people in with their \
             Wikimedia account. Health, readiness and metrics endpoints are for \
             Toolforge's health check, monitoring and operators (see docs/operations.md in \
             the source repository). The `/api/v1` endpoints answer for the user logged in \
             with the session cookie that logging in at `/login` sets. Errors are JSON \
             objects with `error`, `message` and `request_id`.",
        )
        .license(
            LicenseObject::new("GPL-3.0-or-later").url("https://www.gnu.org/licenses/gpl-3.0.html"),
        )
        .server(ServerObject::new("/").description("This tool, wherever it is served"))
}

/// The document, as served at [`DOCUMENT_PATH`] and committed as
/// `openapi/openapi.json`.
pub fn document() -> String {
    let mut doc = service().spec();
    doc.push('\n');
    doc
}

/// The endpoint serving the document. The document is generated on the
/// first request for it, not at start-up: most instances never serve it, and
/// generating it runs code (and allocates) that nothing else needs
/// (docs/performance.md, "Idle RSS").
pub fn document_endpoint() -> impl Endpoint + 'static {
    let doc: OnceLock<String> = OnceLock::new();
    poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(doc.get_or_init(document).clone())
    })
}

/// The explorer (Swagger UI, bundled in the binary by poem-openapi), with a
/// Content-Security-Policy that lets the page load nothing from any other
/// host: Toolforge's privacy policy forbids third-party requests.
pub fn explorer(service: &OpenApiService<Api, ()>) -> impl Endpoint + 'static {
    service
        .swagger_ui()
        .with(poem::middleware::SetHeader::new().overriding(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' \
         'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

/// [`explorer`], built on its first request instead of at start-up. Its page
/// is the 1.45 MB Swagger UI script, its 150 KB stylesheet and the document
/// pasted into one 1.6 MB `String`: built at start-up, that string and the
/// part of the binary it was copied from were 3 MiB of the idle service's
/// resident memory, for a page few instances ever serve. Once built it is
/// kept, as before.
#[derive(Default)]
pub struct LazyExplorer(OnceLock<BoxEndpoint<'static>>);

impl std::fmt::Debug for LazyExplorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyExplorer")
            .field("built", &self.0.get().is_some())
            .finish()
    }
}

impl Endpoint for LazyExplorer {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let explorer = self
            .0
            .get_or_init(|| explorer(&service()).map_to_response().boxed());
        explorer.call(req).await
    }
}

/// Adds the document and the explorer to `routes`, and puts the API's
/// operations beside them: see [`Dispatch`].
pub fn mount(routes: Route) -> Dispatch<Route, impl Endpoint + 'static> {
    let service = service();
    let mut prefixes: Vec<String> = Vec::new();
    for path in Api::meta().iter().flat_map(|api| api.paths.iter()) {
        let first = path.path.split('/').nth(1).unwrap_or_default();
        let prefix = format!("/{first}");
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    let routes = routes
        .at(DOCUMENT_PATH, document_endpoint())
        .nest(EXPLORER_PATH, LazyExplorer::default());
    Dispatch {
        routes,
        api: endpoint(service),
        prefixes,
    }
}

/// Sends a request to the API's operations when its path is under one of
/// their first segments (`/healthz`, `/readyz`, `/metrics`, `/api`, except
/// the explorer under `/api/docs`), and to the other routes otherwise: what
/// nesting the API in the router without stripping did, without the nested
/// router, its boxed future and the route template it formatted on every
/// request (docs/performance.md). The API keeps its own route templates as
/// the `http.route` label.
#[derive(Debug)]
pub struct Dispatch<R, A> {
    routes: R,
    api: A,
    prefixes: Vec<String>,
}

impl<R, A> Dispatch<R, A> {
    fn is_api(&self, path: &str) -> bool {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        !under(EXPLORER_PATH) && self.prefixes.iter().any(|p| under(p))
    }
}

impl<R: Endpoint, A: Endpoint> Endpoint for Dispatch<R, A> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if self.is_api(req.uri().path()) {
            self.api.call(req).await.map(IntoResponse::into_response)
        } else {
            self.routes.call(req).await.map(IntoResponse::into_response)
        }
    }
}

/// The service as an endpoint, answering a wrong method on a known path
/// with 405 and the `Allow` header that lists the right ones (RFC 9110).
pub fn endpoint(service: OpenApiService<Api, ()>) -> impl Endpoint + 'static {
    let allowed = Arc::new(AllowedMethods::new(&Api::meta()));
    service.into_endpoint().around(move |ep, req: Request| {
        let allowed = allowed.clone();
        async move {
            // A clone of the URI shares its bytes: no allocation per request.
            let uri = req.uri().clone();
            match ep.call(req).await {
                Err(mut err) if err.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    if let Some(value) = allowed.for_path(uri.path()) {
                        err.set_data(AllowHeader(value.clone()));
                    }
                    Err(err)
                }
                other => other,
            }
        }
    })
}

/// The methods of each path of the document, as `Allow` header values
/// (HEAD is implied by GET, as poem answers it).
#[derive(Debug)]
struct AllowedMethods(Vec<(Vec<String>, HeaderValue)>);

impl AllowedMethods {
    fn new(apis: &[MetaApi]) -> AllowedMethods {
        let mut by_path: Vec<(String, Vec<Method>)> = Vec::new();
        for path in apis.iter().flat_map(|api| api.paths.iter()) {
            let index = match by_path.iter().position(|(p, _)| *p == path.path) {
                Some(i) => i,
                None => {
                    by_path.push((path.path.clone(), Vec::new()));
                    by_path.len() - 1
                }
            };
            for op in &path.operations {
                by_path[index].1.push(op.method.clone());
                if op.method == Method::GET {
                    by_path[index].1.push(Method::HEAD);
                }
            }
        }
        let entries = by_path
            .into_iter()
            .filter_map(|(path, mut methods)| {
                methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                methods.dedup();
                let text = methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let segments = path.split('/').map(str::to_owned).collect();
                HeaderValue::from_str(&text).ok().map(|v| (segments, v))
            })
            .collect();
        AllowedMethods(entries)
    }

    /// The value for a request path; `{name}` segments match any segment.
    fn for_path(&self, path: &str) -> Option<&HeaderValue> {
        self.0.iter().find_map(|(pattern, value)| {
            let mut given = path.split('/');
            let matches = pattern.iter().all(|want| {
                given.next().is_some_and(|seg| {
                    (want.starts_with('{') && want.ends_with('}') && !seg.is_empty()) || want == seg
                })
            }) && given.next().is_none();
            matches.then_some(value)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_api_gets_its_own_paths_and_nothing_else() {
        let dispatch = mount(Route::new());
        for path in [
            "/healthz",
            "/healthz/x",
            "/readyz",
            "/metrics",
            "/api",
            "/api/v1/me",
            "/api/nowhere",
        ] {
            assert!(dispatch.is_api(path), "{path}");
        }
        for path in [
            "/",
            "/healthzz",
            "/login",
            "/openapi.json",
            "/api/docs",
            "/api/docs/",
            "/api/docs/index.css",
            "/apis",
            "/static/style.css",
        ] {
            assert!(!dispatch.is_api(path), "{path}");
        }
    }

    #[test]
    fn the_document_is_deterministic_and_names_the_crate_version() {
        let a = document();
        let b = document();
        assert_eq!(a, b);
        let json: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(json["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["servers"][0]["url"], "/");
    }

    #[test]
    fn allow_lists_every_method_of_a_path_and_head_with_get() {
        let allowed = AllowedMethods::new(&Api::meta());
        assert_eq!(allowed.for_path("/healthz").unwrap(), "GET, HEAD");
        assert_eq!(allowed.for_path("/readyz").unwrap(), "GET, HEAD");
        assert_eq!(allowed.for_path("/api/v1/me").unwrap(), "GET, HEAD");
        assert!(allowed.for_path("/healthz/x").is_none());
        assert!(allowed.for_path("/nowhere").is_none());
    }

    #[test]
    fn allow_matches_path_parameters_segment_by_segment() {
        let allowed = AllowedMethods(vec![(
            "/api/v1/users/{id}".split('/').map(str::to_owned).collect(),
            HeaderValue::from_static("GET, HEAD"),
        )]);
        assert!(allowed.for_path("/api/v1/users/42").is_some());
        assert!(allowed.for_path("/api/v1/users/").is_none());
        assert!(allowed.for_path("/api/v1/users/42/x").is_none());
    }
}
