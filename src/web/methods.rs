//! A path's endpoints by method: what poem's `RouteMethod` does (HEAD
//! answered through GET, without its body, unless a path opts out with
//! [`Methods::without_head`]), plus the `Allow` header on a
//! 405, which RFC 9110 (section 15.5.6) requires and `RouteMethod` does not
//! send. The pages ([`super::app`]) and the API's table of plain paths
//! ([`super::api`]) are both answered through it, so a page and an
//! operation refuse a wrong method alike, each as an [`ExactPath`].

use std::future::Future;

use futures_util::future::BoxFuture;
use poem::endpoint::{BoxEndpoint, DynEndpoint};
use poem::error::MethodNotAllowedError;
use poem::http::{HeaderValue, Method};
use poem::{EndpointExt, IntoEndpoint, PathPattern, Request, Response, Result};

use super::middleware::AllowHeader;

/// The endpoints of one path, by method, and the `Allow` value they make.
pub struct Methods {
    methods: Vec<(Method, BoxEndpoint<'static>)>,
    /// Whether HEAD is answered through GET when it has no endpoint.
    head_through_get: bool,
    allow: HeaderValue,
}

impl std::fmt::Debug for Methods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Methods")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl Default for Methods {
    fn default() -> Methods {
        Methods::from_endpoints(Vec::new())
    }
}

/// A path answered by `ep` on GET (and so on HEAD).
pub fn get<E>(ep: E) -> Methods
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    Methods::default().get(ep)
}

impl Methods {
    /// From endpoints already boxed (as poem-openapi's `add_routes` gives them).
    pub fn from_endpoints(methods: Vec<(Method, BoxEndpoint<'static>)>) -> Methods {
        Methods::with(methods, true)
    }

    fn with(methods: Vec<(Method, BoxEndpoint<'static>)>, head_through_get: bool) -> Methods {
        let allow = allow_of(methods.iter().map(|(m, _)| m), head_through_get);
        Methods {
            methods,
            head_through_get,
            allow,
        }
    }

    /// HEAD refused (405) instead of answered through GET, unless it has an
    /// endpoint of its own: for a GET with effects elsewhere, which a HEAD
    /// would have too while showing nothing of them. `/login` asks the wiki
    /// for a request token; a link checker or an uptime monitor sending HEAD
    /// to it should not.
    pub fn without_head(self) -> Methods {
        Methods::with(self.methods, false)
    }

    /// Adds (or replaces) the endpoint of `method`.
    pub fn method<E>(mut self, method: Method, ep: E) -> Methods
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        let ep = ep.into_endpoint().map_to_response().boxed();
        self.methods.retain(|(m, _)| *m != method);
        self.methods.push((method, ep));
        Methods::with(self.methods, self.head_through_get)
    }

    /// Adds the endpoint of GET.
    pub fn get<E>(self, ep: E) -> Methods
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.method(Method::GET, ep)
    }

    /// Adds the endpoint of HEAD (without one, HEAD is GET without the body).
    pub fn head<E>(self, ep: E) -> Methods
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.method(Method::HEAD, ep)
    }

    /// Adds the endpoint of POST.
    pub fn post<E>(self, ep: E) -> Methods
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.method(Method::POST, ep)
    }

    /// The `Allow` value of this path: its methods, HEAD with GET unless
    /// [`Methods::without_head`].
    pub fn allow(&self) -> &HeaderValue {
        &self.allow
    }

    fn endpoint(&self, method: &Method) -> Option<&BoxEndpoint<'static>> {
        self.methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, ep)| ep)
    }

    /// Starts the endpoint of the request's method: its boxed future
    /// (`DynEndpoint::call`), and `true` when it is GET answering a HEAD,
    /// whose body the caller then drops; 405 with `Allow` when the path has
    /// no endpoint for the method. Nothing is awaited here, so a
    /// caller awaits the handler's future at its own level: `ep.call(req)`
    /// would add two `async` levels of poem's (`Box<T>` and
    /// `dyn DynEndpoint` as `Endpoint`), each with its own copy of the
    /// request (docs/performance.md).
    fn start(&self, mut req: Request) -> Result<(BoxFuture<'_, Result<Response>>, bool)> {
        if let Some(ep) = self.endpoint(req.method()) {
            return Ok((DynEndpoint::call(&**ep, req), false));
        }
        // As poem's method router: HEAD is GET without the body.
        if req.method() == Method::HEAD
            && self.head_through_get
            && let Some(get) = self.endpoint(&Method::GET)
        {
            req.set_method(Method::GET);
            return Ok((DynEndpoint::call(&**get, req), true));
        }
        let mut err = poem::Error::from(MethodNotAllowedError);
        err.set_data(AllowHeader(self.allow.clone()));
        Err(err)
    }
}

/// A path found by its exact text (no router: there is nothing to match
/// but the path itself) and answered through its [`Methods`], with the path
/// put on the answer as its route template (`PathPattern`, the
/// `http.route` label) unless a handler set one, as poem's router does.
pub struct ExactPath {
    pattern: PathPattern,
    methods: Methods,
}

impl std::fmt::Debug for ExactPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.path(), f)
    }
}

impl ExactPath {
    /// `path` answered by `methods`.
    pub fn new(path: &str, methods: Methods) -> ExactPath {
        ExactPath {
            pattern: PathPattern(path.into()),
            methods,
        }
    }

    /// The path (and route template).
    pub fn path(&self) -> &str {
        &self.pattern.0
    }

