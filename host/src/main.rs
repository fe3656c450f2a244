//! `sluice`: runs YAML-declared pipelines from sources to sinks, at least once.

mod admin;
mod cli;
mod config;
mod dlq;
mod integrity;
mod lock;
mod metrics;
mod offsets;
mod pipeline;
mod plugin;
mod progress;
mod progress_bar;
mod registry;
mod replay;
mod status;
mod transform;
mod upstream;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sluice_sdk::{Provider, Registry};
use tokio_util::sync::CancellationToken;

use cli::{
    Cli, Command, DlqCommand, IntegrityCommand, LogFormat, OffsetsCommand, ReplayArgs, ResetArgs,
    VerifyArgs,
};
use config::{Config, ConfigError};
use pipeline::{HostEnv, PipelineDef};
use status::PipelineStatus;

/// Batches are a few hundred kilobytes each; glibc's allocator hands blocks of that size back
/// to the kernel on free and faults them in again for the next batch, which cost a quarter
/// of the CPU of a generator -> blackhole pipeline (docs/BENCHMARKS.md). Plugins keep their
/// own allocator: every buffer crossing the ABI is freed by the side that allocated it.
/// mimalloc 2 (the workspace's `v2` feature): the bundled mimalloc 3.3 can fault setting up
/// a new thread once another thread that used it has ended (docs/plugin-guide.md, Allocator).
/// It is also the process's `malloc` (the `override` feature): librdkafka allocates each
/// fetched message in C on its fetch thread and the read loop frees it on another, which in
/// glibc's arenas cost more CPU than the rest of a `kafka -> blackhole` pipeline's read
/// (docs/BENCHMARKS.md, Kafka to every sink).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, as `MIMALLOC_ALLOW_THP=0` would.
/// mimalloc asks for them (`MADV_HUGEPAGE`) on the memory it maps and hands freed pages back
/// to the kernel 10 ms later; the next batch or fetch buffer in that range then faults in a
/// whole 2 MiB page, zeroed, for what may be a few kilobytes. That zeroing was 10-19% of a
/// `kafka -> elasticsearch` or `-> datadog_logs` pipeline's CPU (docs/BENCHMARKS.md).
/// The flag is checked at fault time, so it covers memory mapped before `main` too.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's
    // memory policy. A kernel without it (before 3.15) answers EINVAL: nothing to undo.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Writes a command's output to stdout. A reader that went away (`sluice connectors | head`)
/// ends the command quietly with status 0; `run` never uses this: SIGPIPE stays ignored, so
/// its network writes keep failing with errors instead of killing the process.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

/// Whether `prepare` may load plugin libraries. Loading runs a library's initialisers, so
/// only `run` does; `validate` checks the files and leaves them closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plugins {
    Load,
    CheckOnly,
}

