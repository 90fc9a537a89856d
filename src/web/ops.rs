//! Operations endpoints: liveness (`/healthz`), readiness (`/readyz`) and
//! metrics (`/metrics`), described in the OpenAPI document under the `ops`
//! tag. Liveness never touches the network or a lock; readiness reads the
//! background wiki probe's cached result and never waits for it.

use std::sync::{Arc, LazyLock};

use poem::http::{HeaderValue, header};
use poem::web::Data;
use poem::{IntoResponse, Request, Response};
use poem_openapi::auth::Bearer;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, SecurityScheme};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::api::{ApiError, ApiTags};
use super::middleware::RequestId;
use crate::readiness::WikiStatus;
use crate::telemetry::metrics;

/// The operations group of the API.
#[derive(Debug, Clone, Copy)]
pub struct OpsApi;

/// Always `ok`: the process answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The process is up and serving requests.
    Ok,
}

/// Liveness: enough to tell the process answers, and which build it is.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(example)]
pub struct Health {
    /// Always `ok`.
    pub status: HealthStatus,
    /// The running version.
    pub version: String,
    /// Whole seconds since the service started.
    pub uptime_seconds: u64,
}

impl Example for Health {
    fn example() -> Self {
        Health {
            status: HealthStatus::Ok,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: 3600,
        }
    }
}

/// Whether the tool can do its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ReadinessStatus {
    /// Every check passes (or is skipped).
    Ready,
    /// At least one check fails.
    NotReady,
}

/// The result of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The check passes.
    Pass,
    /// The check fails: see `detail`.
    Fail,
    /// The check is turned off on this instance.
    Skipped,
}

/// One named readiness check.
#[derive(Debug, Clone, Object)]
pub struct Check {
    /// Pass, fail or skipped.
    pub status: CheckStatus,
    /// What was found, for a person.
    pub detail: String,
    /// Seconds since the check last ran, for checks that run in the
    /// background.
    #[oai(skip_serializing_if_is_none)]
    pub checked_seconds_ago: Option<f64>,
}

/// The checks `/readyz` runs, by name.
#[derive(Debug, Clone, Object)]
pub struct ReadinessChecks {
    /// An OAuth consumer and a stable session key are configured, so login
    /// can work.
    pub oauth_configured: Check,
    /// The wiki's OAuth endpoint answered the last background probe.
    pub wiki_reachable: Check,
}

/// Readiness: whether the tool can log people in right now, and why not.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Readiness {
    /// `ready` when no check fails.
    pub status: ReadinessStatus,
    /// Each check's result.
    pub checks: ReadinessChecks,
}

impl Example for Readiness {
    fn example() -> Self {
        Readiness {
            status: ReadinessStatus::NotReady,
            checks: ReadinessChecks {
                oauth_configured: Check {
                    status: CheckStatus::Pass,
                    detail: "an OAuth consumer and a session key are configured".into(),
                    checked_seconds_ago: None,
                },
                wiki_reachable: Check {
                    status: CheckStatus::Fail,
                    detail: "the wiki did not answer within 5 s".into(),
                    checked_seconds_ago: Some(12.5),
                },
            },
        }
    }
}

/// Answers of `GET /healthz`.
#[derive(Debug, ApiResponse)]
pub enum HealthResponse {
    /// The process is alive.
    #[oai(status = 200)]
    Alive(HealthJson),
}

/// `Json<Health>` as far as the document is concerned, serialised straight
/// from the struct (serde) instead of through poem-openapi's intermediate
/// `serde_json::Value` map: one allocation instead of six on the route
/// monitoring polls most (docs/performance.md). A unit test checks both give
/// the same JSON.
#[derive(Debug)]
pub struct HealthJson(pub Health);

impl Payload for HealthJson {
    const CONTENT_TYPE: &'static str = <Json<Health> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<Health> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        <Json<Health> as Payload>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Json<Health> as Payload>::register(registry);
    }
}

