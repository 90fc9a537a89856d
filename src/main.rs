//! The command line: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use hello_oauth::config::{self, Config, ConfigArgs};
use hello_oauth::{App, telemetry};

/// jemalloc instead of glibc's allocator. A request allocates and frees
/// dozens of small objects (header maps, the session, the page's template
/// context); glibc's per-thread cache holds only seven of each size, so a
/// logged-in page went through its slow paths (`_int_free`,
/// `malloc_consolidate`) for a quarter of its instructions. jemalloc's
/// thread cache takes them all: 19 % fewer instructions on that page, about
/// 10 % on the others, for about half a MiB more idle memory
/// (docs/performance.md, "Hot-path choices"). mimalloc was tried first and
/// cost 5 to 19 MiB more. The library's tests keep the system allocator.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Toolforge tool: log in with your Wikimedia account (MediaWiki OAuth 1.0a).
///
/// Every setting comes from an environment variable (Toolforge envvars) or
/// the matching flag; run `hello-oauth check` to see what would be used.
#[derive(Debug, Parser)]
#[command(version, after_help = config::SECRETS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web service (the default; what the Procfile runs)
    #[command(after_help = config::SECRETS_HELP)]
    Serve(ConfigArgs),
    /// Validate the configuration as `serve` would, print each setting and its source, and exit
    #[command(after_help = config::SECRETS_HELP)]
    Check(ConfigArgs),
    /// Print a new random value for TOOL_SESSION_KEY
    GenerateKey,
    /// Print the OpenAPI document of the JSON API (what /openapi.json serves)
    Openapi,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        None => {
            // `hello-oauth` alone means `serve` with defaults + environment.
            let matches = Cli::command().get_matches_from(["hello-oauth", "serve"]);
            match sub_args(&matches) {
                Some((args, m)) => serve(&args, &m),
                None => ExitCode::FAILURE,
            }
        }
        Some(Command::Serve(args)) => match matches.subcommand_matches("serve") {
            Some(m) => serve(&args, m),
            None => ExitCode::FAILURE,
        },
        Some(Command::Check(args)) => match matches.subcommand_matches("check") {
            Some(m) => check(&args, m),
            None => ExitCode::FAILURE,
        },
        Some(Command::GenerateKey) => {
            println!("{}", config::generate_session_key());
            ExitCode::SUCCESS
        }
        Some(Command::Openapi) => {
            print!("{}", hello_oauth::web::api::document());
            ExitCode::SUCCESS
        }
    }
}

fn sub_args(matches: &ArgMatches) -> Option<(ConfigArgs, ArgMatches)> {
    let m = matches.subcommand_matches("serve")?.clone();
    ConfigArgs::from_arg_matches(&m).ok().map(|a| (a, m))
}

fn load(args: &ConfigArgs, matches: &ArgMatches) -> Result<Config, ExitCode> {
    Config::from_matches(args, matches).map_err(|problems| {
        eprintln!(
            "hello-oauth: the configuration has {} problem(s):",
            problems.0.len()
        );
        for p in &problems.0 {
            eprintln!("  {p}");
        }
        eprintln!("See `hello-oauth --help` and docs/configuration.md.");
        ExitCode::from(2)
    })
}

fn serve(args: &ConfigArgs, matches: &ArgMatches) -> ExitCode {
    let config = match load(args, matches) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _log_guard = match telemetry::init(&config.log_filter, config.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("hello-oauth: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hello-oauth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = hello_oauth::app::shutdown_signal()?;
        let app = App::build(config).await?;
        app.run_until(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "hello-oauth failed");
            eprintln!("hello-oauth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &ConfigArgs, matches: &ArgMatches) -> ExitCode {
    let config = match load(args, matches) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("{:<32} {:<8} VALUE", "SETTING", "SOURCE");
    for (name, source, value) in &config.sources {
        println!("{name:<32} {:<8} {value}", source.to_string());
    }
    if !config.oauth_configured() {
        println!(
            "\nnote: no OAuth consumer configured: the service starts, but login is disabled."
        );
    }
    println!("\nThe configuration is valid: `hello-oauth serve` would start.");
    ExitCode::SUCCESS
}