/// Loads the configuration and the registry it needs, and validates every pipeline,
/// printing every problem found (sorted by file and line).
fn prepare(
    paths: &[std::path::PathBuf],
    plugins: Plugins,
) -> Result<(Config, Registry, Vec<PipelineDef>), ExitCode> {
    // Transform types no built-in has are left for `PipelineDef::validate`, with the plugins
    // that may provide them.
    let compiled_in = registry::compiled_in();
    let (cfg, mut errors) = config::load_all(paths, &compiled_in);
    if plugins == Plugins::Load && !errors.is_empty() {
        print_errors(&errors);
        return Err(ExitCode::from(1));
    }
    let mut plugin_failed = false;
    let registry = match plugins {
        Plugins::Load => registry::with_plugins(&cfg.host.plugins).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(1)
        })?,
        Plugins::CheckOnly => {
            for e in registry::check_plugins(&cfg.host.plugins) {
                eprintln!("error: {e}");
                plugin_failed = true;
            }
            for p in &cfg.host.plugins {
                eprintln!(
                    "note: plugin {} not loaded: validate never runs plugin code; its connectors are checked by `sluice run`",
                    p.display()
                );
            }
            compiled_in
        }
    };
    let mut defs = Vec::new();
    for p in &cfg.pipelines {
        let checked = match plugins {
            Plugins::Load => std::borrow::Cow::Borrowed(p),
            Plugins::CheckOnly if cfg.host.plugins.is_empty() => std::borrow::Cow::Borrowed(p),
            Plugins::CheckOnly => registry::without_plugin_types(p, &registry, |section, t| {
                eprintln!(
                    "note: pipeline `{}`: {section} type `{t}` is not built in: provided by a plugin, not loaded by validate; checked at run",
                    p.name
                );
            }),
        };
        match PipelineDef::validate(&checked, &registry, &cfg.host.data_dir) {
            Ok(d) => defs.push(d),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() || plugin_failed {
        errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        print_errors(&errors);
        return Err(ExitCode::from(1));
    }
    Ok((cfg, registry, defs))
}

async fn run(paths: &[std::path::PathBuf]) -> ExitCode {
    let (cfg, registry, defs) = match prepare(paths, Plugins::Load) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Err(e) = sluice_sdk::fs::create_private_dir(&cfg.host.data_dir) {
        eprintln!(
            "error: cannot create data_dir {}: {e}",
            cfg.host.data_dir.display()
        );
        return ExitCode::from(1);
    }
    // Held until `run` returns: `dlq replay` and `offsets reset` refuse while it is.
    let mut _locks = Vec::with_capacity(defs.len());
    for d in &defs {
        match lock::acquire(&cfg.host.data_dir, &d.name) {
            Ok(l) => _locks.push(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let env = Arc::new(HostEnv {
        registry,
        metrics: Arc::new(metrics::Metrics::new()),
        data_dir: cfg.host.data_dir.clone(),
        shutdown_timeout: cfg.host.shutdown_timeout,
    });
    let statuses: Vec<Arc<PipelineStatus>> = defs
        .iter()
        .map(|d| Arc::new(PipelineStatus::new(&d.name)))
        .collect();
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();

    let admin = match &cfg.host.admin {
        None => None,
        Some(a) => {
            let state = Arc::new(admin::AdminState {
                pipelines: statuses.clone(),
                metrics: env.metrics.clone(),
            });
            match admin::start(a, state, stop.clone()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("error: admin listener {}: {e}", a.listen);
                    return ExitCode::from(1);
                }
            }
        }
    };

    let mut tasks = tokio::task::JoinSet::new();
    let mut task_status = std::collections::HashMap::new();
    for (def, status) in defs.into_iter().zip(statuses.iter().cloned()) {
        let task = tasks.spawn(pipeline::supervise(
            Arc::new(def),
            env.clone(),
            status.clone(),
            stop.clone(),
            abort.clone(),
        ));
        task_status.insert(task.id(), status);
    }

    let names = statuses.iter().map(|s| s.name.clone()).collect();
    tokio::spawn(progress::run(env.metrics.clone(), names, stop.clone()));
    let signals = {
        let stop = stop.clone();
        let abort = abort.clone();
        let timeout = env.shutdown_timeout;
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "shutting down: draining in-flight batches (at most {})",
                humantime::format_duration(timeout)
            );
            stop.cancel();
            let grace = tokio::select! {
                _ = tokio::time::sleep(timeout) => {
                    tracing::warn!("shutdown timeout reached: abandoning in-flight deliveries; undelivered records will be read again on the next start");
                    FORCED_EXIT_GRACE
                }
                _ = wait_for_signal() => {
                    tracing::warn!("second signal: stopping at once without waiting for delivery; undelivered records will be read again on the next start");
                    SECOND_SIGNAL_GRACE
                }
            };
            abort.cancel();
            // Pipelines drop their in-flight work at `abort` and return within a fraction
            // of a second; if anything still holds on (a connector blocking a thread, a third
            // party library), the process does not wait for it.
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = wait_for_signal() => {}
            }
            tracing::error!("shutdown forced: exiting with work not finished; undelivered records will be read again on the next start");
            std::process::exit(EXIT_FORCED);
        })
    };
    let mut crashed = false;
    while let Some(joined) = tasks.join_next_with_id().await {
        // `supervise` catches the panics of a pipeline run; this is the last line of defence,
        // so a dead pipeline is never silent.
        if let Err(e) = joined {
            crashed = true;
            let id = e.id();
            let text = if e.is_panic() {
                pipeline::panic_text(&*e.into_panic())
            } else {
                e.to_string()
            };
            tracing::error!(error = %text, "a pipeline supervisor ended abnormally");
            if let Some(status) = task_status.get(&id) {
                status.set_failed(format!("supervisor panicked: {text}"));
            }
        }
    }
    signals.abort();
    stop.cancel();
    if let Some(a) = admin {
        let _ = a.await;
    }
    if abort.is_cancelled() {
        tracing::warn!("sluice stopped before everything was delivered (shutdown forced); undelivered records will be read again on the next start");
        return ExitCode::from(EXIT_FORCED as u8);
    }
    if crashed {
        tracing::error!("sluice stopped: a pipeline supervisor crashed");
        return ExitCode::from(1);
    }
    tracing::info!("sluice stopped");
    ExitCode::SUCCESS
}

