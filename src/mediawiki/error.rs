//! What can go wrong when talking to the wiki, as one enum. Messages name
//! the problem and keep the wiki's own words; none carries a secret.

use super::jwt::JwtError;

/// Longest wiki message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// A failed call to the wiki.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The wiki refused the request. It says so with HTTP 200, either as a
    /// body starting `Error: ` or as a JSON error object.
    #[error("the wiki refused the request: {message}")]
    Wiki {
        /// The message key or API error code, when the wiki gave one
        /// (`mwoauthdatastore-request-token-not-found`, `E004`, ...).
        code: Option<String>,
        /// The wiki's message, unescaped, for the user.
        message: String,
    },
    /// No connection could be made (DNS, refused, TLS, reset).
    #[error("could not reach the wiki: {0}")]
    Unreachable(String),
    /// The wiki did not answer in time.
    #[error("the wiki did not answer in time")]
    Timeout,
    /// The wiki answered with an HTTP status other than 200 (redirects are
    /// never followed on signed requests).
    #[error("the wiki answered with HTTP status {0}")]
    Status(u16),
    /// The answer was larger than the client accepts.
    #[error("the wiki's answer is larger than {limit} bytes")]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
    /// The answer could not be understood.
    #[error("the wiki's answer could not be understood: {0}")]
    BadResponse(&'static str),
    /// A token answer lacked the token or its secret.
    #[error("the wiki's token answer is unusable: {0}")]
    BadToken(&'static str),
    /// The identity JWT failed a check.
    #[error("the identity from the wiki failed a check: {0}")]
    Identity(#[from] JwtError),
}

impl Error {
    /// Whether the wiki said the request token is unknown, expired or
    /// already used (E004, E009): the user should simply start again.
    pub fn is_stale_request_token(&self) -> bool {
        match self {
            Error::Wiki { code, message } => {
                let code = code.as_deref().unwrap_or("");
                matches!(
                    code,
                    "mwoauthdatastore-request-token-not-found"
                        | "mwoauthdatastore-request-token-already-used"
                        | "E004"
                        | "E009"
                ) || message.contains("E004")
                    || message.contains("E009")
            }
            _ => false,
        }
    }

    /// Maps a transport error, without its URL.
    pub(crate) fn from_transport(err: reqwest::Error) -> Error {
        let err = err.without_url();
        if err.is_timeout() {
            Error::Timeout
        } else {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            truncate(&mut text);
            Error::Unreachable(text)
        }
    }

    /// Maps an error while the body of an answer is read: the wiki was
    /// reached and began to answer, so unless time ran out, the answer broke
    /// off (a truncated body is a bad answer, not an unreachable wiki).
    pub(crate) fn from_body_read(err: reqwest::Error) -> Error {
        if err.is_timeout() {
            Error::Timeout
        } else {
            Error::BadResponse("the answer broke off before its end")
        }
    }

    /// Recognises the wiki's two error forms in a body it sent with HTTP 200.
    #[doc(hidden)]
    pub fn from_body(body: &str) -> Option<Error> {
        let trimmed = body.trim_start();
        if let Some(rest) = trimmed.strip_prefix("Error:") {
            let mut message = plain_text(&unescape_html(rest.trim()));
            truncate(&mut message);
            let code = error_number(&message);
            return Some(Error::Wiki { code, message });
        }
        if !trimmed.starts_with('{') {
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let error = value.get("error")?;
        let (code, message) = match error {
            // Special:OAuth: {"error": "<message key>", "message": "<text>"}
            serde_json::Value::String(key) => (
                Some(key.clone()),
                value
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or(key)
                    .to_owned(),
            ),
            // api.php: {"error": {"code": "...", "info": "..."}}
            serde_json::Value::Object(obj) => {
                let code = obj.get("code").and_then(|c| c.as_str()).map(str::to_owned);
                let info = obj
                    .get("info")
                    .and_then(|i| i.as_str())
                    .or(code.as_deref())
                    .unwrap_or("unknown error")
                    .to_owned();
                (code, info)
            }
            _ => return None,
        };
        let mut message = plain_text(&message);
        truncate(&mut message);
        let code = code.or_else(|| error_number(&message));
        Some(Error::Wiki { code, message })
    }
}

/// The `E0xx` number that Extension:OAuth puts in its messages.
fn error_number(message: &str) -> Option<String> {
    let bytes = message.as_bytes();
    bytes.windows(4).enumerate().find_map(|(i, w)| {
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let after_ok = bytes.get(i + 4).is_none_or(|b| !b.is_ascii_alphanumeric());
        (w[0] == b'E' && w[1..].iter().all(u8::is_ascii_digit) && before_ok && after_ok)
            .then(|| String::from_utf8_lossy(w).into_owned())
    })
}

fn truncate(text: &mut String) {
    if let Some((i, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
        text.truncate(i);
        text.push('…');
    }
}

/// The text of a message that may carry HTML tags, on one line.
fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            c => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Undoes PHP's `htmlspecialchars` (the raw error form is escaped).
fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_text_error_form_is_recognised_and_unescaped() {
        let err = Error::from_body(
            "Error: Sorry, something went wrong &amp; more. OAuth token not found, E004",
        )
        .unwrap();
        match &err {
            Error::Wiki { code, message } => {
                assert_eq!(code.as_deref(), Some("E004"));
                assert!(message.starts_with("Sorry, something went wrong & more."));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_stale_request_token());
    }

    #[test]
    fn the_json_error_forms_are_recognised() {
        let err = Error::from_body(
            r#"{"error":"mwoauthdatastore-request-token-already-used","message":"Already used"}"#,
        )
        .unwrap();
        assert!(err.is_stale_request_token());
        let api = Error::from_body(
            r#"{"error":{"code":"mwoauth-invalid-authorization","info":"The authorization headers in your request are not valid: Invalid signature"}}"#,
        )
        .unwrap();
        assert!(
            matches!(&api, Error::Wiki { code: Some(c), .. } if c == "mwoauth-invalid-authorization")
        );
        assert!(!api.is_stale_request_token());
    }

    #[test]
    fn ordinary_answers_are_not_errors() {
        assert!(Error::from_body("oauth_token=a&oauth_token_secret=b").is_none());
        assert!(Error::from_body(r#"{"query":{"userinfo":{}}}"#).is_none());
        assert!(Error::from_body("eyJhbGciOiJIUzI1NiJ9.e30.sig").is_none());
    }

    #[test]
    fn markup_in_the_message_is_dropped() {
        let err = Error::from_body(
            "Error: Sorry.\n\n&lt;span class=&quot;plainlinks&quot;&gt;OAuth token not found, \
             [https://www.mediawiki.org/wiki/Help:OAuth/Errors#E004 E004]&lt;/span&gt;",
        )
        .unwrap();
        let Error::Wiki { code, message } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(code.as_deref(), Some("E004"));
        assert_eq!(
            message,
            "Sorry. OAuth token not found, [https://www.mediawiki.org/wiki/Help:OAuth/Errors#E004 E004]"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let err = Error::from_body(&format!("Error: {}", "x".repeat(5000))).unwrap();
        assert!(err.to_string().chars().count() < 600);
    }
}
