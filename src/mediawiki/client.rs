//! The HTTP side: signing, sending, bounded reading and parsing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use url::Url;

use super::error::Error;
use super::jwt::{self, Expected, Identity};
use super::tokens::{AccessToken, Consumer, RequestToken};

/// Largest answer read from the wiki, in bytes: anything larger is refused
/// without being buffered.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Pause before the one retry of a request that could not connect.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A client for one wiki and one consumer. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    index: Url,
    api: Url,
    wiki_host: String,
    consumer: Arc<Consumer>,
    max_body: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("index", &self.index.as_str())
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The logged-in user's account, from `action=query&meta=userinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// Local user id.
    #[serde(default)]
    pub id: u64,
    /// User name.
    pub name: String,
    /// Number of edits.
    #[serde(default)]
    pub editcount: u64,
    /// User groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// User rights.
    #[serde(default)]
    pub rights: Vec<String>,
    /// Registration time (ISO 8601), when known.
    #[serde(default)]
    pub registration: Option<String>,
}

/// Which credentials sign a request, besides the consumer's.
enum Signer<'a> {
    Consumer {
        callback: &'a str,
    },
    Request {
        token: &'a RequestToken,
        verifier: &'a str,
    },
    Access(&'a AccessToken),
}

/// A signed request, ready to send.
struct Signed {
    url: String,
    authorization: String,
    nonce: String,
}

impl Client {
    /// A client for the wiki whose `index.php` is `index`; the Action API is
    /// the `api.php` beside it. `http` is the service's shared client (it
    /// must not follow redirects).
    pub fn new(http: reqwest::Client, index: Url, consumer: Consumer) -> Result<Client, Error> {
        let api = index
            .join("api.php")
            .map_err(|_| Error::BadResponse("the wiki URL has no place for api.php"))?;
        let wiki_host = index
            .host_str()
            .ok_or(Error::BadResponse("the wiki URL has no host"))?
            .to_ascii_lowercase();
        let mut index = index;
        index.set_query(None);
        index.set_fragment(None);
        Ok(Client {
            http,
            index,
            api,
            wiki_host,
            consumer: Arc::new(consumer),
            max_body: MAX_BODY_BYTES,
        })
    }

    /// Changes the largest answer accepted.
    pub fn with_max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// The host of the wiki, which the identity's `iss` must name.
    pub fn wiki_host(&self) -> &str {
        &self.wiki_host
    }

    /// Step 1: asks for a request token. `callback` is `oob` or a URL the
    /// consumer's registration accepts.
    pub async fn initiate(&self, callback: &str) -> Result<RequestToken, Error> {
        let body = self
            .call(
                Method::POST,
                &self.index,
                &[("title", "Special:OAuth/initiate")],
                Signer::Consumer { callback },
            )
            .await?
            .0;
        let (key, secret) = parse_token(&body)?;
        Ok(RequestToken::new(key, secret))
    }

    /// Where to send the user to approve `token`.
    pub fn authorize_url(&self, token: &RequestToken) -> Url {
        let mut url = self.index.clone();
        url.query_pairs_mut()
            .append_pair("title", "Special:OAuth/authenticate")
            .append_pair("oauth_token", token.key())
            .append_pair("oauth_consumer_key", &self.consumer.key);
        url
    }

    /// Step 2: trades the approved request token and the verifier for an
    /// access token.
    pub async fn exchange(
        &self,
        token: &RequestToken,
        verifier: &str,
    ) -> Result<AccessToken, Error> {
        let body = self
            .call(
                Method::POST,
                &self.index,
                &[("title", "Special:OAuth/token")],
                Signer::Request { token, verifier },
            )
            .await?
            .0;
        let (key, secret) = parse_token(&body)?;
        Ok(AccessToken::new(key, secret))
    }

    /// Step 3: asks who the user is, and verifies the wiki's signed answer.
    pub async fn identify(&self, token: &AccessToken) -> Result<Identity, Error> {
        let (body, nonce) = self
            .call(
                Method::POST,
                &self.index,
                &[("title", "Special:OAuth/identify")],
                Signer::Access(token),
            )
            .await?;
        let jwt = body.trim().trim_matches('"');
        let expected = Expected {
            audience: &self.consumer.key,
            issuer_host: &self.wiki_host,
            nonce: &nonce,
            now: unix_now(),
        };
        Ok(jwt::verify(
            jwt,
            self.consumer.secret.expose_secret().as_bytes(),
            &expected,
        )?)
    }

