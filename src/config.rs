//! Every setting of the service, read once at start-up from the environment
//! (Toolforge envvars) or the matching command-line flag, and validated.
//!
//! Secrets (`TOOL_OAUTH_CONSUMER_SECRET`, `TOOL_SESSION_KEY`) are read from
//! the environment only, never from flags (flags show up in `ps`), and are
//! held as [`SecretString`] so they cannot reach `Debug` output or logs.
//! This module never logs: it returns every problem it finds, and the caller
//! decides how to report them.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Default wiki: Meta-Wiki's `index.php`, where Wikimedia OAuth consumers live.
pub const DEFAULT_MWURI: &str = "https://meta.wikimedia.org/w/index.php";
/// Default greeting shown to anonymous visitors.
pub const DEFAULT_GREETING: &str = "Hello World!";
/// Minimum length of `TOOL_SESSION_KEY`, in bytes.
pub const MIN_SESSION_KEY_LEN: usize = 32;
/// Longest drain time accepted: Kubernetes kills the pod after 30 s.
const MAX_DRAIN_SECONDS: u64 = 25;
/// Minimum length of `TOOL_METRICS_TOKEN`, in bytes.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;
/// Longest readiness probe interval accepted.
const MAX_READINESS_INTERVAL_SECONDS: u64 = 3600;
/// Longest wait for the wiki accepted: a user waits behind every call.
const MAX_WIKI_TIMEOUT_SECONDS: u64 = 60;

/// Environment variable names, in one place so that messages, `--help`,
/// `check` and the documentation agree.
pub mod var {
    pub const PORT: &str = "PORT";
    pub const BIND_ADDRESS: &str = "TOOL_BIND_ADDRESS";
    pub const GREETING: &str = "TOOL_GREETING";
    pub const MWURI: &str = "TOOL_OAUTH_MWURI";
    pub const CONSUMER_KEY: &str = "TOOL_OAUTH_CONSUMER_KEY";
    pub const CONSUMER_SECRET: &str = "TOOL_OAUTH_CONSUMER_SECRET";
    pub const SESSION_KEY: &str = "TOOL_SESSION_KEY";
    pub const NAME: &str = "TOOL_NAME";
    pub const DATA_DIR: &str = "TOOL_DATA_DIR";
    pub const CONTACT: &str = "TOOL_CONTACT";
    pub const PUBLIC_URL: &str = "TOOL_PUBLIC_URL";
    pub const LOG_FILTER: &str = "RUST_LOG";
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    pub const DRAIN_SECONDS: &str = "TOOL_DRAIN_SECONDS";
    pub const METRICS_TOKEN: &str = "TOOL_METRICS_TOKEN";
    pub const READINESS_INTERVAL: &str = "TOOL_READINESS_INTERVAL_SECONDS";
    pub const MAX_BODY_BYTES: &str = "TOOL_MAX_BODY_BYTES";
    pub const MAX_CONCURRENT: &str = "TOOL_MAX_CONCURRENT_REQUESTS";
    pub const REQUEST_TIMEOUT: &str = "TOOL_REQUEST_TIMEOUT_SECONDS";
    pub const OAUTH_CALLBACK: &str = "TOOL_OAUTH_CALLBACK";
    pub const WIKI_TIMEOUT: &str = "TOOL_WIKI_TIMEOUT_SECONDS";
}

/// Text appended to `--help`: the settings that have no flag.
pub const SECRETS_HELP: &str = "\
Secrets are read from the environment only (never from flags, which other users can see in `ps`):
  TOOL_OAUTH_CONSUMER_KEY     OAuth consumer key (from Special:OAuthConsumerRegistration)
  TOOL_OAUTH_CONSUMER_SECRET  OAuth consumer secret [secret]
  TOOL_SESSION_KEY            Key for the encrypted session cookie [secret]: at least 32 bytes,
                              the same on every replica; `hello-oauth generate-key` makes one
  TOOL_METRICS_TOKEN          Bearer token that /metrics then requires [secret]: at least 16
                              bytes; /metrics is open when it is not set
  TOOL_DATA_DIR               Set by Toolforge; TOOL_NAME defaults to its last path segment

With no configuration at all the service starts on port 8000 with an ephemeral session key
(sessions do not survive a restart) and login disabled. See docs/configuration.md.";

