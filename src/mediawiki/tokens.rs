//! Credentials: the consumer, request tokens and access tokens. Their
//! secrets are [`SecretString`]s; `Debug` never shows them. They serialise
//! (secret included) only so that the web layer can keep them in its
//! encrypted session cookie.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The OAuth consumer registered on the wiki.
#[derive(Clone)]
pub struct Consumer {
    /// The consumer key: public, sent with every signed request.
    pub key: String,
    /// The consumer secret: signs requests and the identity JWT.
    pub secret: SecretString,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Shows the first characters of a token key: enough to tell tokens apart
/// in a debug print, not enough to use one.
fn abbreviated(key: &str) -> String {
    let head: String = key.chars().take(6).collect();
    format!("{head}…")
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            key: String,
            secret: SecretString,
        }

        impl $name {
            /// A token from the wiki's answer.
            pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
                Self {
                    key: key.into(),
                    secret: SecretString::from(secret.into()),
                }
            }

            /// The token (`oauth_token`).
            pub fn key(&self) -> &str {
                &self.key
            }

            /// The token secret, for signing.
            pub fn secret(&self) -> &SecretString {
                &self.secret
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("key", &abbreviated(&self.key))
                    .field("secret", &"[redacted]")
                    .finish()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.key == other.key
                    && self.secret.expose_secret() == other.secret.expose_secret()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                Stored {
                    key: &self.key,
                    secret: self.secret.expose_secret(),
                }
                .serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let owned = StoredOwned::deserialize(deserializer)?;
                Ok(Self::new(owned.key, owned.secret))
            }
        }
    };
}

#[derive(Serialize)]
struct Stored<'a> {
    key: &'a str,
    secret: &'a str,
}

#[derive(Deserialize)]
struct StoredOwned {
    key: String,
    secret: String,
}

token_type!(
    /// A request token: the temporary credentials of a login in progress.
    /// Its key travels in the user's browser; its secret must not.
    RequestToken
);

token_type!(
    /// An access token: what lets the tool act as the user on the wiki.
    AccessToken
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret_nor_a_whole_key() {
        let token = AccessToken::new("0123456789abcdef", "very-secret-value");
        let debug = format!("{token:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        let consumer = Consumer {
            key: "ck".into(),
            secret: SecretString::from("consumer-secret-value"),
        };
        assert!(!format!("{consumer:?}").contains("consumer-secret-value"));
    }

    #[test]
    fn tokens_survive_a_round_trip_through_json() {
        let token = RequestToken::new("k", "s");
        let json = serde_json::to_string(&token).unwrap();
        let back: RequestToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, token);
    }
}