    /// A GET to the Action API as the user; `format=json&formatversion=2`
    /// are added. Returns the decoded answer, or the API's error.
    pub async fn api_get(
        &self,
        token: &AccessToken,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, Error> {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        all.push(("format", "json"));
        all.push(("formatversion", "2"));
        let body = self
            .call(Method::GET, &self.api, &all, Signer::Access(token))
            .await?
            .0;
        serde_json::from_str(&body).map_err(|_| Error::BadResponse("the API answer is not JSON"))
    }

    /// The user's account as the wiki sees it now: edit count, groups,
    /// rights and registration date.
    pub async fn user_info(&self, token: &AccessToken) -> Result<UserInfo, Error> {
        let value = self
            .api_get(
                token,
                &[
                    ("action", "query"),
                    ("meta", "userinfo"),
                    ("uiprop", "editcount|groups|rights|registration"),
                ],
            )
            .await?;
        let info = value
            .get("query")
            .and_then(|q| q.get("userinfo"))
            .ok_or(Error::BadResponse("the API answer has no userinfo"))?;
        if info
            .get("anon")
            .is_some_and(|a| a.as_bool() == Some(true) || a.is_string())
        {
            return Err(Error::BadResponse(
                "the wiki answered as for an anonymous user: it ignored the authorization",
            ));
        }
        UserInfo::deserialize(info)
            .map_err(|_| Error::BadResponse("the userinfo is not as expected"))
    }

    /// Signs `params` for `base` (the query is signed, never part of the
    /// signed base URI) with fresh nonce and timestamp.
    fn sign(
        &self,
        method: &Method,
        base: &Url,
        params: &[(&str, &str)],
        signer: &Signer<'_>,
    ) -> Signed {
        let list = oauth1_request::ParameterList::new(params.to_vec());
        let consumer = oauth1_request::Credentials::new(
            self.consumer.key.as_str(),
            self.consumer.secret.expose_secret(),
        );
        let mut builder =
            oauth1_request::Builder::<_, _, &str>::new(consumer, oauth1_request::HmacSha1::new());
        match signer {
            Signer::Consumer { callback } => {
                builder.callback(*callback);
            }
            Signer::Request { token, verifier } => {
                builder
                    .token(oauth1_request::Credentials::new(
                        token.key(),
                        token.secret().expose_secret(),
                    ))
                    .verifier(*verifier);
            }
            Signer::Access(token) => {
                builder.token(oauth1_request::Credentials::new(
                    token.key(),
                    token.secret().expose_secret(),
                ));
            }
        }
        let base_uri = base.as_str();
        let authorization = builder.authorize(method.as_str(), base_uri, &list);
        let nonce = header_param(&authorization, "oauth_nonce").unwrap_or_default();
        let url = oauth1_request::to_query(base_uri.to_owned(), &list);
        Signed {
            url,
            authorization,
            nonce,
        }
    }

    /// The secrets that sign a request: the wiki must not echo them, and
    /// if it does, they go no further.
    fn secrets<'a>(&'a self, signer: &Signer<'a>) -> Vec<&'a str> {
        let mut secrets = vec![self.consumer.secret.expose_secret()];
        match signer {
            Signer::Consumer { .. } => {}
            Signer::Request { token, verifier } => {
                secrets.push(token.secret().expose_secret());
                secrets.push(verifier);
            }
            Signer::Access(token) => secrets.push(token.secret().expose_secret()),
        }
        secrets
    }

    /// Sends a signed request, retrying once (signed afresh) if no
    /// connection could be made, and returns the body and the nonce of the
    /// attempt that was answered. Wiki errors sent with HTTP 200 become
    /// [`Error::Wiki`].
    async fn call(
        &self,
        method: Method,
        base: &Url,
        params: &[(&str, &str)],
        signer: Signer<'_>,
    ) -> Result<(String, String), Error> {
        let mut retried = false;
        loop {
            let signed = self.sign(&method, base, params, &signer);
            let mut request = self
                .http
                .request(method.clone(), &signed.url)
                .header(AUTHORIZATION, &signed.authorization);
            if method == Method::POST {
                request = request.header(CONTENT_LENGTH, "0");
            }
            let sent = request.send().await;
            match sent {
                Ok(response) => {
                    let body = self.read(response).await?;
                    if Error::from_body(&body).is_some() {
                        // The message is shown to the user and logged: read
                        // it again once every secret it echoes is gone.
                        let clean = redact(&body, &self.secrets(&signer));
                        return Err(Error::from_body(&clean).unwrap_or(Error::BadResponse(
                            "the wiki's error could not be cleared of secrets",
                        )));
                    }
                    return Ok((body, signed.nonce));
                }
                Err(e) if e.is_connect() && !retried => {
                    retried = true;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(Error::from_transport(e)),
            }
        }
    }

    /// Reads a 200 answer's body, refusing it as soon as it outgrows the bound.
    async fn read(&self, mut response: reqwest::Response) -> Result<String, Error> {
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(Error::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(Error::TooLarge {
                limit: self.max_body,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Error::from_body_read)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(Error::TooLarge {
                    limit: self.max_body,
                });
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| Error::BadResponse("the answer is not UTF-8 text"))
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A parameter's value in an `Authorization: OAuth k="v", ...` header.
fn header_param(header: &str, name: &str) -> Option<String> {
    let rest = header.strip_prefix("OAuth ")?;
    rest.split(',').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| percent_decode(v.trim_matches('"')))
    })
}

/// Shortest secret redacted: shorter ones would garble the message, and
/// no credential of the wiki's is that short.
const MIN_REDACTED_BYTES: usize = 8;

/// `text` without `secrets`, raw, HTML-escaped, or percent-encoded once or
/// twice: MediaWiki's message for a refused signature echoes the signature
/// base string, which holds the verifier encoded twice.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_BYTES) {
        let once = oauth_encode(secret);
        let twice = oauth_encode(&once);
        let html = secret
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#039;");
        for form in [twice, once, html, (*secret).to_owned()] {
            text = text.replace(&form, "[redacted]");
        }
    }
    text
}

