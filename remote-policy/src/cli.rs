//! The command line, shared by the standalone binary and by the tiny binary
//! a user crate adds (which passes its own compiled-in schema).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{check, diff, export, report, stubs, Error, Policy, Schema};

/// Security lint and schema export for remote-core interfaces.
///
/// Exit status: 0 when nothing fails, 1 when a finding fails the check,
/// 2 when the check cannot run (unreadable or invalid schema or policy).
#[derive(Debug, Parser)]
#[command(
    name = "remote-policy",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the schema against the policy (the default).
    Check(CheckArgs),
    /// Print the schema as JSON (format `remote-schema`, see SCHEMA.md).
    Schema {
        #[command(flatten)]
        input: Input,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Keep only what the policy's roots reach (as `diff` compares it).
        #[arg(long)]
        reachable: bool,
        /// Policy file whose `roots` `--reachable` uses (found as for `check`).
        #[arg(long, short, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Leave out source locations (`""`, line 0), so a checked-in schema
        /// does not go stale when code only moves.
        #[arg(long)]
        no_locations: bool,
    },
    /// Compare two schema versions: classify every change by what it does to
    /// old clients and old servers on the wire.
    Diff(DiffArgs),
    /// Generate client stubs from the schema.
    Stubs {
        #[command(flatten)]
        input: Input,
        /// Target language.
        #[arg(value_enum)]
        lang: Lang,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Default, Args)]