/// `HealthJson::CONTENT_TYPE` checked once: `content_type(&str)` parses
/// the value on every answer. A test holds the two equal.
const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// This build's health answer up to its last value,
/// `{"status":"ok","version":"0.1.0","uptime_seconds":`, written by serde
/// once: only the uptime changes between answers, and serialising the
/// whole struct (escaping its strings, growing the buffer) was 0.8k
/// instructions of every `/healthz` (docs/performance.md). `None` if serde
/// did not end the object with the uptime, which a test rules out.
static BUILD_PREFIX: LazyLock<Option<Vec<u8>>> = LazyLock::new(|| {
    let health = Health {
        status: HealthStatus::Ok,
        version: metrics::VERSION.into(),
        uptime_seconds: 0,
    };
    let body = serde_json::to_vec(&health).ok()?;
    Some(body.strip_suffix(b"0}")?.to_vec())
});

impl IntoResponse for HealthJson {
    fn into_response(self) -> Response {
        let health = self.0;
        let body = match &*BUILD_PREFIX {
            Some(prefix)
                if health.status == HealthStatus::Ok && health.version == metrics::VERSION =>
            {
                let mut uptime = itoa::Buffer::new();
                let uptime = uptime.format(health.uptime_seconds).as_bytes();
                let mut body = Vec::with_capacity(prefix.len() + uptime.len() + 1);
                body.extend_from_slice(prefix);
                body.extend_from_slice(uptime);
                body.push(b'}');
                body
            }
            _ => match serde_json::to_vec(&health) {
                Ok(body) => body,
                // Serialising a struct of a string and two plain values
                // cannot fail; should it ever, the generic path still answers.
                Err(_) => return Json(health).into_response(),
            },
        };
        Response::builder()
            .header(header::CONTENT_TYPE, JSON_CONTENT_TYPE)
            .body(body)
    }
}

/// Answers of `HEAD /healthz`.
#[derive(Debug, ApiResponse)]
pub enum HealthHeadResponse {
    /// The process is alive (no body).
    #[oai(status = 200)]
    Alive,
}

/// Answers of `GET /readyz`.
#[derive(Debug, ApiResponse)]
pub enum ReadinessResponse {
    /// Every check passes: the tool can log people in.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// At least one check fails; the body says which and why.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

/// Prometheus text exposition format, version 0.0.4.
#[derive(Debug)]
pub struct PrometheusText(pub String);

const METRICS_EXAMPLE: &str = "\
# HELP http_server_request_duration_seconds Duration of HTTP server requests.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/healthz\",otel_scope_name=\"hello-oauth\",otel_scope_version=\"0.1.0\",le=\"0.005\"} 42
";

impl Payload for PrometheusText {
    const CONTENT_TYPE: &'static str = metrics::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        content_type.starts_with("text/plain")
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            example: Some(serde_json::Value::String(METRICS_EXAMPLE.into())),
            ..MetaSchema::new("string")
        }))
    }

    fn register(_registry: &mut Registry) {}
}

impl IntoResponse for PrometheusText {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(metrics::CONTENT_TYPE)
            .body(self.0)
    }
}

/// Answers of `GET /metrics`.
#[derive(Debug, ApiResponse)]
pub enum MetricsResponse {
    /// The current metrics.
    #[oai(status = 200)]
    Metrics(PrometheusText),
    /// This instance protects its metrics with a token, and the request did
    /// not carry it as `Authorization: Bearer <token>`.
    #[oai(status = 401)]
    Unauthorized(
        Json<ApiError>,
        /// Always `Bearer`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The metrics could not be rendered (logged with the request id).
    #[oai(status = 500)]
    Failed(Json<ApiError>),
}

/// The metrics token as a bearer token. Needed only when the operator has
/// configured one; otherwise `/metrics` is open.
#[derive(SecurityScheme)]
#[oai(rename = "metricsToken", ty = "bearer")]
pub struct MetricsToken(Bearer);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken([redacted])")
    }
}

