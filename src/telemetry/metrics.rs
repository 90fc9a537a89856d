//! Metrics: one OpenTelemetry meter provider per [`Metrics`] (so several
//! apps in one process, as in the tests, never share series), read by the
//! OpenTelemetry Prometheus exporter into its own `prometheus::Registry`, and
//! rendered as Prometheus text for `/metrics`.
//!
//! Every label value is either a `&'static str` chosen by this crate or a
//! route template from the route table: nothing a client sends can create a
//! new series. Instruments are created once; recording a request costs a few
//! atomic operations and a short scan of the series already bound
//! ([`BoundRequests`]), with no allocation and no lock of the SDK's map.
//! Nothing here touches `opentelemetry::global`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use once_cell::race::OnceBox;
use opentelemetry::metrics::{
    BoundHistogram, Counter, Histogram, Meter, MeterProvider as _, ObservableCounter,
    ObservableGauge, ObservableUpDownCounter,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use poem::http::Method;

/// The crate version, as `hello_oauth_build_info{version}` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binary was built from, or `unknown` (see `build.rs`).
pub const GIT_REVISION: &str = env!("HELLO_OAUTH_GIT_REVISION");
/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Route label for requests that matched no route (404s of unknown paths).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Bucket boundaries for server request durations, in seconds: the
/// OpenTelemetry HTTP semantic conventions' advice.
const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Bucket boundaries for calls to the wiki, in seconds, up to the longest
/// wiki timeout the configuration accepts (60 s; 15 s by default).
const WIKI_DURATION_BUCKETS: [f64; 13] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
];

/// The service's metrics: instruments plus the registry they are read into.
/// Cheap to clone (every part is reference-counted).
#[derive(Clone)]
pub struct Metrics {
    registry: prometheus::Registry,
    /// Kept alive: when the last clone goes, the pipeline shuts down.
    _provider: SdkMeterProvider,
    request_duration: Histogram<f64>,
    bound_requests: Arc<BoundRequests>,
    active: Arc<ActiveRequests>,
    _active_requests: ObservableUpDownCounter<i64>,
    logins_started: Counter<u64>,
    logins_completed: Counter<u64>,
    logins_failed: Counter<u64>,
    wiki_call_duration: Histogram<f64>,
    _observed: Arc<Observed>,
}