/// The non-secret settings, as flags that fall back to environment variables.
///
/// Values are kept as strings here and validated in [`Config::from_matches`],
/// so that one run reports every problem instead of stopping at the first.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TCP port to listen on (Toolforge sets 8000)
    #[arg(long, env = var::PORT, default_value = "8000")]
    pub port: String,
    /// Address to bind
    #[arg(long = "bind", env = var::BIND_ADDRESS, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Greeting shown to visitors who are not logged in
    #[arg(long, env = var::GREETING, default_value = DEFAULT_GREETING)]
    pub greeting: String,
    /// The wiki's index.php URL (OAuth endpoints and, next to it, api.php)
    #[arg(long, env = var::MWURI, default_value = DEFAULT_MWURI)]
    pub mwuri: String,
    /// Tool name, for the User-Agent and the public URL [default: from TOOL_DATA_DIR, else hello-oauth]
    #[arg(long = "tool-name", env = var::NAME)]
    pub tool_name: Option<String>,
    /// Contact e-mail for the User-Agent [default: tools.<name>@toolforge.org on Toolforge]
    #[arg(long, env = var::CONTACT)]
    pub contact: Option<String>,
    /// External base URL, e.g. https://my-tool.toolforge.org/ (used for the OAuth callback)
    #[arg(long = "public-url", env = var::PUBLIC_URL)]
    pub public_url: Option<String>,
    /// Log filter, in tracing's EnvFilter syntax
    #[arg(long = "log", env = var::LOG_FILTER, default_value = "info")]
    pub log_filter: String,
    /// Log format: json or text [default: json unless stdout is a terminal]
    #[arg(long = "log-format", env = var::LOG_FORMAT)]
    pub log_format: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM
    #[arg(long = "drain-seconds", env = var::DRAIN_SECONDS, default_value = "10")]
    pub drain_seconds: String,
    /// Seconds between background checks that the wiki answers (for /readyz); 0 turns them off
    #[arg(
        long = "readiness-interval-seconds",
        env = var::READINESS_INTERVAL,
        default_value = "60"
    )]
    pub readiness_interval_seconds: String,
    /// Largest request body accepted, in bytes
    #[arg(long = "max-body-bytes", env = var::MAX_BODY_BYTES, default_value = "65536")]
    pub max_body_bytes: String,
    /// Requests served at once; more get a quick 503 (/healthz is exempt)
    #[arg(long = "max-concurrent-requests", env = var::MAX_CONCURRENT, default_value = "256")]
    pub max_concurrent: String,
    /// Deadline for one request, in seconds (a login waits on up to two wiki calls)
    #[arg(long = "request-timeout-seconds", env = var::REQUEST_TIMEOUT, default_value = "40")]
    pub request_timeout: String,
    /// OAuth callback sent to the wiki: oob (the URL registered with the consumer) or public (<TOOL_PUBLIC_URL>/oauth-callback, for consumers registered with "use as prefix")
    #[arg(long = "oauth-callback", env = var::OAUTH_CALLBACK, default_value = "oob")]
    pub oauth_callback: String,
    /// Seconds to wait for the wiki's answer to one request, body included
    #[arg(long = "wiki-timeout-seconds", env = var::WIKI_TIMEOUT, default_value = "15")]
    pub wiki_timeout_seconds: String,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Flag,
    /// An environment variable.
    Env,
    /// Derived from another variable (e.g. `TOOL_NAME` from `TOOL_DATA_DIR`).
    Derived,
    /// The built-in default.
    Default,
    /// Not set and no default.
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::Derived => "derived",
            Source::Default => "default",
            Source::Unset => "unset",
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (what Toolforge's log tooling reads best).
    Json,
    /// Human-readable, for a person at a terminal.
    Text,
}

/// Which `oauth_callback` the tool sends to the wiki when a login starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMode {
    /// `oob`: the wiki sends the user to the callback URL registered with the
    /// consumer. Works with every registration.
    Oob,
    /// `<TOOL_PUBLIC_URL>/oauth-callback` (or, without it, the scheme and host
    /// the request came in on). Needs a consumer registered with "use as prefix".
    Public,
}

