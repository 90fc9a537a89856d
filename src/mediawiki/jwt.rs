//! Verification of the identity JWT that `Special:OAuth/identify` returns:
//! HS256 only, keyed with the consumer secret, checked as `mwoauth` does
//! (signature in constant time, audience, issuer host, issue time, expiry,
//! and the nonce of the request that asked for it).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Clock difference tolerated between the wiki and this tool, in seconds.
pub const JWT_LEEWAY_SECONDS: u64 = 10;
/// Oldest identity accepted, in seconds: the same window as OAuth timestamps.
pub const MAX_IDENTITY_AGE_SECONDS: u64 = 300;
/// Longest JWT accepted, in bytes.
const MAX_JWT_BYTES: usize = 64 * 1024;

/// base64url, with or without padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an identity JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("the identity token is malformed ({0})")]
    Malformed(&'static str),
    /// An algorithm other than HS256 (`none` included).
    #[error("the identity token uses the algorithm {0:?}, not HS256")]
    Algorithm(String),
    /// The HMAC does not match the consumer secret.
    #[error("the identity token's signature is wrong")]
    Signature,
    /// `aud` is not this tool's consumer key.
    #[error("the identity token is for another application (wrong audience)")]
    Audience,
    /// The host of `iss` is not the configured wiki's.
    #[error("the identity token comes from another wiki (issuer {0:?})")]
    Issuer(String),
    /// `iat` is in the future.
    #[error("the identity token was issued in the future")]
    IssuedInFuture,
    /// `iat` is too far in the past.
    #[error("the identity token is stale (issued too long ago)")]
    Stale,
    /// `exp` has passed.
    #[error("the identity token has expired")]
    Expired,
    /// `nonce` is not the one this request sent: a replay.
    #[error("the identity token answers another request (nonce mismatch: replay detected)")]
    Nonce,
    /// A claim the login needs is absent or of the wrong type.
    #[error("the identity token lacks the claim {0:?}")]
    MissingClaim(&'static str),
}

/// What the identity must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The consumer key (`aud`).
    pub audience: &'a str,
    /// The host of the configured wiki (`iss`).
    pub issuer_host: &'a str,
    /// The `oauth_nonce` of the identify request.
    pub nonce: &'a str,
    /// The current time, in seconds since the Unix epoch.
    pub now: u64,
}

/// The user, as the wiki vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The central user id (`sub`), as a string.
    pub sub: String,
    /// The user name.
    pub username: String,
    /// Number of edits.
    pub editcount: u64,
    /// Whether the e-mail address is confirmed.
    pub confirmed_email: bool,
    /// Whether the user is blocked.
    pub blocked: bool,
    /// Registration time, `YYYYMMDDHHMMSS`, when known.
    pub registered: Option<String>,
    /// User groups.
    pub groups: Vec<String>,
    /// User rights.
    pub rights: Vec<String>,
    /// Grants given to this consumer.
    pub grants: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
}

/// A number or a string: `sub` is one or the other depending on the wiki's version.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Unsigned(u64),
    Signed(i64),
}

/// `aud` may be one string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<OneOrMany>,
    iat: Option<f64>,
    exp: Option<f64>,
    nonce: Option<String>,
    sub: Option<StringOrNumber>,
    username: Option<String>,
    #[serde(default)]
    editcount: Option<f64>,
    #[serde(default)]
    confirmed_email: Option<bool>,
    #[serde(default)]
    blocked: Option<bool>,
    #[serde(default)]
    registered: Option<serde_json::Value>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    rights: Option<Vec<String>>,
    #[serde(default)]
    grants: Option<Vec<String>>,
}