struct Input {
    /// Read the schema from this JSON file (written by `remote-policy schema`)
    /// instead of the descriptors compiled into this program.
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Lang {
    /// A Python module of dataclasses and Protocol classes.
    Python,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// The old schema (JSON), e.g. the one checked into the repository.
    #[arg(value_name = "OLD", required_unless_present = "against")]
    old: Option<PathBuf>,
    /// The new schema (JSON). Default: `--schema FILE`, else the schema
    /// compiled into this program.
    #[arg(value_name = "NEW")]
    new: Option<PathBuf>,
    /// The old schema, to compare the current build against.
    #[arg(long, value_name = "FILE", conflicts_with = "old")]
    against: Option<PathBuf>,
    #[command(flatten)]
    input: Input,
    /// Policy file: its `roots` (what is compared) and `[[allow]]` entries
    /// whose `rule` is a change kind.
    #[arg(long, short, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Format of the report on standard output (or in --output).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a SARIF 2.1.0 log to this file.
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
enum Format {
    #[default]
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Default, Args)]
struct CheckArgs {
    #[command(flatten)]
    input: Input,
    /// Policy file. Default: remote-policy.toml in $CARGO_MANIFEST_DIR, then
    /// in the current directory; built-in defaults if there is none.
    #[arg(long, short, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Format of the report on standard output (or in --output).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a SARIF 2.1.0 log to this file.
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,
    /// Also print every interface and type a peer can reach.
    #[arg(long)]
    surface: bool,
    /// Print how long the check itself took, on standard error.
    #[arg(long)]
    timings: bool,
}

/// Runs the command line on this process's arguments, checking `schema`
/// (normally [`remote_core::schema::collect()`]) unless `--schema FILE` is
/// given. Exit status: 0 pass, 1 a finding fails, 2 the check cannot run.
///
/// ```no_run
/// # #![allow(unused_imports)]
/// # extern crate remote_core as my_app;
/// use my_app as _; // links the crate, and so its descriptors
/// fn main() -> std::process::ExitCode {
///     remote_policy::run_cli(remote_core::schema::collect())
/// }
/// ```
pub fn run_cli(schema: Schema) -> ExitCode {
    run_cli_with(std::env::args_os(), Some(schema))
}

/// Runs the command line on `args` (the first is the program name). With
/// `schema: None`, `--schema FILE` is required. A schema without interfaces
/// is refused (exit status 2): it means the crate was not linked.
///
/// ```
/// use std::process::ExitCode;
/// use remote_core::schema::Schema;
/// use remote_policy::testing::*;
///
/// let schema = schema_with(vec![iface("app::Chat", vec![method("count", vec![], u64_ty())])], vec![]);
/// let code = remote_policy::run_cli_with(["remote-policy", "check", "-o", "/dev/null"], Some(schema));
/// assert_eq!(code, ExitCode::SUCCESS);
/// let code = remote_policy::run_cli_with(["remote-policy", "check"], Some(Schema::default()));
/// assert_eq!(code, ExitCode::from(2));
/// ```
pub fn run_cli_with<I, T>(args: I, schema: Option<Schema>) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match execute(cli, schema) {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("remote-policy: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

/// Runs one command; `Ok(true)` when the check fails.
fn execute(cli: Cli, embedded: Option<Schema>) -> Result<bool, Error> {
    let load = |input: &Input| {
        let schema = match (&input.schema, embedded) {
            (Some(path), _) => export::load(path)?,
            (None, Some(schema)) => {
                // The program's own descriptors: two declarations under
                // one key are refused here too.
                export::validate(&schema)?;
                schema
            }
            (None, None) => return Err(Error::NoSchema),
        };
        if schema.interfaces.is_empty() {
            return Err(Error::EmptySchema);
        }
        Ok(schema)
    };
    match cli.command {
        Some(Command::Schema {
            input,
            output,
            reachable,
            policy,
            no_locations,
        }) => {
            let mut schema = load(&input)?;
            if reachable {
                let policy = find_policy(policy.as_deref())?.unwrap_or_default();
                let roots = crate::roots(&schema, &policy, &mut Vec::new())?;
                schema = diff::reachable(&schema, &roots)?;
            }
            if no_locations {
                export::strip_locations(&mut schema);
            }
            write(output.as_deref(), &export::to_json(&schema))?;
            Ok(false)
        }
        Some(Command::Diff(args)) => {
            let new = match &args.new {
                Some(path) => export::load(path)?,
                None => load(&args.input)?,
            };
            run_diff(&new, args)
        }
        Some(Command::Stubs {
            input,
            lang: Lang::Python,
            output,
        }) => {
            write(output.as_deref(), &stubs::python::generate(&load(&input)?))?;
            Ok(false)
        }
        Some(Command::Check(args)) => run_check(&load(&args.input)?, args),
        None => run_check(&load(&cli.check.input)?, cli.check),
    }
}

fn find_policy(explicit: Option<&Path>) -> Result<Option<Policy>, Error> {
    if let Some(path) = explicit {
        return Policy::load(path).map(Some);
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        candidates.push(PathBuf::from(dir).join("remote-policy.toml"));
    }
    candidates.push(PathBuf::from("remote-policy.toml"));
    match candidates.into_iter().find(|p| p.is_file()) {
        Some(path) => Policy::load(&path).map(Some),
        None => Ok(None),
    }
}

fn run_check(schema: &Schema, args: CheckArgs) -> Result<bool, Error> {
    let policy = match find_policy(args.policy.as_deref())? {
        Some(p) => p,
        None => {
            eprintln!("remote-policy: no remote-policy.toml found; using the built-in rules");
            Policy::default()
        }
    };
    let start = Instant::now();
    let report = check(schema, &policy)?;
    let elapsed = start.elapsed();
    let mut main = match args.format {
        Format::Text => report::text::render(&report),
        Format::Json => report::json::render(&report),
        Format::Sarif => report::sarif::render(&report, schema),
    };
    if args.surface && matches!(args.format, Format::Text) {
        main.push('\n');
        main.push_str(&report::text::render_surface(&report));
    }
    write(args.output.as_deref(), &main)?;
    if let Some(path) = &args.json {
        write(Some(path), &report::json::render(&report))?;
    }
    if let Some(path) = &args.sarif {
        write(Some(path), &report::sarif::render(&report, schema))?;
    }
    if args.timings {
        eprintln!(
            "remote-policy: checked {} interfaces and {} types from {} roots in {:.3} ms",
            schema.interfaces.len(),
            schema.types.len(),
            report.surface.roots.len(),
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(report.failed())
}

fn run_diff(new: &Schema, args: DiffArgs) -> Result<bool, Error> {
    let old_path = args.old.as_deref().or(args.against.as_deref());
    let old = export::load(old_path.ok_or(Error::NoSchema)?)?;
    let policy = find_policy(args.policy.as_deref())?.unwrap_or_default();
    let report = diff::diff(&old, new, &policy)?;
    let main = match args.format {
        Format::Text => diff::render::text(&report),
        Format::Json => diff::render::json(&report),
        Format::Sarif => diff::render::sarif(&report),
    };
    write(args.output.as_deref(), &main)?;
    if let Some(path) = &args.json {
        write(Some(path), &diff::render::json(&report))?;
    }
    if let Some(path) = &args.sarif {
        write(Some(path), &diff::render::sarif(&report))?;
    }
    Ok(report.failed())
}

fn write(path: Option<&Path>, text: &str) -> Result<(), Error> {
    match path {
        Some(path) => std::fs::write(path, text).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        }),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|source| Error::Io {
                    path: PathBuf::from("<stdout>"),
                    source,
                })
        }
    }
}
