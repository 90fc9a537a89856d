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

use std::future::Future;
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt as _;
use futures_util::future::Either;

use poem::endpoint::{BoxEndpoint, DynEndpoint};
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Result, Route};
use poem_openapi::registry::{MetaApi, MetaParamIn};
use poem_openapi::{LicenseObject, Object, OpenApi as _, OpenApiService, ServerObject, Tags};

use super::account::AuthApi;
use super::methods::{ExactPath, Methods, allow_value};
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

/// The pages (paths without parameters, each with its methods), the
/// document and the explorer, and the API's operations beside them: see
/// [`Dispatch`].
pub fn mount(pages: Vec<(&'static str, Methods)>) -> Dispatch<Route> {
    let service = service();
    let mut prefixes: Vec<String> = Vec::new();
    for path in Api::meta().iter().flat_map(|api| api.paths.iter()) {
        let first = path.path.split('/').nth(1).unwrap_or_default();
        let prefix = format!("/{first}");
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    let routes = Route::new()
        .at(DOCUMENT_PATH, document_endpoint())
        .nest(EXPLORER_PATH, LazyExplorer::default());
    Dispatch {
        pages: pages
            .into_iter()
            .map(|(path, methods)| ExactPath::new(path, methods))
            .collect(),
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
pub struct Dispatch<R> {
    pages: Vec<ExactPath>,
    routes: R,
    api: ApiEndpoint,
    prefixes: Vec<String>,
}

impl<R> std::fmt::Debug for Dispatch<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("pages", &self.pages)
            .field("prefixes", &self.prefixes)
            .finish_non_exhaustive()
    }
}

impl<R> Dispatch<R> {
    fn is_api(&self, path: &str) -> bool {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        !under(EXPLORER_PATH) && self.prefixes.iter().any(|p| under(p))
    }
}

impl<R: Endpoint> Endpoint for Dispatch<R> {
    type Output = Response;

    // The exact path is found here, for a page and for an operation of
    // the table alike, and the handler's future is made here, before this
    // level's own: not an `async fn`, which would keep the `Request` (488
    // bytes) in its state for its whole life, beside the future it was
    // moved into (docs/performance.md). The answer is that future itself
    // (`Left`), or for what the table does not hold, a boxed one (`Right`):
    // poem-openapi's endpoint, whose future is boxed anyway, and poem's
    // router for the document, the explorer and unknown paths, whose
    // future (2 KB) would otherwise size every request's.
    fn call(&self, req: Request) -> impl Future<Output = Result<Response>> + Send {
        let path = req.uri().path();
        let api = self.is_api(path);
        // A page or a plain operation by its exact path, as poem's router
        // would find it, without its radix tree and its boxed level; the
        // route template goes on the answer as the router puts it there.
        let exact = if api {
            self.api.table.find(path)
        } else {
            self.pages.iter().find(|p| p.path() == path)
        };
        match exact {
            Some(exact) => Either::Left(exact.call(req)),
            None if api => Either::Right(DynEndpoint::call(&*self.api.service, req)),
            None => Either::Right(
                async move { self.routes.call(req).await.map(IntoResponse::into_response) }.boxed(),
            ),
        }
    }
}

/// The service as an endpoint, answering a wrong method on a known path
/// with 405 and the `Allow` header that lists the right ones (RFC 9110):
/// the operations of plain paths from a table by exact path
/// ([`Operations`]), everything else through poem-openapi's own endpoint.
pub fn endpoint(service: OpenApiService<Api, ()>) -> ApiEndpoint {
    ApiEndpoint {
        table: Operations::new(&Api::meta(), api()),
        service: service_endpoint(service),
    }
}

/// poem-openapi's endpoint for the service, with the `Allow` header on 405.
fn service_endpoint(service: OpenApiService<Api, ()>) -> BoxEndpoint<'static> {
    let allowed = Arc::new(AllowedMethods::new(&Api::meta()));
    service
        .into_endpoint()
        .around(move |ep, req: Request| {
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
        .boxed()
}

/// The API as [`Dispatch`] calls it: a path in the table is answered from
/// it, any other (a path with parameters or a secured operation, or no
/// operation's path at all) by poem-openapi's endpoint.
pub struct ApiEndpoint {
    table: Operations,
    service: BoxEndpoint<'static>,
}

impl std::fmt::Debug for ApiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiEndpoint")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Endpoint for ApiEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        match self.table.find(req.uri().path()) {
            Some(path) => path.call(req).await,
            None => self.service.call(req).await,
        }
    }
}

/// The operations of the API's plain paths as poem-openapi makes them
/// (`OpenApi::add_routes`: each its parameter extraction, handler and
/// response, as a boxed endpoint), found by exact path and method.
///
/// `OpenApiService::into_endpoint` puts a query-string parse, poem's
/// router, a method router and two more boxed levels in front of each of
/// them; on `/healthz`, the route monitoring polls most, that was about 4k
/// instructions of 40k (docs/performance.md). A path is *plain* when it
/// has no path parameter (a router would have nothing to match but the
/// path itself) and none of its operations has a query or cookie
/// parameter or a security scheme (the code poem-openapi generates for
/// those reads the parsed query, which only its own endpoint inserts).
/// What poem's routers answer, the table answers too: 405 with `Allow`
/// for a wrong method, HEAD through GET without its body, and the route
/// template as the response's `PathPattern` (the `http.route` label).
/// `the_table_answers_as_poem_openapi_does` compares the two on every
/// method of every path.
#[derive(Debug)]
pub struct Operations {
    paths: Vec<ExactPath>,
}