/// Instruments read through callbacks at scrape time; kept so they live as
/// long as the provider.
struct Observed {
    _build_info: ObservableGauge<u64>,
    _memory: ObservableUpDownCounter<i64>,
    _file_descriptors: ObservableUpDownCounter<i64>,
    _threads: ObservableUpDownCounter<i64>,
    _cpu_time: ObservableCounter<f64>,
    _log_lines_dropped: ObservableCounter<u64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the provider, the exporter, the registry and every instrument.
    /// `service_name` becomes `target_info{service_name}`.
    pub fn new(service_name: &str) -> anyhow::Result<Metrics> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()?;
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", service_name.to_owned()),
                KeyValue::new("service.version", VERSION),
            ])
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_resource(resource)
            .build();
        let meter = provider.meter_with_scope(
            InstrumentationScope::builder("hello-oauth")
                .with_version(VERSION)
                .build(),
        );

        let request_duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .with_boundaries(HTTP_DURATION_BUCKETS.to_vec())
            .build();
        // In-flight requests are counted in plain atomics and read at scrape
        // time: two atomic adds per request instead of two attribute-set
        // lookups in the SDK's map (docs/performance.md).
        let active = Arc::new(ActiveRequests::default());
        let observed_active = active.clone();
        let active_requests = meter
            .i64_observable_up_down_counter("http.server.active_requests")
            .with_unit("{request}")
            .with_description("Number of active HTTP server requests.")
            .with_callback(move |o| observed_active.observe(o))
            .build();
        let logins_started = meter
            .u64_counter("hello_oauth.login.started")
            .with_unit("{login}")
            .with_description("Logins started: the user was sent to the wiki to authorise.")
            .build();
        let logins_completed = meter
            .u64_counter("hello_oauth.login.completed")
            .with_unit("{login}")
            .with_description("Logins completed: the user came back and is now logged in.")
            .build();
        let logins_failed = meter
            .u64_counter("hello_oauth.login.failed")
            .with_unit("{login}")
            .with_description("Logins that failed, by reason (see docs/operations.md).")
            .build();
        let wiki_call_duration = meter
            .f64_histogram("hello_oauth.wiki.call.duration")
            .with_unit("s")
            .with_description("Duration of calls to the wiki, by step and outcome.")
            .with_boundaries(WIKI_DURATION_BUCKETS.to_vec())
            .build();
        // Zero-valued series exist from the start, so rates and alerts work
        // before the first login.
        logins_started.add(0, &[]);
        logins_completed.add(0, &[]);

        let observed = Arc::new(observe_build_and_process(&meter));
        Ok(Metrics {
            registry,
            _provider: provider,
            request_duration,
            bound_requests: Arc::new(BoundRequests::default()),
            active,
            _active_requests: active_requests,
            logins_started,
            logins_completed,
            logins_failed,
            wiki_call_duration,
            _observed: observed,
        })
    }

    /// Counts a request as in flight until the returned guard is dropped
    /// (also when the client goes away and the request is cancelled).
    pub fn request_started(&self, method: &'static str) -> ActiveRequest<'_> {
        let slot = self.active.slot(method);
        slot.seen.store(true, Ordering::Relaxed);
        slot.count.fetch_add(1, Ordering::Relaxed);
        ActiveRequest { slot }
    }

    /// Records a finished request. `method` comes from [`method_label`];
    /// `route` is the route template, `None` when no route matched.
    pub fn request_finished(
        &self,
        method: &'static str,
        route: Option<&Arc<str>>,
        status: u16,
        duration: Duration,
    ) {
        let seconds = duration.as_secs_f64();
        match self
            .bound_requests
            .series(&self.request_duration, method, route, status)
        {
            Some(series) => series.record(seconds),
            // More series than the table holds: the SDK's own lookup, into
            // the same series (bound and unbound share them).
            None => self
                .request_duration
                .record(seconds, &request_attributes(method, route, status)),
        }
    }

    /// A user was sent to the wiki to authorise the tool.
    pub fn login_started(&self) {
        self.logins_started.add(1, &[]);
    }

    /// A user came back from the wiki and is now logged in.
    pub fn login_completed(&self) {
        self.logins_completed.add(1, &[]);
    }

    /// A login failed; `reason` is one of a fixed set of codes (e.g.
    /// `login_expired`, `wiki_unreachable`: docs/operations.md lists them).
    pub fn login_failed(&self, reason: &'static str) {
        self.logins_failed
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// Creates the `hello_oauth_login_failed_total` series of each reason at
    /// zero, so alerts on them work before the first failure.
    pub fn register_login_failure_reasons(&self, reasons: &[&'static str]) {
        for reason in reasons {
            self.logins_failed
                .add(0, &[KeyValue::new("reason", *reason)]);
        }
    }

    /// A call to the wiki finished. `step`: `initiate`, `token`, `identify`,
    /// `api` or `readiness`; `outcome`: `ok`, `refused` (the wiki's own
    /// error), `http_error`, `timeout`, `unreachable` or `invalid_response`.
    pub fn wiki_call(&self, step: &'static str, outcome: &'static str, duration: Duration) {
        self.wiki_call_duration.record(
            duration.as_secs_f64(),
            &[
                KeyValue::new("step", step),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// The current values in Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// The attributes of a request's duration: the HTTP semantic conventions'
/// three.
fn request_attributes(
    method: &'static str,
    route: Option<&Arc<str>>,
    status: u16,
) -> [KeyValue; 3] {
    let route = match route {
        Some(r) => Value::String(r.clone().into()),
        None => Value::String(UNMATCHED_ROUTE.into()),
    };
    [
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.route", route),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ]
}

/// How many request series are bound; beyond them a request is recorded
/// through the SDK's attribute lookup. The routes (about twenty) times the
/// methods and statuses a tool really answers stay well below it.
const BOUND_SERIES: usize = 64;

/// The request histogram's series, each bound once
/// (`Histogram::bind`, the OpenTelemetry SDK's bound instruments) on its
/// first request, in the order they first appear.
///
/// An unbound `record` builds three `KeyValue`s, takes the read lock of the
/// SDK's series map and SipHashes the attribute set to find the series,
/// on every request: about 2k instructions of a 28k `/healthz` answer
/// (docs/performance.md). A bound series is the series itself; finding it
/// here is a scan of a few slots comparing a status, a method and a route
/// template. Slots fill without a lock (`OnceBox`: two requests racing for
/// an empty slot both bind, one keeps it, and the other goes on to the next
/// slot, or uses the winner's when they were the same series).
struct BoundRequests {
    slots: [OnceBox<BoundRequest>; BOUND_SERIES],
}

impl Default for BoundRequests {
    fn default() -> BoundRequests {
        BoundRequests {
            slots: std::array::from_fn(|_| OnceBox::new()),
        }
    }
}

/// One bound series and its labels.
struct BoundRequest {
    status: u16,
    method: &'static str,
    route: Option<Arc<str>>,
    histogram: BoundHistogram<f64>,
}

impl BoundRequest {
    fn is(&self, method: &str, route: Option<&Arc<str>>, status: u16) -> bool {
        self.status == status
            && self.method == method
            && self.route.as_deref() == route.map(|r| &**r)
    }
}

impl BoundRequests {
    /// The bound series of these labels, bound now if it is new; `None`
    /// when every slot holds another series.
    fn series(
        &self,
        histogram: &Histogram<f64>,
        method: &'static str,
        route: Option<&Arc<str>>,
        status: u16,
    ) -> Option<&BoundHistogram<f64>> {
        for slot in &self.slots {
            let taken = match slot.get() {
                Some(taken) => taken,
                None => slot.get_or_init(|| {
                    Box::new(BoundRequest {
                        status,
                        method,
                        route: route.cloned(),
                        histogram: histogram.bind(&request_attributes(method, route, status)),
                    })
                }),
            };
            if taken.is(method, route, status) {
                return Some(&taken.histogram);
            }
        }
        None
    }
}

/// Keeps a request counted in `http.server.active_requests` while alive.
#[derive(Debug)]
pub struct ActiveRequest<'a> {
    slot: &'a ActiveSlot,
}

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        self.slot.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests in flight, one slot per method label of [`method_label`]
/// (`METHOD_LABELS[i]` is counted in `slots[i]`).
#[derive(Debug, Default)]
struct ActiveRequests {
    slots: [ActiveSlot; METHOD_LABELS.len()],
}

#[derive(Debug, Default)]
struct ActiveSlot {
    count: AtomicI64,
    /// A method's series exists once it has been seen (then stays, at 0
    /// when idle), as with an SDK up-down counter.
    seen: AtomicBool,
}

impl ActiveRequests {
    fn slot(&self, method: &str) -> &ActiveSlot {
        let i = METHOD_LABELS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHOD_LABELS.len() - 1);
        &self.slots[i]
    }

    fn observe(&self, o: &dyn opentelemetry::metrics::AsyncInstrument<i64>) {
        for (method, slot) in METHOD_LABELS.iter().zip(&self.slots) {
            if slot.seen.load(Ordering::Relaxed) {
                o.observe(
                    slot.count.load(Ordering::Relaxed),
                    &[KeyValue::new("http.request.method", *method)],
                );
            }
        }
    }
}

/// Every value [`method_label`] returns; `_OTHER` last.
const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// The method as a bounded label: the standard methods by name, anything
/// else as `_OTHER` (as the HTTP semantic conventions ask).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Build information and process figures, observed at scrape time.
fn observe_build_and_process(meter: &Meter) -> Observed {
    let build_attributes = [
        KeyValue::new("version", VERSION),
        KeyValue::new("git_revision", GIT_REVISION),
    ];
    let build_info = meter
        .u64_observable_gauge("hello_oauth.build_info")
        .with_description("Always 1; the labels say which build is running.")
        .with_callback(move |o| o.observe(1, &build_attributes))
        .build();
    let memory = meter
        .i64_observable_up_down_counter("process.memory.usage")
        .with_unit("By")
        .with_description("Resident memory of the process (RSS).")
        .with_callback(|o| {
            if let Some(status) = process::status() {
                o.observe(status.resident_bytes, &[]);
            }
        })
        .build();
    let file_descriptors = meter
        .i64_observable_up_down_counter("process.unix.file_descriptor.count")
        .with_unit("{file_descriptor}")
        .with_description("Open file descriptors of the process.")
        .with_callback(|o| {
            if let Some(n) = process::open_file_descriptors() {
                o.observe(n, &[]);
            }
        })
        .build();
    let threads = meter
        .i64_observable_up_down_counter("process.thread.count")
        .with_unit("{thread}")
        .with_description("Threads of the process.")
        .with_callback(|o| {
            if let Some(status) = process::status() {
                o.observe(status.threads, &[]);
            }
        })
        .build();
    let cpu_time = meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("CPU time used by the process, by mode.")
        .with_callback(|o| {
            if let Some((user, system)) = process::cpu_seconds() {
                o.observe(user, &[KeyValue::new("cpu.mode", "user")]);
                o.observe(system, &[KeyValue::new("cpu.mode", "system")]);
            }
        })
        .build();
    // Process-wide, as the log writer is (`telemetry::dropped_log_lines`).
    let log_lines_dropped = meter
        .u64_observable_counter("hello_oauth.log.lines_dropped")
        .with_unit("{line}")
        .with_description(
            "Log lines dropped because stdout did not keep up (the writer's queue was full): \
             while this grows, the logs are missing lines.",
        )
        .with_callback(|o| o.observe(crate::telemetry::dropped_log_lines(), &[]))
        .build();
    Observed {
        _build_info: build_info,
        _memory: memory,
        _file_descriptors: file_descriptors,
        _threads: threads,
        _cpu_time: cpu_time,
        _log_lines_dropped: log_lines_dropped,
    }
}

/// Process figures from `/proc/self` (Linux). Elsewhere every reader returns
/// `None` and the series are simply absent.
mod process {
    /// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on
    /// every architecture Toolforge runs (it is part of the kernel's ABI).
    const TICKS_PER_SECOND: f64 = 100.0;

    pub(super) struct Status {
        pub resident_bytes: i64,
        pub threads: i64,
    }

    /// `VmRSS` and `Threads` from `/proc/self/status`.
    pub(super) fn status() -> Option<Status> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_status(&text)
    }

    pub(super) fn parse_status(text: &str) -> Option<Status> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Some(Status {
            resident_bytes: field("VmRSS:")?.checked_mul(1024)?,
            threads: field("Threads:")?,
        })
    }

    /// Entries of `/proc/self/fd` (the directory handle itself included).
    pub(super) fn open_file_descriptors() -> Option<i64> {
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        i64::try_from(entries.count()).ok()
    }

    /// User and system CPU seconds from `/proc/self/stat`.
    pub(super) fn cpu_seconds() -> Option<(f64, f64)> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        parse_stat(&text)
    }

    pub(super) fn parse_stat(text: &str) -> Option<(f64, f64)> {
        // The command name (field 2) may contain spaces and parentheses, so
        // count fields from the last ')'. utime and stime are fields 14 and
        // 15, that is the 12th and 13th after the command name.
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let user = fields.next()?.parse::<u64>().ok()?;
        let system = fields.next()?.parse::<u64>().ok()?;
        Some((
            user as f64 / TICKS_PER_SECOND,
            system as f64 / TICKS_PER_SECOND,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_method_label_has_its_own_in_flight_slot() {
        let active = ActiveRequests::default();
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::CONNECT,
            Method::TRACE,
            Method::from_bytes(b"BREW").unwrap(),
        ];
        let mut slots: Vec<*const ActiveSlot> = methods
            .iter()
            .map(|m| std::ptr::from_ref(active.slot(method_label(m))))
            .collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), METHOD_LABELS.len());
    }

    /// The value of the series whose line starts with `prefix` (name plus
    /// the labels up to where the caller stops), summed over matches.
    fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in scrape.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            if labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            {
                let v: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
                found = Some(found.unwrap_or(0.0) + v);
            }
        }
        found
    }

    #[test]
    fn login_events_appear_in_the_scrape() {
        let metrics = Metrics::new("test").unwrap();
        let before = metrics.render().unwrap();
        assert_eq!(
            value(&before, "hello_oauth_login_started_total", &[]),
            Some(0.0)
        );
        assert_eq!(
            value(&before, "hello_oauth_login_completed_total", &[]),
            Some(0.0)
        );

        metrics.login_started();
        metrics.login_started();
        metrics.login_completed();
        metrics.login_failed("login_expired");
        metrics.login_failed("wiki_unreachable");
        metrics.login_failed("wiki_unreachable");

        let scrape = metrics.render().unwrap();
        assert_eq!(
            value(&scrape, "hello_oauth_login_started_total", &[]),
            Some(2.0)
        );
        assert_eq!(
            value(&scrape, "hello_oauth_login_completed_total", &[]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_login_failed_total",
                &[("reason", "login_expired")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_login_failed_total",
                &[("reason", "wiki_unreachable")]
            ),
            Some(2.0)
        );
        assert!(scrape.contains("# TYPE hello_oauth_login_failed_total counter"));
    }

    #[test]
    fn registered_failure_reasons_start_at_zero() {
        let metrics = Metrics::new("test").unwrap();
        metrics.register_login_failure_reasons(&["wiki_timeout", "user_declined"]);
        metrics.login_failed("wiki_timeout");

        let scrape = metrics.render().unwrap();
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_login_failed_total",
                &[("reason", "user_declined")]
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_login_failed_total",
                &[("reason", "wiki_timeout")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn wiki_calls_appear_by_step_and_outcome() {
        let metrics = Metrics::new("test").unwrap();
        metrics.wiki_call("token", "ok", Duration::from_millis(120));
        metrics.wiki_call("token", "ok", Duration::from_millis(80));
        metrics.wiki_call("identify", "timeout", Duration::from_secs(15));

        let scrape = metrics.render().unwrap();
        let token_ok = [("step", "token"), ("outcome", "ok")];
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_wiki_call_duration_seconds_count",
                &token_ok
            ),
            Some(2.0)
        );
        let sum = value(
            &scrape,
            "hello_oauth_wiki_call_duration_seconds_sum",
            &token_ok,
        )
        .unwrap();
        assert!((sum - 0.2).abs() < 1e-9, "{sum}");
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_wiki_call_duration_seconds_bucket",
                &[("step", "identify"), ("outcome", "timeout"), ("le", "10")]
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &scrape,
                "hello_oauth_wiki_call_duration_seconds_bucket",
                &[("step", "identify"), ("outcome", "timeout"), ("le", "15")]
            ),
            Some(1.0)
        );
    }

    /// The request histogram's count for the series with these labels.
    fn request_count(scrape: &str, labels: &[(&str, &str)]) -> Option<f64> {
        value(scrape, "http_server_request_duration_seconds_count", labels)
    }

    #[test]
    fn requests_are_recorded_with_bounded_labels_and_active_ones_counted() {
        let metrics = Metrics::new("test").unwrap();
        let route: Arc<str> = "/healthz".into();
        {
            let _active = metrics.request_started("GET");
            let during = metrics.render().unwrap();
            assert_eq!(
                value(
                    &during,
                    "http_server_active_requests",
                    &[("http_request_method", "GET")]
                ),
                Some(1.0)
            );
            metrics.request_finished("GET", Some(&route), 200, Duration::from_millis(2));
        }
        metrics.request_finished("_OTHER", None, 404, Duration::from_millis(1));

        let scrape = metrics.render().unwrap();
        assert_eq!(
            value(
                &scrape,
                "http_server_active_requests",
                &[("http_request_method", "GET")]
            ),
            Some(0.0)
        );
        let labels = [
            ("http_request_method", "GET"),
            ("http_route", "/healthz"),
            ("http_response_status_code", "200"),
        ];
        assert_eq!(request_count(&scrape, &labels), Some(1.0));
        assert_eq!(
            request_count(
                &scrape,
                &[
                    ("http_route", "unmatched"),
                    ("http_request_method", "_OTHER")
                ]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn requests_beyond_the_bound_series_are_counted_in_their_own_series() {
        let metrics = Metrics::new("test").unwrap();
        let bound = |metrics: &Metrics| {
            let slots = &metrics.bound_requests.slots;
            slots.iter().filter(|s| s.get().is_some()).count()
        };
        // One series, one slot, whichever `Arc` carries its route.
        for _ in 0..3 {
            let route: Arc<str> = "/route/0".into();
            metrics.request_finished("GET", Some(&route), 200, Duration::ZERO);
        }
        assert_eq!(bound(&metrics), 1);
        let metrics = Metrics::new("test").unwrap();
        let routes: Vec<Arc<str>> = (0..BOUND_SERIES + 20)
            .map(|i| format!("/route/{i}").into())
            .collect();
        // Each series twice, the second time from a different `Arc` of the
        // same template: labels are compared by value.
        for route in &routes {
            metrics.request_finished("GET", Some(route), 200, Duration::from_millis(1));
        }
        for route in &routes {
            let copy: Arc<str> = (**route).into();
            metrics.request_finished("GET", Some(&copy), 200, Duration::from_secs(2));
        }
        assert_eq!(bound(&metrics), BOUND_SERIES);
        let scrape = metrics.render().unwrap();
        for route in &routes {
            let labels = [
                ("http_route", &**route),
                ("http_response_status_code", "200"),
            ];
            assert_eq!(request_count(&scrape, &labels), Some(2.0), "{route}");
            let sum = value(&scrape, "http_server_request_duration_seconds_sum", &labels);
            assert!(
                sum.is_some_and(|s| (s - 2.001).abs() < 1e-9),
                "{route}: {sum:?}"
            );
        }
    }

    #[test]
    fn racing_requests_count_every_request_in_its_series() {
        let metrics = Metrics::new("test").unwrap();
        let routes: Vec<Arc<str>> = ["/a", "/b", "/c", "/d"].map(Arc::from).to_vec();
        let statuses = [200, 404];
        // Thread `t`'s `i`th request: every thread meets every series, in
        // its own order, so the threads race for the empty slots.
        let series = |t: usize, i: usize| (i + t) % routes.len() * 2 + (i / routes.len() + t) % 2;
        let (threads, requests) = (8, 2_000);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (metrics, routes) = (&metrics, &routes);
                scope.spawn(move || {
                    for i in 0..requests {
                        let s = series(t, i);
                        let (route, status) = (&routes[s / 2], statuses[s % 2]);
                        metrics.request_finished("GET", Some(route), status, Duration::ZERO);
                    }
                });
            }
        });
        let mut expected = [0.0; 8];
        for t in 0..threads {
            for i in 0..requests {
                expected[series(t, i)] += 1.0;
            }
        }
        let scrape = metrics.render().unwrap();
        for (s, expected) in expected.iter().enumerate() {
            let (route, status) = (&routes[s / 2], statuses[s % 2].to_string());
            let labels = [
                ("http_route", &**route),
                ("http_response_status_code", &*status),
            ];
            assert_eq!(
                request_count(&scrape, &labels),
                Some(*expected),
                "{route} {status}"
            );
        }
    }

    #[test]
    fn build_info_and_process_figures_are_reported() {
        let metrics = Metrics::new("test").unwrap();
        let scrape = metrics.render().unwrap();
        assert_eq!(
            value(&scrape, "hello_oauth_build_info", &[("version", VERSION)]),
            Some(1.0)
        );
        assert!(scrape.contains(&format!("git_revision=\"{GIT_REVISION}\"")));
        assert!(
            scrape.contains("target_info{service_name=\"test\""),
            "{scrape}"
        );
        // No subscriber in unit tests: nothing written, nothing dropped.
        assert_eq!(
            value(&scrape, "hello_oauth_log_lines_dropped_total", &[]),
            Some(0.0)
        );
        if cfg!(target_os = "linux") {
            assert!(value(&scrape, "process_memory_usage_bytes", &[]).unwrap() > 1e6);
            assert!(value(&scrape, "process_unix_file_descriptor_count", &[]).unwrap() >= 3.0);
            assert!(value(&scrape, "process_thread_count", &[]).unwrap() >= 1.0);
            assert!(
                value(
                    &scrape,
                    "process_cpu_time_seconds_total",
                    &[("cpu_mode", "user")]
                )
                .is_some()
            );
        }
    }

    #[test]
    fn two_instances_do_not_share_series() {
        let a = Metrics::new("a").unwrap();
        let b = Metrics::new("b").unwrap();
        a.login_started();
        let scrape = b.render().unwrap();
        assert_eq!(
            value(&scrape, "hello_oauth_login_started_total", &[]),
            Some(0.0)
        );
    }

    #[test]
    fn unknown_methods_map_to_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap()),
            "_OTHER"
        );
    }

    #[test]
    fn proc_files_are_parsed() {
        let status = process::parse_status("Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t7\n").unwrap();
        assert_eq!(status.resident_bytes, 2048 * 1024);
        assert_eq!(status.threads, 7);
        let stat = "42 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 250 130 0 0 20 0 4";
        assert_eq!(process::parse_stat(stat), Some((2.5, 1.3)));
        assert!(process::parse_stat("garbage").is_none());
    }
}