    /// Answers a request for this path. The method's endpoint is started
    /// here, before the future is made, so that the future holds the
    /// handler's boxed future and not the `Request` too (an `async fn`
    /// keeps its arguments for its whole life: docs/performance.md).
    pub fn call(&self, req: Request) -> impl Future<Output = Result<Response>> + Send + '_ {
        let started = self.methods.start(req);
        async move {
            // The handler's own future, awaited at this level: no level of
            // `Methods` or poem's boxing in between.
            let answer = match started {
                Ok((answer, head)) => answer.await.map(|mut resp| {
                    if head {
                        resp.set_body(());
                    }
                    resp
                }),
                Err(err) => Err(err),
            };
            self.labelled(answer)
        }
    }

    /// The answer labelled with this path's template, for the metrics and
    /// the access log, unless a handler below labelled it already.
    fn labelled(&self, answer: Result<Response>) -> Result<Response> {
        match answer {
            Ok(mut resp) => {
                if resp.data::<PathPattern>().is_none() {
                    resp.set_data(self.pattern.clone());
                }
                Ok(resp)
            }
            Err(mut err) => {
                if err.data::<PathPattern>().is_none() {
                    err.set_data(self.pattern.clone());
                }
                Err(err)
            }
        }
    }
}

/// An `Allow` value: the methods in alphabetical order, each once, with
/// HEAD wherever GET is (poem answers HEAD through GET).
pub fn allow_value<'a>(methods: impl IntoIterator<Item = &'a Method>) -> HeaderValue {
    allow_of(methods, true)
}

/// The methods in alphabetical order, each once; with `head_with_get`,
/// HEAD added wherever GET is.
fn allow_of<'a>(methods: impl IntoIterator<Item = &'a Method>, head_with_get: bool) -> HeaderValue {
    let mut names: Vec<&str> = Vec::new();
    for method in methods {
        names.push(method.as_str());
        if head_with_get && *method == Method::GET {
            names.push(Method::HEAD.as_str());
        }
    }
    names.sort_unstable();
    names.dedup();
    // Method names are tokens (RFC 9110), which are valid in a header value.
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use poem::http::StatusCode;
    use poem::{Endpoint as _, RouteMethod, handler};

    #[handler]
    fn answer(method: Method) -> String {
        format!("answered {method}")
    }

    #[test]
    fn allow_lists_methods_once_in_order_with_head_for_get() {
        assert_eq!(allow_value(&[Method::POST, Method::GET]), "GET, HEAD, POST");
        assert_eq!(allow_value(&[Method::GET, Method::HEAD]), "GET, HEAD");
        assert_eq!(allow_value(&[Method::POST]), "POST");
        assert_eq!(get(answer).post(answer).allow(), "GET, HEAD, POST");
        assert_eq!(get(answer).get(answer).allow(), "GET, HEAD");
    }

    /// The path `/` answered by `methods`, as the service answers a page or
    /// an operation of the API's table.
    fn at_root(methods: Methods) -> ExactPath {
        ExactPath::new("/", methods)
    }

    /// What poem's `RouteMethod` answers, `Methods` answers too (status,
    /// body), and it adds `Allow` to each 405, listing exactly the methods
    /// that did not answer 405.
    #[tokio::test]
    async fn it_answers_as_route_method_does_and_names_the_allowed_methods() {
        let tried = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
        ];
        let cases: Vec<(Methods, RouteMethod)> = vec![
            (get(answer), poem::get(answer)),
            (get(answer).post(answer), poem::get(answer).post(answer)),
            (Methods::default().post(answer), poem::post(answer)),
            (get(answer).head(answer), poem::get(answer).head(answer)),
        ];
        for (ours, theirs) in cases {
            let ours = at_root(ours);
            let mut accepted = Vec::new();
            for method in &tried {
                let request = || Request::builder().method(method.clone()).finish();
                let (a, b) = (ours.call(request()).await, theirs.call(request()).await);
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.status(), b.status(), "{method}");
                        let (a, b) = (a.into_body(), b.into_body());
                        assert_eq!(
                            a.into_string().await.unwrap(),
                            b.into_string().await.unwrap(),
                            "{method}"
                        );
                        accepted.push(method.clone());
                    }
                    (Err(a), Err(b)) => {
                        assert_eq!(a.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
                        assert_eq!(a.status(), b.status(), "{method}");
                        let allow = a.data::<AllowHeader>().expect("an Allow header on 405");
                        assert_eq!(&allow.0, ours.methods.allow());
                    }
                    (a, b) => panic!("{method}: ours {:?}, poem's {:?}", a.is_ok(), b.is_ok()),
                }
            }
            assert_eq!(
                *ours.methods.allow(),
                allow_value(&accepted),
                "{:?}",
                ours.methods
            );
        }
    }

    #[tokio::test]
    async fn without_head_refuses_head_names_only_the_rest_and_keeps_its_flag() {
        for ours in [
            get(answer).without_head(),
            get(answer).without_head().post(answer),
        ] {
            let ours = at_root(ours);
            let head = ours
                .call(Request::builder().method(Method::HEAD).finish())
                .await;
            let err = head.expect_err("HEAD is refused");
            assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
            let allow = &err.data::<AllowHeader>().unwrap().0;
            assert!(!allow.to_str().unwrap().contains("HEAD"), "{allow:?}");
            assert_eq!(allow, ours.methods.allow());
            let got = ours.call(Request::builder().finish()).await.unwrap();
            assert_eq!(got.into_body().into_string().await.unwrap(), "answered GET");
        }
        assert_eq!(get(answer).without_head().allow(), "GET");
        assert_eq!(get(answer).without_head().post(answer).allow(), "GET, POST");
        // A HEAD endpoint of its own still answers.
        let own = get(answer).head(answer).without_head();
        assert_eq!(own.allow(), "GET, HEAD");
        let head = at_root(own)
            .call(Request::builder().method(Method::HEAD).finish())
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }
}
