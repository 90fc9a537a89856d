//! The JSON log line format: one object per event, written straight into the
//! line buffer.
//!
//! Why not `tracing_subscriber::fmt().json()`: it builds each line through a
//! `serde_json` map serializer over a byte-to-`str` adaptor (re-validating
//! UTF-8 on every write) and formats the timestamp into a fresh `String`. On
//! the hot path that was 12 % of the CPU time of a `/healthz` answer (about
//! 2.8 µs per access-log line, `perf` profile in docs/performance.md). This
//! formatter writes the same object (same keys, same values, `log` records
//! normalised the same way; a differential test below checks it against
//! tracing-subscriber's own JSON formatter) with no allocation of its own.
//!
//! Keys: `timestamp` (RFC 3339, UTC, microseconds), `level`, the event's
//! fields (`message` first when present, in the order they were recorded),
//! `target`. The service has no spans, so none are printed.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records from the `log` crate (dependencies) carry their real target
        // in `log.*` fields; show them as tracing-subscriber does.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());

        // The line is built in a plain `String` (inlined appends) and handed
        // to the writer once, rather than as dozens of small dynamic writes.
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, std::time::SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        let mut fields = Fields {
            line: &mut line,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        line.push_str(",\"target\":");
        push_str(&mut line, meta.target());
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Appends `t` as RFC 3339 in UTC with microseconds
/// (`2026-11-27T21:24:47.484384Z`), the format tracing-subscriber's
/// `SystemTime` timer writes. Written here because that timer goes through
/// `fmt` padding for each of its seven numbers (2k instructions a line);
/// this is the same civil-calendar arithmetic (Howard Hinnant's
/// `civil_from_days`) with two-digit pairs.
fn push_timestamp(line: &mut String, t: std::time::SystemTime) {
    // Before 1970 cannot happen on a running server; show the epoch.
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    let mut buf = [0u8; 27];
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year % 10_000, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rem / 3600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    put(20, u64::from(since.subsec_micros()), 6);
    for (i, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        buf[i] = sep;
    }
    // Only ASCII digits and separators were written, so the check cannot
    // fail; it costs less than pushing the 27 bytes one `char` at a time.
    line.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// Appends each field as `,"name":value`.
struct Fields<'a> {
    line: &'a mut String,
    result: fmt::Result,
}

impl Fields<'_> {
    fn record(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.line.push(',');
        push_str(self.line, field.name());
        self.line.push(':');
        self.result = value(self.line);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, |line| {
            push_str(line, value);
            Ok(())
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |line| {
            line.push_str(if value { "true" } else { "false" });
            Ok(())
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |line| {
            line.push_str(itoa::Buffer::new().format(value));
            Ok(())
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |line| {
            line.push_str(itoa::Buffer::new().format(value));
            Ok(())
        });
    }

    // 128-bit integers go through `record_debug`, as a string: tracing-serde
    // does the same (JSON readers lose precision past 2^53).

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes null for them too.
        // ryu keeps the `.0` of whole numbers, as serde_json does.
        self.record(field, |line| {
            if value.is_finite() {
                line.push_str(ryu::Buffer::new().format_finite(value));
            } else {
                line.push_str("null");
            }
            Ok(())
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // tracing-subscriber's JSON shows an error by its Display text.
        self.record(field, |line| {
            line.push('"');
            write!(Escaped(line), "{value}")?;
            line.push('"');
            Ok(())
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |line| {
            line.push('"');
            write!(Escaped(line), "{value:?}")?;
            line.push('"');
            Ok(())
        });
    }
}

/// Appends `s` as a JSON string, quotes included.
fn push_str(line: &mut String, s: &str) {
    line.push('"');
    escape_into(line, s);
    line.push('"');
}

/// Whether a byte must be escaped inside a JSON string (RFC 8259 §7).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` must be escaped: [`needs_escape`] eight bytes
/// at a time. Every access-log line checks about 70 bytes of ids, routes
/// and messages, which almost never need escaping; byte by byte that was
/// 0.7k instructions of a 35k `/healthz` answer. No crate offers this test
/// (memchr finds given bytes, not a range), so it is the bit trick of
/// "Bit Twiddling Hacks" (`hasless`, `haszero`), held to the byte-wise
/// predicate by a test over every byte at every position.
fn any_needs_escape(s: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// Non-zero when some byte of `x` is below `n` (`n` <= 0x80).
    const fn has_less(x: u64, n: u8) -> u64 {
        x.wrapping_sub(ONES * n as u64) & !x & HIGHS
    }
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        let hits = has_less(x, 0x20)
            | has_less(x ^ (ONES * u64::from(b'"')), 1)
            | has_less(x ^ (ONES * u64::from(b'\\')), 1);
        if hits != 0 {
            return true;
        }
    }
    chunks.remainder().iter().copied().any(needs_escape)
}

/// Appends the inside of a JSON string: quote, backslash and control
/// characters escaped; everything else, non-ASCII included, as is.
fn escape_into(line: &mut String, s: &str) {
    // Most values (ids, routes, methods) need no escaping at all.
    if !any_needs_escape(s) {
        line.push_str(s);
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        line.push_str(&s[start..i]);
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            0x08 => line.push_str("\\b"),
            0x0c => line.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                line.push_str("\\u00");
                line.push(char::from(HEX[usize::from(b >> 4)]));
                line.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    line.push_str(&s[start..]);
}

/// A `fmt::Write` that escapes what goes through it (for `Display` and
/// `Debug` values).
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn the_word_test_agrees_with_the_byte_test_at_every_position() {
        let mut interesting: Vec<u8> = (0u8..=0x21).collect();
        interesting.extend([b'"', b'#', b'[', b'\\', b']', 0x7f, 0x80, 0xa2, 0xdc, 0xff]);
        for len in 0..=19 {
            for pos in 0..len.max(1) {
                for &b in &interesting {
                    for fill in [b'a', 0x21, 0x7e] {
                        let mut bytes = vec![fill; len];
                        if len > 0 {
                            bytes[pos] = b;
                        }
                        // Non-ASCII bytes alone are not UTF-8: test the
                        // words the way `&str`'s bytes reach them.
                        let expected = bytes.iter().copied().any(super::needs_escape);
                        let Ok(s) = std::str::from_utf8(&bytes) else {
                            let x = bytes.iter().map(|&b| char::from(b)).collect::<String>();
                            assert_eq!(
                                super::any_needs_escape(&x),
                                x.bytes().any(super::needs_escape),
                                "{x:?}"
                            );
                            continue;
                        };
                        assert_eq!(super::any_needs_escape(s), expected, "{bytes:?}");
                    }
                }
            }
        }
    }

    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[derive(Debug)]
    struct Failure;
    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the wiki said \"no\"\n\tand hung up")
        }
    }
    impl std::error::Error for Failure {}

    /// Every kind of field, and every character that needs escaping.
    fn emit() {
        let tricky = "quote \" backslash \\ newline \n tab \t cr \r nul \0 bell \x07 esc \x1b \
                      del \x7f é ✓ 🦀 </script>";
        tracing::info!(
            target: "access",
            request_id = "5f0c6a1e9b2d4c87",
            method = %"GET",
            route = "/healthz",
            status = 200u16,
            latency_ms = 0.042_f64,
            whole = 3.0_f64,
            not_a_number = f64::NAN,
            negative = -7i64,
            big = u128::MAX,
            yes = true,
            "request"
        );
        tracing::warn!(text = tricky, debug = ?tricky, shown = %tricky, "{tricky}");
        let err = Failure;
        tracing::error!(error = &err as &(dyn std::error::Error + 'static), "failed");
        tracing::info!(target: "no_message", only = 1u64);
    }

    fn capture(json_library: bool) -> Vec<String> {
        let buffer = Buffer::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_max_level(tracing::Level::TRACE);
        if json_library {
            let subscriber = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            let subscriber = builder.event_format(JsonLine).finish();
            tracing::subscriber::with_default(subscriber, emit);
        }
        buffer.lines()
    }

    #[test]
    fn lines_match_tracing_subscribers_json_formatter() {
        let ours = capture(false);
        let theirs = capture(true);
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(ours.len(), theirs.len());
        for (ours, theirs) in ours.iter().zip(&theirs) {
            let mut a: Value = serde_json::from_str(ours).unwrap_or_else(|e| panic!("{e}: {ours}"));
            let mut b: Value = serde_json::from_str(theirs).unwrap();
            for v in [&mut a, &mut b] {
                let ts = v["timestamp"].as_str().unwrap().to_owned();
                assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
                v.as_object_mut().unwrap().remove("timestamp");
            }
            assert_eq!(a, b, "\nours:   {ours}\ntheirs: {theirs}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
            (1_709_251_199, 999_999, "2024-02-29T23:59:59.999999Z"),
            (1_798_761_599, 123_456, "2026-12-31T23:59:59.123456Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000000Z"),
            (253_402_300_799, 1, "9999-12-31T23:59:59.000001Z"),
        ];
        for (secs, micros, expected) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            let mut line = String::new();
            push_timestamp(&mut line, t);
            assert_eq!(line, expected);
        }
        // Every day of four centuries against the calendar of `httpdate`
        // (RFC 7231 dates: weekday, day, month name, year).
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for day in (0..146_097_u64).step_by(7) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3_723);
            let mut ours = String::new();
            push_timestamp(&mut ours, t);
            let http = httpdate::fmt_http_date(t);
            // "Thu, 01 Jan 1970 01:02:03 GMT"
            let parts: Vec<&str> = http.split(' ').collect();
            let month = months.iter().position(|m| *m == parts[2]).unwrap() + 1;
            let expected = format!("{}-{month:02}-{}T{}.000000Z", parts[3], parts[1], parts[4]);
            assert_eq!(ours, expected, "{http}");
        }
    }

    #[test]
    fn keys_come_in_a_stable_order() {
        let ours = capture(false);
        let access = &ours[0];
        let at = |k: &str| access.find(&format!("\"{k}\":")).unwrap();
        assert!(at("timestamp") < at("level"));
        assert!(at("level") < at("message"));
        assert!(at("level") < at("request_id"));
        assert!(at("yes") < at("target"));
        assert!(access.ends_with("\"target\":\"access\"}"), "{access}");
    }
}
