//! Every parser of untrusted bytes, in one place, for the fuzz targets in
//! `tests/fuzz` and for the test suite that replays their corpus. Not an
//! API: hidden from the docs and free to change. Nothing here is new code;
//! these are the functions the service itself calls.

pub use crate::mediawiki::{Error as WikiError, Expected, parse_token, verify_identity};
pub use crate::web::auth::safe_next;
pub use crate::web::session::{COOKIE_NAME, SessionData, SessionMiddleware, is_https};