/// Percent-encoding as OAuth 1.0a (RFC 5849 §3.6) does it.
fn oauth_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(value as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token and secret of an initiate or token answer: form-encoded by
/// default, JSON with `format=json`.
pub fn parse_token(body: &str) -> Result<(String, String), Error> {
    let body = body.trim();
    let (mut key, mut secret) = (None, None);
    if body.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|_| Error::BadResponse("the token answer is not valid JSON"))?;
        let field = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| value.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
        };
        key = field(["oauth_token", "key"]);
        secret = field(["oauth_token_secret", "secret"]);
    } else {
        for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
            match k.as_ref() {
                "oauth_token" => key = Some(v.into_owned()),
                "oauth_token_secret" => secret = Some(v.into_owned()),
                _ => {}
            }
        }
    }
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or(Error::BadToken("no oauth_token"))?;
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(Error::BadToken("no oauth_token_secret"))?;
    if key.len() > 256 || secret.len() > 256 {
        return Err(Error::BadToken("the token is implausibly long"));
    }
    Ok((key, secret))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client() -> Client {
        crate::install_crypto_provider();
        Client::new(
            reqwest::Client::new(),
            Url::parse("https://meta.wikimedia.org/w/index.php").unwrap(),
            Consumer {
                key: "ck".into(),
                secret: "consumer-secret-value".to_owned().into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn both_token_answer_forms_are_understood() {
        assert_eq!(
            parse_token("oauth_token=abc&oauth_token_secret=d%2Bf&oauth_callback_confirmed=true")
                .unwrap(),
            ("abc".to_owned(), "d+f".to_owned())
        );
        assert_eq!(
            parse_token(r#"{"key":"abc","secret":"def"}"#).unwrap(),
            ("abc".to_owned(), "def".to_owned())
        );
        assert!(matches!(
            parse_token("oauth_token=abc"),
            Err(Error::BadToken(_))
        ));
        assert!(matches!(parse_token("<html>"), Err(Error::BadToken(_))));
        assert!(matches!(parse_token("{nope"), Err(Error::BadResponse(_))));
    }

    #[test]
    fn the_api_sits_beside_index_php() {
        assert_eq!(
            client().api.as_str(),
            "https://meta.wikimedia.org/w/api.php"
        );
        assert_eq!(client().wiki_host(), "meta.wikimedia.org");
    }

    #[test]
    fn query_parameters_are_signed_but_not_in_the_base_uri_and_every_signature_is_fresh() {
        let c = client();
        let a = c.sign(
            &Method::POST,
            &c.index,
            &[("title", "Special:OAuth/initiate")],
            &Signer::Consumer { callback: "oob" },
        );
        let b = c.sign(
            &Method::POST,
            &c.index,
            &[("title", "Special:OAuth/initiate")],
            &Signer::Consumer { callback: "oob" },
        );
        assert_eq!(
            a.url,
            "https://meta.wikimedia.org/w/index.php?title=Special%3AOAuth%2Finitiate"
        );
        assert!(a.authorization.starts_with("OAuth "));
        assert!(a.authorization.contains("oauth_callback=\"oob\""));
        assert!(!a.nonce.is_empty());
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.authorization, b.authorization);
        assert!(
            !a.authorization.contains("consumer-secret-value"),
            "the secret is not in the header"
        );
    }

    #[test]
    fn the_authorize_url_names_the_token_and_the_consumer() {
        let c = client();
        let url = c.authorize_url(&RequestToken::new("tok", "sec"));
        assert_eq!(
            url.as_str(),
            "https://meta.wikimedia.org/w/index.php?title=Special%3AOAuth%2Fauthenticate&oauth_token=tok&oauth_consumer_key=ck"
        );
    }

    #[test]
    fn secrets_the_wiki_echoes_are_redacted_in_every_form() {
        let verifier = "v3rifier+/=&\"<x>%";
        let body = format!(
            "Error: Invalid signature; base string: POST&x&oauth_verifier%3D{}, raw {}, \
             html {}, short abc",
            oauth_encode(&oauth_encode(verifier)),
            verifier,
            verifier
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
        );
        let clean = redact(&body, &[verifier, "abc"]);
        assert!(!clean.contains("v3rifier"), "{clean}");
        assert_eq!(clean.matches("[redacted]").count(), 3, "{clean}");
        assert!(clean.ends_with("short abc"), "short values are left alone");
    }

    #[test]
    fn header_parameters_are_read_back_decoded() {
        let h = r#"OAuth oauth_consumer_key="ck",oauth_nonce="a%2Db",oauth_signature="x""#;
        assert_eq!(header_param(h, "oauth_nonce").as_deref(), Some("a-b"));
        assert_eq!(header_param(h, "missing"), None);
    }
}