/// Exit status of `sluice run` when the shutdown was forced (the shutdown timeout passed, or
/// a second signal came) with deliveries abandoned: the rest is read again on the next start.
const EXIT_FORCED: i32 = 1;
/// How long `run` may still take after the shutdown timeout before the process exits anyway.
const FORCED_EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);
/// The same after a second signal, which asks to stop at once.
const SECOND_SIGNAL_GRACE: std::time::Duration = std::time::Duration::from_millis(700);

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn validate(paths: &[std::path::PathBuf]) -> ExitCode {
    match prepare(paths, Plugins::CheckOnly) {
        Ok((_, _, defs)) => emit(&format!("ok: {} pipeline(s) valid\n", defs.len())),
        Err(code) => code,
    }
}

fn connectors(paths: &[std::path::PathBuf], as_json: bool) -> ExitCode {
    let plugins = if paths.is_empty() {
        Vec::new()
    } else {
        match config::load(paths, &registry::compiled_in()) {
            Ok(c) => c.host.plugins,
            Err(e) => {
                print_errors(&e);
                return ExitCode::from(1);
            }
        }
    };
    let registry = match registry::with_plugins(&plugins) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let rows: Vec<serde_json::Value> = registry
        .connectors()
        .into_iter()
        .map(|c| {
            let (provider, path, plugin, sdk) = match &c.provider {
                Provider::BuiltIn => ("built-in", None, None, None),
                Provider::Plugin {
                    path,
                    plugin_name,
                    plugin_version,
                    sdk_version,
                } => (
                    "plugin",
                    Some(path.display().to_string()),
                    Some(format!("{plugin_name} {plugin_version}")),
                    Some(sdk_version.clone()),
                ),
            };
            serde_json::json!({
                "type": c.type_name,
                "kind": c.kind.to_string(),
                "version": c.version,
                "provider": provider,
                "plugin": plugin,
                "sdk": sdk,
                "path": path,
            })
        })
        .collect();
    if as_json {
        return emit(&format!("{}\n", serde_json::Value::Array(rows)));
    }
    use std::fmt::Write as _;
    let mut text = format!("{:<20} {:<12} {:<10} PROVIDER\n", "TYPE", "KIND", "VERSION");
    for (c, row) in registry.connectors().into_iter().zip(&rows) {
        let provider = match &c.provider {
            Provider::BuiltIn => "built-in".to_string(),
            Provider::Plugin {
                path, sdk_version, ..
            } => format!(
                "plugin {} (sluice-sdk {sdk_version}, {})",
                row["plugin"].as_str().unwrap_or_default(),
                path.display()
            ),
        };
        let _ = writeln!(
            text,
            "{:<20} {:<12} {:<10} {provider}",
            c.type_name,
            c.kind.to_string(),
            c.version
        );
    }
    emit(&text)
}

fn show_offsets(paths: &[std::path::PathBuf], as_json: bool) -> ExitCode {
    let registry = registry::compiled_in();
    let cfg = match config::load(paths, &registry) {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e);
            return ExitCode::from(1);
        }
    };
    let mut out = serde_json::Map::new();
    for p in &cfg.pipelines {
        let path = offsets::OffsetStore::path_for(&cfg.host.data_dir, &p.name);
        let entry = match offsets::OffsetStore::read(&path) {
            Ok(Some(pos)) => serde_json::json!({ "store": path, "positions": pos }),
            Ok(None) => serde_json::json!({ "store": path, "positions": {},
                "note": registry.upstream_positions(&p.source.type_name).unwrap_or("nothing committed yet") }),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        let mut entry = entry;
        if let Some(up) = upstream::positions(p, &cfg.host.data_dir) {
            entry["upstream"] = up;
        }
        out.insert(p.name.clone(), entry);
    }
    if as_json {
        return emit(&format!("{}\n", serde_json::Value::Object(out)));
    }
    use std::fmt::Write as _;
    let mut text = String::new();
    for (name, e) in &out {
        let _ = writeln!(text, "{name}:");
        match e["positions"].as_object() {
            Some(m) if !m.is_empty() => {
                for (k, v) in m {
                    let _ = writeln!(text, "  {k}: {}", v.as_str().unwrap_or_default());
                }
            }
            _ if !e["upstream"].is_null() => {}
            _ => {
                let _ = writeln!(text, "  (none) {}", e["note"].as_str().unwrap_or_default());
            }
        }
        text.push_str(&upstream::describe(&e["upstream"]));
    }
    emit(&text)
}