impl Operations {
    /// The table of the plain paths of `api` (see the type's docs).
    fn new(meta: &[MetaApi], api: Api) -> Operations {
        let plain: Vec<&str> = meta
            .iter()
            .flat_map(|api| api.paths.iter())
            .filter(|path| {
                !path.path.contains('{')
                    && path.operations.iter().all(|op| {
                        op.security.is_empty()
                            && op
                                .params
                                .iter()
                                .all(|param| matches!(param.in_type, MetaParamIn::Header))
                    })
            })
            .map(|path| path.path.as_str())
            .collect();
        let mut routes = std::collections::HashMap::new();
        api.add_routes(&mut routes);
        let mut paths: Vec<ExactPath> = routes
            .into_iter()
            .filter(|(path, _)| plain.contains(&path.as_str()))
            .map(|(path, methods)| {
                ExactPath::new(
                    &path,
                    Methods::from_endpoints(methods.into_iter().collect()),
                )
            })
            .collect();
        // The most polled first: a probe finds its path at once.
        paths.sort_by_key(|p| p.path() != "/healthz");
        Operations { paths }
    }

    fn find(&self, path: &str) -> Option<&ExactPath> {
        self.paths.iter().find(|p| p.path() == path)
    }
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
            }
        }
        let entries = by_path
            .into_iter()
            .map(|(path, methods)| {
                let segments = path.split('/').map(str::to_owned).collect();
                (segments, allow_value(&methods))
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
    use poem::PathPattern;

    #[test]
    fn the_api_gets_its_own_paths_and_nothing_else() {
        let dispatch = mount(Vec::new());
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

    /// What an answer is made of, as far as the front layer and the client
    /// can tell.
    #[derive(Debug, PartialEq)]
    enum Answer {
        Ok {
            status: u16,
            headers: Vec<(String, String)>,
            body: String,
            route: Option<String>,
        },
        Err {
            status: u16,
            not_found: bool,
            allow: Option<String>,
            route: Option<String>,
        },
    }

    async fn answer(
        api: &ApiEndpoint,
        state: &Arc<crate::web::AppState>,
        method: &Method,
        path: &str,
    ) -> Answer {
        let sessions =
            crate::web::session::SessionMiddleware::new(state.config.session_key.secret()).unwrap();
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path.parse().unwrap())
            .finish();
        req.set_data(state.clone());
        let _binding = sessions.attach(&mut req, false);
        match api.call(req).await {
            Ok(mut resp) => Answer::Ok {
                status: resp.status().as_u16(),
                headers: resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
                route: resp.data::<PathPattern>().map(|p| p.0.to_string()),
                // Without the process's own gauges (memory, CPU time),
                // which move between two scrapes.
                body: resp
                    .take_body()
                    .into_string()
                    .await
                    .unwrap()
                    .lines()
                    .filter(|line| !line.starts_with("process_"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
            Err(err) => Answer::Err {
                status: err.status().as_u16(),
                not_found: err.is::<poem::error::NotFoundError>(),
                allow: err
                    .data::<AllowHeader>()
                    .map(|a| a.0.to_str().unwrap().to_owned()),
                route: err.data::<PathPattern>().map(|p| p.0.to_string()),
            },
        }
    }

    /// The table is what the API is served with, and it answers every
    /// method on every path, known or not, as poem-openapi's endpoint
    /// does: status, headers, body, route label, 404 and 405 with `Allow`.
    #[tokio::test]
    async fn the_table_answers_as_poem_openapi_does() {
        let table = endpoint(service());
        let listed = format!("{table:?}");
        for plain in ["/healthz", "/readyz", "/api/v1/me", "/api/v1/userinfo"] {
            assert!(listed.contains(&format!("\"{plain}\"")), "{listed}");
        }
        // Its operation reads the metrics token: poem-openapi's endpoint.
        assert!(!listed.contains("\"/metrics\""), "{listed}");
        let library = ApiEndpoint {
            table: Operations { paths: Vec::new() },
            service: service_endpoint(service()),
        };
        let state = crate::web::AppState::for_tests();
        let mut compared = 0;
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/me",
            "/api/v1/userinfo",
            "/api",
            "/api/v1",
            "/api/nowhere",
            "/healthz/",
            "/healthz/x",
            "/healthz?verbose=1",
            "/nowhere",
        ] {
            for method in [
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ] {
                let ours = answer(&table, &state, &method, path).await;
                let theirs = answer(&library, &state, &method, path).await;
                assert_eq!(ours, theirs, "{method} {path}");
                compared += 1;
            }
        }
        assert_eq!(compared, 72);
        // Some of each kind of answer were compared.
        let head = answer(&table, &state, &Method::HEAD, "/readyz").await;
        assert!(
            matches!(&head, Answer::Ok { body, route: Some(r), .. } if body.is_empty() && r == "/readyz"),
            "{head:?}"
        );
        let wrong = answer(&table, &state, &Method::POST, "/healthz").await;
        assert_eq!(
            wrong,
            Answer::Err {
                status: 405,
                not_found: false,
                allow: Some("GET, HEAD".into()),
                route: Some("/healthz".into())
            }
        );
        let unknown = answer(&table, &state, &Method::GET, "/api/nowhere").await;
        assert!(
            matches!(
                unknown,
                Answer::Err {
                    status: 404,
                    not_found: true,
                    route: None,
                    ..
                }
            ),
            "{unknown:?}"
        );
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
