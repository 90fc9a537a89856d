//! Response hardening, applied to every response (error pages included):
//! a strict Content-Security-Policy, no framing, no MIME sniffing, no
//! Referer leaving the site (the OAuth callback URL carries a verifier), and
//! `no-store` unless a handler chose a cache policy itself.

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

/// Adds the headers to a response about to be sent; `https` when the
/// request came over https (then browsers are told to keep to it).
pub fn apply(headers: &mut HeaderMap, https: bool) {
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
