//! `upramp flags`: show the effective flag configuration with the origin of each field, and evaluate
//! routing keys (from arguments or stdin) the way the uploader routes them.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde_json::json;
use upramp_flags::{
    evaluate, EnvSource, FlagConfig, FlagSources, Origin, Overrides, Percent, ResolvedFlag,
    ASYNC_UPLOAD, FLAGS_FILE_ENV,
};

use crate::exit::{CliError, CliResult};

/// Subcommands of `upramp flags`.
#[derive(Debug, clap::Subcommand)]
pub enum FlagsCommand {
    /// Show the effective value of every field of a flag and where it came from (default, file, env).
    Show(ShowArgs),
    /// Evaluate routing keys: one line per key, `key<TAB>bucket<TAB>async|sync`.
    Eval(EvalArgs),
}

/// Where the flag's configuration comes from.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// The flag's name (its table in the flags file).
    #[arg(long, value_name = "NAME", default_value = ASYNC_UPLOAD)]
    flag: String,
    /// Environment variable prefix [default: the flag's name in upper case, e.g. ASYNC_UPLOAD].
    #[arg(long, value_name = "PREFIX")]
    env_prefix: Option<String>,
    /// TOML flags file [default: $UPRAMP_FLAGS_FILE when set; otherwise no file].
    #[arg(long = "flags-file", visible_alias = "config", value_name = "FILE")]
    flags_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `upramp flags show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    source: SourceArgs,
}

/// Arguments of `upramp flags eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Evaluate at this percentage instead of the configured one (0-100, up to three decimals, optional
    /// `%`); the flag then counts as enabled.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    rollout: Option<Percent>,
    /// Use this salt instead of the configured one.
    #[arg(long, value_name = "SALT")]
    salt: Option<String>,
    /// Routing keys to evaluate, or `-` alone to read one key per line from stdin.
    #[arg(value_name = "KEY", required = true)]
    keys: Vec<String>,
}

fn parse_percent(value: &str) -> Result<Percent, String> {
    Percent::parse(value).map_err(|err| err.problem().to_string())
}

/// Run `upramp flags`.
pub fn run(cmd: FlagsCommand) -> CliResult {
    match cmd {
        FlagsCommand::Show(args) => show(&args),
        FlagsCommand::Eval(args) => eval(&args),
    }
}

fn sources(args: &SourceArgs, overrides: Overrides) -> Result<FlagSources, CliError> {
    let mut sources = FlagSources::new(args.flag.clone()).with_overrides(overrides);
    if let Some(prefix) = &args.env_prefix {
        sources = sources.with_env_prefix(prefix.clone());
    }
    if let Some(path) = flags_file(args)? {
        sources = sources.with_file(path);
    }
    Ok(sources)
}

fn flags_file(args: &SourceArgs) -> Result<Option<PathBuf>, CliError> {
    if let Some(path) = &args.flags_file {
        return Ok(Some(path.clone()));
    }
    match std::env::var_os(FLAGS_FILE_ENV) {
        None => Ok(None),
        Some(value) if value.is_empty() => Err(CliError::usage(anyhow!(
            "environment variable {FLAGS_FILE_ENV} is set but empty: unset it or give a flags file path"
        ))),
        Some(value) => Ok(Some(PathBuf::from(value))),
    }
}

fn resolve(sources: &FlagSources) -> Result<ResolvedFlag, CliError> {
    sources
        .resolve(&EnvSource::process())
        .map_err(CliError::usage)
}