/// Verifies `token` with `secret` and returns the identity it carries.
pub fn verify(token: &str, secret: &[u8], expected: &Expected<'_>) -> Result<Identity, JwtError> {
    let token = token.trim();
    if token.len() > MAX_JWT_BYTES {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three parts"));
    };

    let header_json = B64
        .decode(header_b64)
        .map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| JwtError::Malformed("header is not JSON"))?;
    match header.alg.as_deref() {
        Some("HS256") => {}
        Some(other) => return Err(JwtError::Algorithm(other.chars().take(20).collect())),
        None => return Err(JwtError::Algorithm(String::new())),
    }

    let signature = B64
        .decode(signature_b64)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::Signature)?;
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(payload_b64.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::Signature)?;

    let payload = B64
        .decode(payload_b64)
        .map_err(|_| JwtError::Malformed("payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| JwtError::Malformed("payload is not the expected JSON"))?;

    let audience_ok = match &claims.aud {
        Some(OneOrMany::One(aud)) => aud == expected.audience,
        Some(OneOrMany::Many(auds)) => auds.iter().any(|a| a == expected.audience),
        None => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience);
    }

    let iss = claims.iss.as_deref().ok_or(JwtError::MissingClaim("iss"))?;
    let iss_host = url::Url::parse(iss)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if iss_host.as_deref() != Some(&expected.issuer_host.to_ascii_lowercase()) {
        return Err(JwtError::Issuer(iss.chars().take(100).collect()));
    }

    let now = expected.now as f64;
    let leeway = JWT_LEEWAY_SECONDS as f64;
    let iat = claims.iat.ok_or(JwtError::MissingClaim("iat"))?;
    if iat > now + leeway {
        return Err(JwtError::IssuedInFuture);
    }
    if iat + (MAX_IDENTITY_AGE_SECONDS as f64) + leeway < now {
        return Err(JwtError::Stale);
    }
    let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
    if exp + leeway <= now {
        return Err(JwtError::Expired);
    }

    let nonce = claims
        .nonce
        .as_deref()
        .ok_or(JwtError::MissingClaim("nonce"))?;
    if !bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())) {
        return Err(JwtError::Nonce);
    }

    let sub = match claims.sub {
        Some(StringOrNumber::String(s)) if !s.is_empty() => s,
        Some(StringOrNumber::Unsigned(n)) => n.to_string(),
        Some(StringOrNumber::Signed(n)) => n.to_string(),
        _ => return Err(JwtError::MissingClaim("sub")),
    };
    let username = claims
        .username
        .filter(|u| !u.trim().is_empty())
        .ok_or(JwtError::MissingClaim("username"))?;
    let registered = match claims.registered {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };

    Ok(Identity {
        sub,
        username,
        editcount: claims
            .editcount
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map_or(0, |n| n as u64),
        confirmed_email: claims.confirmed_email.unwrap_or(false),
        blocked: claims.blocked.unwrap_or(false),
        registered,
        groups: claims.groups.unwrap_or_default(),
        rights: claims.rights.unwrap_or_default(),
        grants: claims.grants.unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"consumer-secret";
    const NOW: u64 = 1_700_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            audience: "consumer-key",
            issuer_host: "meta.wikimedia.org",
            nonce: "n0nce",
            now: NOW,
        }
    }

    fn claims() -> serde_json::Value {
        json!({
            "iss": "https://meta.wikimedia.org",
            "aud": "consumer-key",
            "iat": NOW,
            "exp": NOW + 100,
            "nonce": "n0nce",
            "sub": "12345",
            "username": "Example",
            "editcount": 42,
            "confirmed_email": true,
            "blocked": false,
            "registered": "20200101000000",
            "groups": ["*", "user", "autoconfirmed"],
            "rights": ["read", "edit"],
            "grants": ["mwoauth-authonly"],
        })
    }

    fn sign(header: &serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
        let h = B64.encode(header.to_string());
        let p = B64.encode(claims.to_string());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = B64.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{s}")
    }

    fn token(claims: &serde_json::Value) -> String {
        sign(&json!({"typ": "JWT", "alg": "HS256"}), claims, SECRET)
    }

    fn with(key: &str, value: serde_json::Value) -> String {
        let mut c = claims();
        c[key] = value;
        token(&c)
    }

    #[test]
    fn a_genuine_identity_is_accepted() {
        let id = verify(&token(&claims()), SECRET, &expected()).unwrap();
        assert_eq!(id.username, "Example");
        assert_eq!(id.sub, "12345");
        assert_eq!(id.editcount, 42);
        assert_eq!(id.groups, ["*", "user", "autoconfirmed"]);
        assert_eq!(id.registered.as_deref(), Some("20200101000000"));
        assert!(id.confirmed_email && !id.blocked);
    }

    #[test]
    fn a_numeric_sub_is_accepted_as_a_string() {
        let id = verify(&with("sub", json!(987)), SECRET, &expected()).unwrap();
        assert_eq!(id.sub, "987");
    }

    #[test]
    fn the_signature_must_be_made_with_the_consumer_secret() {
        let forged = sign(&json!({"alg": "HS256"}), &claims(), b"another-secret");
        assert_eq!(
            verify(&forged, SECRET, &expected()),
            Err(JwtError::Signature)
        );
        let mut tampered = token(&claims());
        tampered.pop();
        tampered.push('A');
        assert!(verify(&tampered, SECRET, &expected()).is_err());
    }

    #[test]
    fn only_hs256_is_accepted() {
        let none = format!(
            "{}.{}.",
            B64.encode(json!({"alg": "none"}).to_string()),
            B64.encode(claims().to_string())
        );
        assert_eq!(
            verify(&none, SECRET, &expected()),
            Err(JwtError::Algorithm("none".into()))
        );
        let hs512 = sign(&json!({"alg": "HS512"}), &claims(), SECRET);
        assert!(matches!(
            verify(&hs512, SECRET, &expected()),
            Err(JwtError::Algorithm(_))
        ));
    }

    #[test]
    fn audience_issuer_nonce_and_times_are_checked() {
        let e = expected();
        assert_eq!(
            verify(&with("aud", json!("other")), SECRET, &e),
            Err(JwtError::Audience)
        );
        assert_eq!(
            verify(&with("aud", json!(["x", "consumer-key"])), SECRET, &e).map(|i| i.sub),
            Ok("12345".to_owned())
        );
        assert!(matches!(
            verify(&with("iss", json!("https://evil.example")), SECRET, &e),
            Err(JwtError::Issuer(_))
        ));
        assert!(matches!(
            verify(
                &with("iss", json!("https://meta.wikimedia.org.evil.example")),
                SECRET,
                &e
            ),
            Err(JwtError::Issuer(_))
        ));
        assert!(
            verify(
                &with("iss", json!("https://META.wikimedia.org")),
                SECRET,
                &e
            )
            .is_ok()
        );
        assert_eq!(
            verify(&with("nonce", json!("other")), SECRET, &e),
            Err(JwtError::Nonce)
        );
        assert_eq!(
            verify(&with("iat", json!(NOW + 60)), SECRET, &e),
            Err(JwtError::IssuedInFuture)
        );
        assert!(
            verify(&with("iat", json!(NOW + 5)), SECRET, &e).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            verify(&with("iat", json!(NOW - 1000)), SECRET, &e),
            Err(JwtError::Stale)
        );
        assert_eq!(
            verify(&with("exp", json!(NOW - 11)), SECRET, &e),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn missing_claims_are_refused() {
        for claim in ["iss", "iat", "exp", "nonce", "sub", "username"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                verify(&token(&c), SECRET, &expected()),
                Err(JwtError::MissingClaim(claim)),
                "{claim}"
            );
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            verify(&token(&c), SECRET, &expected()),
            Err(JwtError::Audience)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for junk in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.??.**",
            "e30.e30.",
            "\u{1F980}.x.y",
        ] {
            assert!(verify(junk, SECRET, &expected()).is_err(), "{junk:?}");
        }
    }
}