/// The consumer registered on the wiki.
#[derive(Debug, Clone)]
pub struct OAuthConsumer {
    /// `TOOL_OAUTH_CONSUMER_KEY`: public, sent in every signed request.
    pub key: String,
    /// `TOOL_OAUTH_CONSUMER_SECRET`.
    pub secret: SecretString,
}

/// The key of the encrypted session cookie.
#[derive(Debug, Clone)]
pub enum SessionKey {
    /// `TOOL_SESSION_KEY`: stable across restarts and replicas.
    Configured(SecretString),
    /// Generated at start-up because nothing was configured.
    Ephemeral(SecretString),
}

impl SessionKey {
    /// The key material.
    pub fn secret(&self) -> &SecretString {
        match self {
            SessionKey::Configured(s) | SessionKey::Ephemeral(s) => s,
        }
    }
}

/// One problem with the configuration, naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable (or flag) at fault.
    pub var: &'static str,
    /// What is wrong and what to do; never contains a secret value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to bind (port 0 picks a free port).
    pub bind: std::net::SocketAddr,
    /// `TOOL_GREETING`.
    pub greeting: String,
    /// `TOOL_OAUTH_MWURI`: the wiki's `index.php`.
    pub mwuri: Url,
    /// The OAuth consumer, when both halves are configured.
    pub consumer: Option<OAuthConsumer>,
    /// The session cookie key.
    pub session_key: SessionKey,
    /// `TOOL_NAME`, or derived from `TOOL_DATA_DIR`.
    pub tool_name: String,
    /// `TOOL_CONTACT`.
    pub contact: Option<String>,
    /// `TOOL_PUBLIC_URL`.
    pub public_url: Option<Url>,
    /// `RUST_LOG`.
    pub log_filter: String,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `TOOL_DRAIN_SECONDS`.
    pub drain_timeout: Duration,
    /// `TOOL_METRICS_TOKEN`: when set, `/metrics` requires it as a bearer token.
    pub metrics_token: Option<SecretString>,
    /// `TOOL_READINESS_INTERVAL_SECONDS`: how often the wiki is probed for
    /// `/readyz`; `None` (0) turns the probe off.
    pub readiness_interval: Option<Duration>,
    /// `TOOL_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `TOOL_MAX_CONCURRENT_REQUESTS`.
    pub max_concurrent: usize,
    /// `TOOL_REQUEST_TIMEOUT_SECONDS`.
    pub request_timeout: Duration,
    /// `TOOL_OAUTH_CALLBACK`.
    pub oauth_callback: CallbackMode,
    /// `TOOL_WIKI_TIMEOUT_SECONDS`: total time for one request to the wiki.
    pub wiki_timeout: Duration,
    /// Where each setting came from, for `check` and the start-up log.
    pub sources: Vec<(&'static str, Source, String)>,
}

/// Reads an environment variable; an empty value counts as unset, and a
/// value that is not UTF-8 is reported rather than silently ignored.
fn env_var(name: &'static str, problems: &mut Vec<Problem>) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => None,
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            problems.push(Problem {
                var: name,
                message: "is not valid UTF-8".into(),
            });
            None
        }
    }
}

fn source_of(matches: &ArgMatches, id: &str) -> Source {
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        Some(ValueSource::DefaultValue) => Source::Default,
        _ => Source::Unset,
    }
}

/// Generates a fresh random session key: 64 characters from a 48-byte
/// random value (384 bits), URL-safe so it can be pasted anywhere.
pub fn generate_session_key() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_http_url(var: &'static str, value: &str, problems: &mut Vec<Problem>) -> Option<Url> {
    match Url::parse(value) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            problems.push(Problem {
                var,
                message: format!("must be an http or https URL, not {}:", u.scheme()),
            });
            None
        }
        Ok(u) if u.host_str().is_none() => {
            problems.push(Problem {
                var,
                message: "must name a host".into(),
            });
            None
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            problems.push(Problem {
                var,
                message: "must not have a query string or fragment".into(),
            });
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            problems.push(Problem {
                var,
                message: format!("is not a valid URL ({e}): {value:?}"),
            });
            None
        }
    }
}