/// A bearer token, or none (the metrics may be open).
#[derive(SecurityScheme)]
pub enum MetricsAuth {
    /// A bearer token was sent.
    Token(MetricsToken),
    /// No bearer token was sent.
    #[oai(fallback)]
    Anonymous,
}

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MetricsAuth::Token(_) => "MetricsAuth::Token([redacted])",
            MetricsAuth::Anonymous => "MetricsAuth::Anonymous",
        })
    }
}

/// Compares two tokens in constant time (of the SHA-256 digests, so the
/// length of the secret does not leak either).
fn token_matches(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

#[OpenApi(tag = "ApiTags::Ops")]
impl OpsApi {
    /// Liveness: the process is up
    ///
    /// Give this path to Toolforge's health check (`--health-check-path
    /// /healthz`). It answers 200 as long as the process serves requests,
    /// whatever the state of the wiki: it never calls the network, so an
    /// outage elsewhere does not get the tool restarted.
    #[oai(path = "/healthz", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&Arc<AppState>>) -> HealthResponse {
        HealthResponse::Alive(HealthJson(Health {
            status: HealthStatus::Ok,
            version: metrics::VERSION.into(),
            uptime_seconds: state.started.elapsed().as_secs(),
        }))
    }

    /// Liveness, without a body
    ///
    /// The same check as `GET /healthz`, for probes that send `HEAD`.
    #[oai(path = "/healthz", method = "head", operation_id = "healthHead")]
    async fn health_head(&self) -> HealthHeadResponse {
        HealthHeadResponse::Alive
    }

    /// Readiness: can the tool log people in right now?
    ///
    /// Runs named checks: `oauth_configured` (a consumer and a stable
    /// session key are set) and `wiki_reachable` (the wiki's OAuth endpoint
    /// answered the last background probe; probes run at most once per
    /// `TOOL_READINESS_INTERVAL_SECONDS` and this request never waits for
    /// one). 200 when none fails, 503 otherwise, with the checks in the body
    /// either way. Use it for monitoring and alerts, not as the platform's
    /// health check: a wiki outage must not restart the tool.
    #[oai(path = "/readyz", method = "get", operation_id = "readiness")]
    async fn readiness(&self, state: Data<&Arc<AppState>>) -> ReadinessResponse {
        let report = readiness_report(&state);
        match report.status {
            ReadinessStatus::Ready => ReadinessResponse::Ready(Json(report)),
            ReadinessStatus::NotReady => ReadinessResponse::NotReady(Json(report)),
        }
    }

    /// Metrics in Prometheus text format
    ///
    /// Request durations and in-flight requests by method, route template
    /// and status, logins, calls to the wiki, build information and process
    /// figures; docs/operations.md describes each series. When the operator
    /// has set a metrics token, send it as `Authorization: Bearer <token>`;
    /// otherwise no authorization is needed.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(
        &self,
        state: Data<&Arc<AppState>>,
        request: &Request,
        auth: MetricsAuth,
    ) -> MetricsResponse {
        let request_id = request
            .data::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_else(|| "".into());
        if let Some(expected) = &state.config.metrics_token {
            let authorised = match &auth {
                MetricsAuth::Token(MetricsToken(bearer)) => {
                    token_matches(&bearer.token, expected.expose_secret())
                }
                MetricsAuth::Anonymous => false,
            };
            if !authorised {
                return MetricsResponse::Unauthorized(
                    Json(ApiError::new(
                        "unauthorized",
                        "This instance protects its metrics: send the metrics token as \
                         `Authorization: Bearer <token>`.",
                        &request_id,
                    )),
                    "Bearer".into(),
                );
            }
        }
        match state.metrics.render() {
            Ok(text) => MetricsResponse::Metrics(PrometheusText(text)),
            Err(e) => {
                tracing::error!(request_id = %request_id, error = %e, "could not render the metrics");
                MetricsResponse::Failed(Json(ApiError::new(
                    "internal_error",
                    "The metrics could not be rendered; the error is logged with the request id.",
                    &request_id,
                )))
            }
        }
    }
}

