//! The MediaWiki client: OAuth 1.0a login (`initiate`, `exchange`,
//! `identify`) and Action API calls made as the logged-in user.
//!
//! It owns request signing (HMAC-SHA1 through `oauth1-request`), the
//! verification of the identity JWT, bounded reads of the wiki's answers and
//! the typed errors. It never imports the web framework, never logs, and
//! never puts a secret in an error, a `Debug` or a `Display`.

mod client;
mod error;
mod jwt;
mod tokens;

pub use client::{Client, MAX_BODY_BYTES, UserInfo, percent_decode};
pub use error::Error;
pub use jwt::{Expected, Identity, JWT_LEEWAY_SECONDS, JwtError, MAX_IDENTITY_AGE_SECONDS};
pub use tokens::{AccessToken, Consumer, RequestToken};

// Parsers of the wiki's answers, public only for the fuzz targets
// (`hello_oauth::fuzzing`).
#[doc(hidden)]
pub use client::parse_token;
#[doc(hidden)]
pub use jwt::verify as verify_identity;