impl Config {
    /// Validates the flags/environment in `matches` (which must come from a
    /// command that flattens [`ConfigArgs`]) plus the secret environment
    /// variables. Returns every problem at once.
    pub fn from_matches(args: &ConfigArgs, matches: &ArgMatches) -> Result<Config, Problems> {
        let mut problems = Vec::new();
        let mut sources: Vec<(&'static str, Source, String)> = Vec::new();

        let port = match args.port.trim().parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                problems.push(Problem {
                    var: var::PORT,
                    message: format!("must be a port number from 0 to 65535, not {:?}", args.port),
                });
                None
            }
        };
        sources.push((var::PORT, source_of(matches, "port"), args.port.clone()));

        let ip = match args.bind_address.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(Problem {
                    var: var::BIND_ADDRESS,
                    message: format!(
                        "must be an IP address such as 0.0.0.0 or 127.0.0.1, not {:?}",
                        args.bind_address
                    ),
                });
                None
            }
        };
        sources.push((
            var::BIND_ADDRESS,
            source_of(matches, "bind_address"),
            args.bind_address.clone(),
        ));

        if args.greeting.chars().count() > 500 {
            problems.push(Problem {
                var: var::GREETING,
                message: "is longer than 500 characters".into(),
            });
        }
        sources.push((
            var::GREETING,
            source_of(matches, "greeting"),
            args.greeting.clone(),
        ));

        let mwuri = parse_http_url(var::MWURI, args.mwuri.trim(), &mut problems).and_then(|u| {
            if is_mobile_domain(&u) {
                problems.push(Problem {
                    var: var::MWURI,
                    message: format!(
                        "is a mobile domain ({:?}), which breaks OAuth (E006): use the desktop \
                         domain, without the \".m.\"",
                        u.host_str().unwrap_or("")
                    ),
                });
                None
            } else if u.path().ends_with("/index.php") {
                Some(u)
            } else {
                problems.push(Problem {
                    var: var::MWURI,
                    message: format!(
                        "must be the wiki's index.php URL (e.g. {DEFAULT_MWURI}), not {:?}: \
                         the OAuth endpoints are reached through index.php",
                        args.mwuri
                    ),
                });
                None
            }
        });
        sources.push((var::MWURI, source_of(matches, "mwuri"), args.mwuri.clone()));

        // Secrets: environment only.
        let consumer_key = env_var(var::CONSUMER_KEY, &mut problems);
        let consumer_secret = env_var(var::CONSUMER_SECRET, &mut problems).map(SecretString::from);
        let session_key = env_var(var::SESSION_KEY, &mut problems).map(SecretString::from);
        let present = |set: bool| if set { Source::Env } else { Source::Unset };
        sources.push((
            var::CONSUMER_KEY,
            present(consumer_key.is_some()),
            consumer_key.clone().unwrap_or_default(),
        ));
        sources.push((
            var::CONSUMER_SECRET,
            present(consumer_secret.is_some()),
            redacted(consumer_secret.is_some()),
        ));
        sources.push((
            var::SESSION_KEY,
            present(session_key.is_some()),
            redacted(session_key.is_some()),
        ));

        let consumer = match (consumer_key, consumer_secret) {
            (Some(key), Some(secret)) => {
                if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    problems.push(Problem {
                        var: var::CONSUMER_KEY,
                        message: "must not contain spaces or control characters".into(),
                    });
                }
                Some(OAuthConsumer {
                    key: key.trim().to_owned(),
                    secret,
                })
            }
            (Some(_), None) => {
                problems.push(Problem {
                    var: var::CONSUMER_SECRET,
                    message: format!(
                        "is not set, but {} is: set both halves of the consumer, or neither",
                        var::CONSUMER_KEY
                    ),
                });
                None
            }
            (None, Some(_)) => {
                problems.push(Problem {
                    var: var::CONSUMER_KEY,
                    message: format!(
                        "is not set, but {} is: set both halves of the consumer, or neither",
                        var::CONSUMER_SECRET
                    ),
                });
                None
            }
            (None, None) => None,
        };

        let session_key = match session_key {
            Some(key) => {
                let len = key.expose_secret().len();
                if len < MIN_SESSION_KEY_LEN {
                    problems.push(Problem {
                        var: var::SESSION_KEY,
                        message: format!(
                            "is too short ({len} bytes): it must be at least {MIN_SESSION_KEY_LEN} \
                             random bytes; generate one with `hello-oauth generate-key`"
                        ),
                    });
                } else if distinct_bytes(key.expose_secret()) < 8 {
                    problems.push(Problem {
                        var: var::SESSION_KEY,
                        message: "does not look random (fewer than 8 distinct characters); \
                                  generate one with `hello-oauth generate-key`"
                            .into(),
                    });
                }
                SessionKey::Configured(key)
            }
            None => {
                if consumer.is_some() || has_consumer_half(&problems) {
                    problems.push(Problem {
                        var: var::SESSION_KEY,
                        message: "is not set, but the OAuth consumer is: without a stable key \
                                  every restart logs everyone out and replicas cannot read each \
                                  other's sessions; generate one with `hello-oauth generate-key`"
                            .into(),
                    });
                }
                SessionKey::Ephemeral(SecretString::from(generate_session_key()))
            }
        };

        let data_dir = env_var(var::DATA_DIR, &mut problems);
        let (tool_name, name_source) = match (
            &args.tool_name,
            data_dir.as_deref().and_then(tool_from_data_dir),
        ) {
            (Some(n), _) => (n.trim().to_owned(), source_of(matches, "tool_name")),
            (None, Some(derived)) => (derived, Source::Derived),
            (None, None) => ("hello-oauth".to_owned(), Source::Default),
        };
        if tool_name.is_empty()
            || !tool_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            problems.push(Problem {
                var: var::NAME,
                message: format!(
                    "must be a tool name made of letters, digits, '-', '_' or '.', not {tool_name:?}"
                ),
            });
        }
        sources.push((var::NAME, name_source, tool_name.clone()));

        let contact = args.contact.as_ref().map(|c| c.trim().to_owned());
        if let Some(c) = &contact
            && (c
                .chars()
                .any(|ch| ch.is_control() || ch == '(' || ch == ')')
                || c.len() > 200)
        {
            problems.push(Problem {
                var: var::CONTACT,
                message:
                    "must be an e-mail address or URL without parentheses or control characters"
                        .into(),
            });
        }
        sources.push((
            var::CONTACT,
            source_of(matches, "contact"),
            contact.clone().unwrap_or_default(),
        ));

        let public_url = args
            .public_url
            .as_deref()
            .and_then(|u| parse_http_url(var::PUBLIC_URL, u.trim(), &mut problems));
        sources.push((
            var::PUBLIC_URL,
            source_of(matches, "public_url"),
            args.public_url.clone().unwrap_or_default(),
        ));

        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&args.log_filter) {
            problems.push(Problem {
                var: var::LOG_FILTER,
                message: format!(
                    "is not a valid log filter ({e}); try e.g. info or hello_oauth=debug,info"
                ),
            });
        }
        sources.push((
            var::LOG_FILTER,
            source_of(matches, "log_filter"),
            args.log_filter.clone(),
        ));

        let log_format = match args.log_format.as_deref().map(str::trim) {
            None => {
                use std::io::IsTerminal as _;
                if std::io::stdout().is_terminal() {
                    LogFormat::Text
                } else {
                    LogFormat::Json
                }
            }
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(f) => {
                problems.push(Problem {
                    var: var::LOG_FORMAT,
                    message: format!("must be json or text, not {f:?}"),
                });
                LogFormat::Json
            }
        };
        sources.push((
            var::LOG_FORMAT,
            match source_of(matches, "log_format") {
                Source::Unset => Source::Default,
                s => s,
            },
            match log_format {
                LogFormat::Json => "json".into(),
                LogFormat::Text => "text".into(),
            },
        ));

        let drain_timeout = match args.drain_seconds.trim().parse::<u64>() {
            Ok(s) if s <= MAX_DRAIN_SECONDS => Some(Duration::from_secs(s)),
            _ => {
                problems.push(Problem {
                    var: var::DRAIN_SECONDS,
                    message: format!(
                        "must be a whole number of seconds from 0 to {MAX_DRAIN_SECONDS} \
                         (Kubernetes kills the pod 30 s after SIGTERM), not {:?}",
                        args.drain_seconds
                    ),
                });
                None
            }
        };
        sources.push((
            var::DRAIN_SECONDS,
            source_of(matches, "drain_seconds"),
            args.drain_seconds.clone(),
        ));

        let metrics_token = env_var(var::METRICS_TOKEN, &mut problems).map(SecretString::from);
        if let Some(token) = &metrics_token {
            let token = token.expose_secret();
            if token.len() < MIN_METRICS_TOKEN_LEN {
                problems.push(Problem {
                    var: var::METRICS_TOKEN,
                    message: format!(
                        "is too short ({} bytes): use at least {MIN_METRICS_TOKEN_LEN} random \
                         bytes, e.g. from `hello-oauth generate-key`",
                        token.len()
                    ),
                });
            } else if token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
            {
                problems.push(Problem {
                    var: var::METRICS_TOKEN,
                    message: "must be printable ASCII without spaces (it travels in an \
                              Authorization header)"
                        .into(),
                });
            }
        }
        sources.push((
            var::METRICS_TOKEN,
            present(metrics_token.is_some()),
            redacted(metrics_token.is_some()),
        ));

        let readiness_interval = match args.readiness_interval_seconds.trim().parse::<u64>() {
            Ok(0) => Some(None),
            Ok(s) if s <= MAX_READINESS_INTERVAL_SECONDS => Some(Some(Duration::from_secs(s))),
            _ => {
                problems.push(Problem {
                    var: var::READINESS_INTERVAL,
                    message: format!(
                        "must be a whole number of seconds from 0 (no wiki probe) to \
                         {MAX_READINESS_INTERVAL_SECONDS}, not {:?}",
                        args.readiness_interval_seconds
                    ),
                });
                None
            }
        };
        sources.push((
            var::READINESS_INTERVAL,
            source_of(matches, "readiness_interval_seconds"),
            args.readiness_interval_seconds.clone(),
        ));

        let max_body_bytes = bounded(
            (var::MAX_BODY_BYTES, "max_body_bytes", &args.max_body_bytes),
            1024..=16 << 20,
            "bytes",
            matches,
            &mut sources,
            &mut problems,
        );
        let max_concurrent = bounded(
            (var::MAX_CONCURRENT, "max_concurrent", &args.max_concurrent),
            1..=100_000,
            "requests",
            matches,
            &mut sources,
            &mut problems,
        );
        let request_timeout = bounded(
            (
                var::REQUEST_TIMEOUT,
                "request_timeout",
                &args.request_timeout,
            ),
            1..=600,
            "seconds",
            matches,
            &mut sources,
            &mut problems,
        );

        let oauth_callback = match args.oauth_callback.trim() {
            c if c.eq_ignore_ascii_case("oob") => CallbackMode::Oob,
            c if c.eq_ignore_ascii_case("public") => CallbackMode::Public,
            other => {
                problems.push(Problem {
                    var: var::OAUTH_CALLBACK,
                    message: format!(
                        "must be oob (the callback registered with the consumer) or public \
                         (<TOOL_PUBLIC_URL>/oauth-callback, for a consumer registered with \
                         \"use as prefix\"), not {other:?}"
                    ),
                });
                CallbackMode::Oob
            }
        };
        sources.push((
            var::OAUTH_CALLBACK,
            source_of(matches, "oauth_callback"),
            args.oauth_callback.clone(),
        ));

        let wiki_timeout = bounded(
            (
                var::WIKI_TIMEOUT,
                "wiki_timeout_seconds",
                &args.wiki_timeout_seconds,
            ),
            1..=MAX_WIKI_TIMEOUT_SECONDS,
            "seconds",
            matches,
            &mut sources,
            &mut problems,
        );

        let limits = (
            max_body_bytes,
            max_concurrent,
            request_timeout,
            wiki_timeout,
        );
        match (
            problems.is_empty(),
            port,
            ip,
            mwuri,
            drain_timeout,
            limits,
            readiness_interval,
        ) {
            (
                true,
                Some(port),
                Some(ip),
                Some(mwuri),
                Some(drain_timeout),
                (Some(max_body), Some(max_concurrent), Some(timeout), Some(wiki_timeout)),
                Some(readiness_interval),
            ) => Ok(Config {
                bind: std::net::SocketAddr::new(ip, port),
                greeting: args.greeting.clone(),
                mwuri,
                consumer,
                session_key,
                tool_name,
                contact,
                public_url,
                log_filter: args.log_filter.clone(),
                log_format,
                drain_timeout,
                metrics_token,
                readiness_interval,
                max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
                max_concurrent: usize::try_from(max_concurrent).unwrap_or(usize::MAX),
                request_timeout: Duration::from_secs(timeout),
                oauth_callback,
                wiki_timeout: Duration::from_secs(wiki_timeout),
                sources,
            }),
            _ => Err(Problems(problems)),
        }
    }

    /// A configuration for tests and embedding: defaults everywhere, port 0
    /// on loopback, an ephemeral session key, no consumer, no metrics token,
    /// and no background wiki probe (a test that wants one points `mwuri`
    /// at a fake wiki on loopback and sets `readiness_interval`).
    pub fn for_tests() -> Config {
        Config {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            greeting: DEFAULT_GREETING.into(),
            mwuri: Url::parse(DEFAULT_MWURI).expect("the default wiki URL is valid"),
            consumer: None,
            session_key: SessionKey::Ephemeral(SecretString::from(generate_session_key())),
            tool_name: "hello-oauth".into(),
            contact: None,
            public_url: None,
            log_filter: "info".into(),
            log_format: LogFormat::Json,
            drain_timeout: Duration::from_secs(10),
            metrics_token: None,
            readiness_interval: None,
            max_body_bytes: 65536,
            max_concurrent: 256,
            request_timeout: Duration::from_secs(40),
            oauth_callback: CallbackMode::Oob,
            wiki_timeout: crate::http::REQUEST_TIMEOUT,
            sources: Vec::new(),
        }
    }

    /// Whether login can work on this instance.
    pub fn oauth_configured(&self) -> bool {
        self.consumer.is_some()
    }
}