/// Runs the readiness checks from cached state only.
pub fn readiness_report(state: &AppState) -> Readiness {
    let config = &state.config;
    let session_key_configured =
        matches!(config.session_key, crate::config::SessionKey::Configured(_));
    let oauth_configured = match (config.oauth_configured(), session_key_configured) {
        (true, true) => Check {
            status: CheckStatus::Pass,
            detail: "an OAuth consumer and a session key are configured".into(),
            checked_seconds_ago: None,
        },
        (false, _) => Check {
            status: CheckStatus::Fail,
            detail: "no OAuth consumer: set TOOL_OAUTH_CONSUMER_KEY and \
                     TOOL_OAUTH_CONSUMER_SECRET (login is disabled)"
                .into(),
            checked_seconds_ago: None,
        },
        (true, false) => Check {
            status: CheckStatus::Fail,
            detail: "no TOOL_SESSION_KEY: sessions would not survive a restart".into(),
            checked_seconds_ago: None,
        },
    };
    let secs = |d: std::time::Duration| Some((d.as_secs_f64() * 10.0).round() / 10.0);
    let wiki_reachable = match state.wiki_probe.read() {
        WikiStatus::Disabled => Check {
            status: CheckStatus::Skipped,
            detail: "the wiki probe is turned off (TOOL_READINESS_INTERVAL_SECONDS=0)".into(),
            checked_seconds_ago: None,
        },
        WikiStatus::Pending => Check {
            status: CheckStatus::Fail,
            detail: "the first probe of the wiki has not finished yet".into(),
            checked_seconds_ago: None,
        },
        WikiStatus::Reachable {
            http_status,
            latency,
            age,
        } => Check {
            status: CheckStatus::Pass,
            detail: format!(
                "the wiki answered (HTTP {http_status}) in {} ms",
                latency.as_millis()
            ),
            checked_seconds_ago: secs(age),
        },
        WikiStatus::TimedOut { age } => Check {
            status: CheckStatus::Fail,
            detail: "the wiki did not answer in time".into(),
            checked_seconds_ago: secs(age),
        },
        WikiStatus::Unreachable { age } => Check {
            status: CheckStatus::Fail,
            detail: "the wiki could not be reached (connection failed)".into(),
            checked_seconds_ago: secs(age),
        },
        WikiStatus::Stale { age } => Check {
            status: CheckStatus::Fail,
            detail: "the background probe has not reported for three intervals".into(),
            checked_seconds_ago: secs(age),
        },
    };
    let failed = [&oauth_configured, &wiki_reachable]
        .iter()
        .any(|c| c.status == CheckStatus::Fail);
    Readiness {
        status: if failed {
            ReadinessStatus::NotReady
        } else {
            ReadinessStatus::Ready
        },
        checks: ReadinessChecks {
            oauth_configured,
            wiki_reachable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(token_matches("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!token_matches("abcdefghijklmnoq", "abcdefghijklmnop"));
        assert!(!token_matches("", "abcdefghijklmnop"));
        assert!(!token_matches("abcdefghijklmnopq", "abcdefghijklmnop"));
    }

    #[tokio::test]
    async fn the_health_answer_is_the_json_poem_openapi_would_write() {
        use poem_openapi::types::ToJSON as _;
        // This build's version takes the prepared prefix; another (one
        // that needs escaping) goes through serde.
        assert!(BUILD_PREFIX.is_some());
        for (uptime, version) in [0, 7, 10, u64::MAX]
            .into_iter()
            .flat_map(|u| [(u, metrics::VERSION), (u, "1.2.3-\"rc\"")])
        {
            let health = Health {
                status: HealthStatus::Ok,
                version: version.into(),
                uptime_seconds: uptime,
            };
            let expected = health.to_json();
            let resp = HealthJson(health.clone()).into_response();
            assert_eq!(
                resp.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some(<Json<Health> as Payload>::CONTENT_TYPE)
            );
            let body = resp.into_body().into_bytes().await.unwrap_or_default();
            // Byte for byte what serde writes, not only the same value.
            assert_eq!(
                &body[..],
                &serde_json::to_vec(&health).unwrap_or_default()[..]
            );
            let ours: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(Some(ours), expected);
        }
    }
}
