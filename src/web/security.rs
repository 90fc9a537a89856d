//! Response hardening, applied to every response (error pages included):
//! a strict Content-Security-Policy, no framing, no MIME sniffing, no
//! Referer leaving the site (the OAuth callback URL carries a verifier), and
//! `no-store` unless a handler chose a cache policy itself.

use std::sync::LazyLock;

use poem::http::{HeaderMap, HeaderName, HeaderValue, header};

/// The policy for every page: the tool's own styles and scripts only, forms
/// only to the tool itself, never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Names and values are checked once, at compile time (`from_static` in a
/// `const`): called per response, `HeaderValue::from_static` walks each
/// value, 300 bytes with the policy, on every request.
const STATIC_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("interest-cohort=(), camera=(), microphone=(), geolocation=()"),
    ),
];
const CSP_VALUE: HeaderValue = HeaderValue::from_static(CONTENT_SECURITY_POLICY);
/// `Cache-Control` for anything not meant to be kept (pages, errors).
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Whether the service's value of `name` replaces whatever a handler set.
fn forced(name: &HeaderName, https: bool) -> bool {
    STATIC_HEADERS.iter().any(|(n, _)| n == name)
        || (https && name == header::STRICT_TRANSPORT_SECURITY)
}

/// Every header this module adds, with the defaults (the policy, `no-store`)
/// in place: one map for http, one for https, built on first use.
///
/// A response starts from a clone of the right one and gets the handler's
/// headers put back on top. Eight `insert`s into the handler's map hashed
/// eight names and grew the map twice, on every request (2.9k instructions
/// of a 35k `/healthz` answer); the clone copies a prepared table
/// (docs/performance.md, "Hot-path choices").
static PROTOTYPES: LazyLock<[HeaderMap; 2]> = LazyLock::new(|| {
    let build = |https: bool| {
        let mut headers = HeaderMap::with_capacity(16);
        for (name, value) in STATIC_HEADERS {
            headers.insert(name, value);
        }
        headers.insert(header::CONTENT_SECURITY_POLICY, CSP_VALUE);
        headers.insert(header::CACHE_CONTROL, NO_STORE);
        if https {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
        }
        headers
    };
    [build(false), build(true)]
});

/// Adds the headers to a response about to be sent; `https` when the
/// request came over https (then browsers are told to keep to it).
///
/// The fixed headers (and HSTS over https) replace a handler's own; a
/// handler's `Content-Security-Policy` or `Cache-Control` replaces the
/// default; every other header of the handler is kept, with all its values.
pub fn apply(headers: &mut HeaderMap, https: bool) {
    let own = std::mem::replace(headers, PROTOTYPES[usize::from(https)].clone());
    // `into_iter` names a header at its first value only (`None` after).
    let mut current: Option<HeaderName> = None;
    for (name, value) in own {
        match name {
            Some(name) if forced(&name, https) => current = None,
            Some(name) => {
                headers.insert(&name, value);
                current = Some(name);
            }
            None => {
                if let Some(name) = &current {
                    headers.append(name, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `apply` did before the prototypes, one insert at a time: the
    /// reference the prototype version is held to.
    fn apply_by_inserts(headers: &mut HeaderMap, https: bool) {
        for (name, value) in STATIC_HEADERS {
            headers.insert(name, value);
        }
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(header::CONTENT_SECURITY_POLICY, CSP_VALUE);
        }
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, NO_STORE);
        }
        if https {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
        }
    }

    /// Each header name with its values in order, names sorted: the wire
    /// order of different names does not matter, that of one name's values does.
    fn normalised(headers: &HeaderMap) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut out: Vec<(String, Vec<Vec<u8>>)> = headers
            .keys()
            .map(|name| {
                let values = headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect();
                (name.as_str().to_owned(), values)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_prototypes_give_what_inserting_one_by_one_gave() {
        let v = HeaderValue::from_static;
        let cases: Vec<Vec<(HeaderName, HeaderValue)>> = vec![
            vec![],
            vec![(header::CONTENT_TYPE, v("application/json"))],
            vec![
                (header::CONTENT_TYPE, v("text/html")),
                (header::SET_COOKIE, v("a=1")),
                (header::SET_COOKIE, v("b=2")),
                (header::SET_COOKIE, v("c=3")),
                (header::VARY, v("cookie")),
            ],
            vec![(header::CACHE_CONTROL, v("public, max-age=3600"))],
            vec![(header::CONTENT_SECURITY_POLICY, v("default-src 'self'"))],
            vec![
                (header::X_FRAME_OPTIONS, v("ALLOWALL")),
                (header::X_FRAME_OPTIONS, v("SAMEORIGIN")),
                (header::REFERRER_POLICY, v("unsafe-url")),
                (header::ALLOW, v("GET, HEAD")),
            ],
            vec![
                (header::STRICT_TRANSPORT_SECURITY, v("max-age=1")),
                (header::RETRY_AFTER, v("5")),
            ],
        ];
        for case in cases {
            for https in [false, true] {
                let mut handler = HeaderMap::new();
                for (name, value) in &case {
                    handler.append(name, value.clone());
                }
                let mut expected = handler.clone();
                apply_by_inserts(&mut expected, https);
                let mut got = handler;
                apply(&mut got, https);
                assert_eq!(
                    normalised(&got),
                    normalised(&expected),
                    "{case:?}, https {https}"
                );
            }
        }
    }
}