/// Parses a whole number within `range`, recording its source or a problem.
fn bounded(
    (var, id, raw): (&'static str, &str, &str),
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
    matches: &ArgMatches,
    sources: &mut Vec<(&'static str, Source, String)>,
    problems: &mut Vec<Problem>,
) -> Option<u64> {
    sources.push((var, source_of(matches, id), raw.to_owned()));
    match raw.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            problems.push(Problem {
                var,
                message: format!(
                    "must be a whole number of {unit} from {} to {}, not {raw:?}",
                    range.start(),
                    range.end()
                ),
            });
            None
        }
    }
}

/// Whether `url` is a Wikimedia-style mobile domain (`en.m.wikipedia.org`).
fn is_mobile_domain(url: &Url) -> bool {
    url.host_str()
        .is_some_and(|host| host.split('.').skip(1).any(|label| label == "m"))
}

fn redacted(set: bool) -> String {
    if set {
        "[redacted]".into()
    } else {
        String::new()
    }
}

fn has_consumer_half(problems: &[Problem]) -> bool {
    problems
        .iter()
        .any(|p| p.var == var::CONSUMER_KEY || p.var == var::CONSUMER_SECRET)
}

fn distinct_bytes(s: &str) -> usize {
    let mut seen = [false; 256];
    s.bytes().for_each(|b| seen[usize::from(b)] = true);
    seen.iter().filter(|&&b| b).count()
}

/// Toolforge sets `TOOL_DATA_DIR=/data/project/<tool>`.
fn tool_from_data_dir(dir: &str) -> Option<String> {
    dir.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_name_is_the_last_segment_of_the_data_dir() {
        assert_eq!(
            tool_from_data_dir("/data/project/my-tool/").as_deref(),
            Some("my-tool")
        );
        assert_eq!(tool_from_data_dir("/"), None);
    }

    #[test]
    fn mobile_domains_are_recognised() {
        let mobile = |u: &str| is_mobile_domain(&Url::parse(u).unwrap_or_else(|_| panic!("{u}")));
        assert!(mobile("https://en.m.wikipedia.org/w/index.php"));
        assert!(mobile("https://meta.m.wikimedia.org/w/index.php"));
        assert!(!mobile("https://meta.wikimedia.org/w/index.php"));
        assert!(!mobile("https://m.example.org/w/index.php"));
        assert!(!mobile("http://127.0.0.1:8080/w/index.php"));
    }

    #[test]
    fn generated_keys_are_long_and_differ() {
        let a = generate_session_key();
        let b = generate_session_key();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(distinct_bytes(&a) >= 8);
    }
}