/// `sluice offsets reset`: prints the positions before and after (a table, or JSON).
fn reset_offsets(args: &ResetArgs) -> ExitCode {
    let registry = registry::compiled_in();
    let cfg = match config::load(&args.config, &registry) {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e);
            return ExitCode::from(1);
        }
    };
    let outcome = offsets::reset::To::parse(&args.to).and_then(|to| {
        offsets::reset::reset(&cfg, &args.pipeline, &to, &args.partition, args.dry_run)
    });
    match outcome {
        Ok(o) if args.json => match serde_json::to_string_pretty(&o) {
            Ok(t) => emit(&format!("{t}\n")),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Ok(o) => emit(&o.table()),
        Err(e) => {
            eprintln!("error: offsets reset refused: {e}");
            ExitCode::from(1)
        }
    }
}

/// `sluice replay`: 0 when the range was sent to its end, 1 otherwise.
async fn replay(args: &ReplayArgs) -> ExitCode {
    let (cfg, registry, _) = match prepare(&args.config, Plugins::Load) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let req = replay::Request {
        pipeline: &args.pipeline,
        ask: replay::range::Ask {
            from: &args.from,
            to: args.to.as_deref(),
            partitions: &args.partition,
        },
        filters: &args.filter,
        sink: args.sink.as_deref(),
        dry_run: args.dry_run,
    };
    match replay::run(&cfg, registry, req).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `sluice decrypt`: opens the envelopes of JSON lines on stdin, writing the lines to stdout.
/// Stops with exit 1 at the first line it cannot decrypt.
fn decrypt(key_env: &[String], key_id: &[String], fields: &[String], pipeline: &str) -> ExitCode {
    use std::io::{BufRead, Write};
    use transform::privacy::decrypt::Keyring;
    if key_env.len() != key_id.len() {
        eprintln!("error: give one --key-id per --key-env, in the same order");
        return ExitCode::from(2);
    }
    let keys = match Keyring::from_env(
        key_id
            .iter()
            .map(String::as_str)
            .zip(key_env.iter().map(String::as_str)),
    ) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let n = n + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: line {n}: {e}");
                return ExitCode::from(1);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut value: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: line {n}: not JSON: {e}");
                return ExitCode::from(1);
            }
        };
        let opened = if fields.is_empty() {
            keys.open_all(pipeline, "", &mut value).map(|_| ())
        } else {
            fields
                .iter()
                .try_for_each(|f| match sluice_sdk::json::get_mut(&mut value, f) {
                    Some(v) if Keyring::is_envelope(v) => keys.open_all(pipeline, f, v).map(|_| ()),
                    _ => Ok(()),
                })
        };
        if let Err((path, e)) = opened {
            eprintln!("error: line {n}: cannot decrypt `{path}`: {e}");
            return ExitCode::from(1);
        }
        if writeln!(out, "{value}").is_err() {
            return ExitCode::from(1);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// A reader of stored records or digest entries.
type Reader = Box<dyn integrity::read::RecordReader>;

/// The record and digest readers `sluice verify` was pointed at.
fn verify_readers(a: &VerifyArgs) -> Result<(Reader, Reader), String> {
    use integrity::read;
    let records: Reader = match a {
        VerifyArgs { file: Some(f), .. } => {
            Box::new(read::file::FileReader::open(f).map_err(|e| e.to_string())?)
        }
        VerifyArgs {
            postgres: Some(url),
            table: Some(table),
            column: Some(column),
            ..
        } => {
            #[cfg(feature = "postgres")]
            {
                Box::new(
                    read::postgres::PostgresReader::open(
                        url,
                        &postgres_tls(a)?,
                        table,
                        column,
                        a.order_by.as_deref(),
                    )
                    .map_err(|e| e.to_string())?,
                )
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = (url, table, column);
                return Err("this build has no PostgreSQL support".into());
            }
        }
        VerifyArgs {
            elasticsearch: Some(url),
            index: Some(index),
            ..
        } => {
            #[cfg(feature = "elasticsearch")]
            {
                Box::new(
                    read::elasticsearch::EsReader::open(
                        url,
                        index,
                        a.elasticsearch_ca_file.as_deref(),
                    )
                    .map_err(|e| e.to_string())?,
                )
            }
            #[cfg(not(feature = "elasticsearch"))]
            {
                let _ = (url, index);
                return Err("this build has no Elasticsearch support".into());
            }
        }
        VerifyArgs {
            kafka: Some(brokers),
            topic: Some(topic),
            ..
        } => kafka_reader(brokers, topic, &a.kafka_option)?,
        _ => return Err("give one of --file, --postgres, --elasticsearch, --kafka".into()),
    };
    let digests: Reader = match (&a.digests, &a.digests_kafka, &a.digests_topic) {
        (Some(path), _, _) => {
            Box::new(read::file::FileReader::open(path).map_err(|e| e.to_string())?)
        }
        (None, Some(brokers), Some(topic)) => kafka_reader(brokers, topic, &a.kafka_option)?,
        _ => return Err("give --digests or --digests-kafka with --digests-topic".into()),
    };
    Ok((records, digests))
}

fn kafka_reader(brokers: &str, topic: &str, options: &[String]) -> Result<Reader, String> {
    #[cfg(feature = "kafka")]
    {
        let options = sluice_kafka::Options::from_pairs(options.iter().map(String::as_str))
            .map_err(|e| format!("--kafka-option {e}"))?;
        Ok(Box::new(
            integrity::read::kafka::KafkaReader::open(brokers, topic, &options)
                .map_err(|e| e.to_string())?,
        ))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (brokers, topic, options);
        Err("this build has no Kafka support".into())
    }
}

/// `--postgres-tls` and `--postgres-ca-file` as the sink's `tls:` setting.
#[cfg(feature = "postgres")]
fn postgres_tls(a: &VerifyArgs) -> Result<sluice_postgres::TlsConfig, String> {
    let mode = serde_json::from_value(serde_json::Value::String(a.postgres_tls.clone()))
        .map_err(|e| format!("--postgres-tls: {e}"))?;
    Ok(sluice_postgres::TlsConfig {
        mode,
        ca_file: a.postgres_ca_file.clone(),
    })
}

/// `sluice verify`: 0 when everything checks out, 1 on any finding, 2 when inputs can't be read.
fn verify(a: &VerifyArgs) -> ExitCode {
    let (records, digests) = match verify_readers(a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let inputs = integrity::verify::Inputs {
        records,
        dlq: a.dlq.clone(),
        digests,
        public_keys: a.public_key.clone(),
        mac_keys: a.mac_key.clone(),
        field: a.field.clone(),
        sink: a.sink.clone(),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = match integrity::verify::verify(inputs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => format!("{t}\n"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        integrity::verify::summary(&report)
    };
    let written = emit(&text);
    if report.ok {
        written
    } else {
        ExitCode::from(1)
    }
}

/// Runs a command that needs the async runtime (`run`, `dlq replay`).
fn on_runtime(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(command);
    // A blocking task still holding on (a connector's thread) must not keep a stopped host
    // alive.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Connectors { config, json } => connectors(&config, json),
        Command::Offsets {
            command: Some(OffsetsCommand::Reset(args)),
            ..
        } => reset_offsets(&args),
        Command::Offsets { config, json, .. } => show_offsets(&config, json),
        Command::Replay(args) => on_runtime(replay(&args)),
        Command::Integrity {
            command: IntegrityCommand::Keygen,
        } => emit(&integrity::keygen_text()),
        Command::Verify(args) => verify(&args),
        Command::Decrypt {
            key_env,
            key_id,
            field,
            pipeline,
        } => decrypt(&key_env, &key_id, &field, &pipeline),
        Command::Dlq {
            command:
                DlqCommand::List {
                    config,
                    pipeline,
                    json,
                },
        } => dlq::commands::list(&config, pipeline.as_deref(), json),
        Command::Dlq {
            command:
                DlqCommand::Show {
                    config,
                    pipeline,
                    kind,
                    limit,
                    json,
                },
        } => dlq::commands::show(&config, &pipeline, kind.as_deref(), limit, json),
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    config,
                    pipeline,
                    sink,
                    kind,
                    since,
                    until,
                    limit,
                    dry_run,
                },
        } => on_runtime(dlq::commands::replay(dlq::commands::ReplayArgs {
            config,
            pipeline,
            sink,
            kind,
            since,
            until,
            limit,
            dry_run,
        })),
        Command::Run { config } => on_runtime(run(&config)),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;

    extern "C" {
        fn malloc(size: usize) -> *mut c_void;
        fn free(p: *mut c_void);
        fn mi_is_in_heap_region(p: *const c_void) -> bool;
    }

    /// C code in the process (librdkafka above all) allocates with `malloc`: it must
    /// get mimalloc's, not glibc's.
    #[test]
    fn c_allocations_go_to_mimalloc() {
        // SAFETY: a plain allocation, checked and freed here.
        let ours = unsafe {
            let p = malloc(64);
            assert!(!p.is_null());
            let ours = mi_is_in_heap_region(p);
            free(p);
            ours
        };
        assert!(
            ours,
            "malloc is not mimalloc's: the `override` feature is off"
        );
    }
}
