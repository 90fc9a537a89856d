//! The MediaWiki client as the web layer uses it: built from the
//! configuration, with every call to the wiki timed and counted in
//! `hello_oauth_wiki_call_duration_seconds` by step and outcome. Handlers
//! reach the wiki only through [`Wiki`], so no call goes uncounted, and the
//! mediawiki module stays free of metrics and of the web framework.

use std::future::Future;
use std::time::Instant;

use url::Url;

use super::AppState;
use crate::mediawiki::{self, AccessToken, Consumer, Error, Identity, RequestToken, UserInfo};
use crate::telemetry::metrics::Metrics;

/// A call to the wiki, as the `step` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `Special:OAuth/initiate`: a request token.
    Initiate,
    /// `Special:OAuth/token`: the access token.
    Token,
    /// `Special:OAuth/identify`: the signed identity.
    Identify,
    /// `api.php`, as the user.
    Api,
}

impl Step {
    /// The `step` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Initiate => "initiate",
            Step::Token => "token",
            Step::Identify => "identify",
            Step::Api => "api",
        }
    }
}

/// The `outcome` label value of a finished call.
pub fn outcome<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Wiki { .. }) => "refused",
        Err(Error::Status(_)) => "http_error",
        Err(Error::Timeout) => "timeout",
        Err(Error::Unreachable(_)) => "unreachable",
        Err(
            Error::TooLarge { .. }
            | Error::BadResponse(_)
            | Error::BadToken(_)
            | Error::Identity(_),
        ) => "invalid_response",
    }
}

/// The `outcome` of a call abandoned before it finished (the visitor went
/// away, or the request's deadline passed).
pub const CANCELLED: &str = "cancelled";

/// The wiki of this instance, with its calls counted.
#[derive(Debug)]
pub struct Wiki<'a> {
    client: mediawiki::Client,
    metrics: &'a Metrics,
}

impl<'a> Wiki<'a> {
    /// The wiki, when an OAuth consumer is configured.
    pub fn of(state: &'a AppState) -> Option<Wiki<'a>> {
        let consumer = state.config.consumer.as_ref()?;
        let client = mediawiki::Client::new(
            state.http.clone(),
            state.config.mwuri.clone(),
            Consumer {
                key: consumer.key.clone(),
                secret: consumer.secret.clone(),
            },
        )
        .ok()?;
        Some(Wiki {
            client,
            metrics: &state.metrics,
        })
    }

    /// Where to send the user to approve `token` (no call to the wiki).
    pub fn authorize_url(&self, token: &RequestToken) -> Url {
        self.client.authorize_url(token)
    }

    /// See [`mediawiki::Client::initiate`].
    pub async fn initiate(&self, callback: &str) -> Result<RequestToken, Error> {
        self.observe(Step::Initiate, self.client.initiate(callback))
            .await
    }

    /// See [`mediawiki::Client::exchange`].
    pub async fn exchange(
        &self,
        token: &RequestToken,
        verifier: &str,
    ) -> Result<AccessToken, Error> {
        self.observe(Step::Token, self.client.exchange(token, verifier))
            .await
    }

    /// See [`mediawiki::Client::identify`].
    pub async fn identify(&self, token: &AccessToken) -> Result<Identity, Error> {
        self.observe(Step::Identify, self.client.identify(token))
            .await
    }

    /// See [`mediawiki::Client::user_info`].
    pub async fn user_info(&self, token: &AccessToken) -> Result<UserInfo, Error> {
        self.observe(Step::Api, self.client.user_info(token)).await
    }

    /// Runs `call`, recording its duration and outcome; a call dropped
    /// before it finished is recorded as [`CANCELLED`].
    async fn observe<T>(
        &self,
        step: Step,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut record = Recorder {
            metrics: self.metrics,
            step,
            start: Instant::now(),
            outcome: CANCELLED,
        };
        let result = call.await;
        record.outcome = outcome(&result);
        result
    }
}

/// Records one call when dropped: after it finished, or when abandoned.
struct Recorder<'a> {
    metrics: &'a Metrics,
    step: Step,
    start: Instant,
    outcome: &'static str,
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        self.metrics
            .wiki_call(self.step.as_str(), self.outcome, self.start.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mediawiki::JwtError;

    #[test]
    fn every_error_has_its_outcome() {
        let wiki = Error::Wiki {
            code: None,
            message: "no".into(),
        };
        let cases: [(Result<(), Error>, &str); 9] = [
            (Ok(()), "ok"),
            (Err(wiki), "refused"),
            (Err(Error::Status(500)), "http_error"),
            (Err(Error::Timeout), "timeout"),
            (Err(Error::Unreachable("refused".into())), "unreachable"),
            (Err(Error::TooLarge { limit: 1 }), "invalid_response"),
            (Err(Error::BadResponse("x")), "invalid_response"),
            (Err(Error::BadToken("x")), "invalid_response"),
            (
                Err(Error::Identity(JwtError::Signature)),
                "invalid_response",
            ),
        ];
        for (result, expected) in cases {
            assert_eq!(outcome(&result), expected, "{result:?}");
        }
    }
}
