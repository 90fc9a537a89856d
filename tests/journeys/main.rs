//! User journeys against the real service: one integration binary, a
//! `TestApp` started in-process on port 0, and the real executable for what
//! only a process can show (exit codes, stdout, signals).

// A panic is how a test fails: unwrapping is the assertion here.
#![allow(clippy::unwrap_used)]

mod api;
mod bench_reference;
mod bench_report;
mod browser;
mod fake_wiki;
mod faults;
mod fuzz_replay;
mod hardening;
mod helpers;
mod home;
mod leaks;
mod login;
mod login_logs;
mod login_metrics;
mod openapi;
mod ops;
mod process;