fn show(args: &ShowArgs) -> CliResult {
    let sources = sources(&args.source, Overrides::default())?;
    let resolved = resolve(&sources)?;
    let text = if args.source.json {
        show_json(&sources, &resolved)
    } else {
        show_text(&sources, &resolved)
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .or_else(ignore_broken_pipe)
        .context("cannot write to stdout")
        .map_err(CliError::work)
}

/// Each field as (name, value for text, value for JSON, origin).
fn fields(
    config: &FlagConfig,
    resolved: &ResolvedFlag,
) -> Vec<(&'static str, String, serde_json::Value, Origin)> {
    let o = &resolved.origins;
    vec![
        (
            "enabled",
            config.enabled.to_string(),
            json!(config.enabled),
            o.enabled.clone(),
        ),
        (
            "rollout",
            config.rollout.to_string(),
            json!(config.rollout),
            o.rollout.clone(),
        ),
        (
            "fallback",
            config.fallback.to_string(),
            json!(config.fallback),
            o.fallback.clone(),
        ),
        (
            "salt",
            config.salt.clone(),
            json!(config.salt),
            o.salt.clone(),
        ),
        (
            "max_retries",
            config.max_retries.to_string(),
            json!(config.max_retries),
            o.max_retries.clone(),
        ),
        (
            "timeout_secs",
            config.timeout.as_secs().to_string(),
            json!(config.timeout.as_secs()),
            o.timeout.clone(),
        ),
        (
            "strategy",
            config.strategy.to_string(),
            json!(config.strategy.as_str()),
            o.strategy.clone(),
        ),
    ]
}

fn show_text(sources: &FlagSources, resolved: &ResolvedFlag) -> String {
    let file = sources
        .file
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    let mut lines = vec![
        format!("flag: {}", resolved.config.name),
        format!("file: {file}"),
        format!("env prefix: {}", sources.env_prefix),
        String::new(),
        format!("{:<14}{:<20}{}", "FIELD", "VALUE", "ORIGIN"),
    ];
    for (name, value, _, origin) in fields(&resolved.config, resolved) {
        lines.push(format!("{name:<14}{value:<20}{origin}"));
    }
    lines.join("\n")
}

fn show_json(sources: &FlagSources, resolved: &ResolvedFlag) -> String {
    let mut fields_json = serde_json::Map::new();
    for (name, _, value, origin) in fields(&resolved.config, resolved) {
        let source = match &origin {
            Origin::File(path) => json!(path.display().to_string()),
            Origin::Env(var) => json!(var),
            Origin::Default | Origin::Override => serde_json::Value::Null,
        };
        fields_json.insert(
            name.to_owned(),
            json!({ "value": value, "origin": origin.kind(), "source": source }),
        );
    }
    json!({
        "flag": resolved.config.name,
        "file": sources.file.as_ref().map(|p| p.display().to_string()),
        "env_prefix": sources.env_prefix,
        "fields": fields_json,
    })
    .to_string()
}

fn eval(args: &EvalArgs) -> CliResult {
    let overrides = Overrides {
        // Evaluating "at P%" means the flag is on; otherwise the configured switch decides.
        enabled: args.rollout.map(|_| true),
        rollout: args.rollout,
        salt: args.salt.clone(),
        ..Overrides::default()
    };
    let sources = sources(&args.source, overrides)?;
    let config = resolve(&sources)?.config;
    let from_stdin = args.keys.iter().any(|k| k == "-");
    if from_stdin && args.keys.len() > 1 {
        return Err(CliError::usage(anyhow!(
            "`-` (read keys from stdin) cannot be mixed with keys given as arguments"
        )));
    }
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let written = if from_stdin {
        eval_stdin(&config, args.source.json, &mut out)
    } else {
        args.keys.iter().try_for_each(|key| {
            write_decision(&mut out, &config, key, args.source.json).map_err(EvalError::Output)
        })
    };
    let flushed = written.and_then(|()| out.flush().map_err(EvalError::Output));
    match flushed {
        Ok(()) => Ok(()),
        Err(EvalError::Output(err)) => ignore_broken_pipe(err)
            .context("cannot write to stdout")
            .map_err(CliError::work),
        Err(EvalError::Input(err)) => Err(err),
    }
}

enum EvalError {
    Input(CliError),
    Output(io::Error),
}

fn eval_stdin(config: &FlagConfig, json: bool, out: &mut impl Write) -> Result<(), EvalError> {
    let mut input = io::stdin().lock();
    let mut line = Vec::with_capacity(256);
    let mut line_number = 0u64;
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .context("cannot read keys from stdin")
            .map_err(|err| EvalError::Input(CliError::work(err)))?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        let mut key = line.as_slice();
        key = key.strip_suffix(b"\n").unwrap_or(key);
        key = key.strip_suffix(b"\r").unwrap_or(key);
        if key.is_empty() {
            continue;
        }
        let key = std::str::from_utf8(key).map_err(|_| {
            EvalError::Input(CliError::usage(anyhow!(
                "stdin line {line_number} is not valid UTF-8: {:?}",
                String::from_utf8_lossy(key)
            )))
        })?;
        write_decision(out, config, key, json).map_err(EvalError::Output)?;
    }
}

fn write_decision(
    out: &mut impl Write,
    config: &FlagConfig,
    key: &str,
    json: bool,
) -> io::Result<()> {
    let decision = evaluate(config, key);
    if json {
        let line = json!({
            "key": key,
            "bucket": decision.bucket,
            "path": decision.route.as_str(),
            "reason": decision.reason.as_str(),
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
    } else {
        writeln!(
            out,
            "{key}\t{}\t{}",
            decision.bucket,
            decision.route.as_str()
        )
    }
}

/// A closed pipe (`upramp flags eval - | head`) ends the output early; that is not a failure.
fn ignore_broken_pipe(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(err)
    }
}
