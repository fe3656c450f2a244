//! `sluice-bench SCENARIO...`: throughput of the real `sluice` binary, records/s and CPU
//! microseconds per record (user+sys of the sluice process). Not a test: run it on a quiet
//! machine and record the figures in docs/BENCHMARKS.md.
//!
//! Build both binaries with one profile and run the bench from the same target directory:
//! `cargo build --release -p sluice -p sluice-bench -p sluice-file-plugin -p sluice-http-sinks-plugin && target/release/sluice-bench all`.

mod boundary;
mod dlq;
mod fanout;
mod generator;
mod http_ingest;
mod http_sink;
mod integrity;
mod json_scan;
mod kafka;
mod measure;
mod plugin;
mod stores;

use std::process::ExitCode;

/// With `--features mimalloc`, every allocation of this process (librdkafka's included) goes
/// to mimalloc, as in `sluice`; by default the bench uses the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A named scenario and what it runs.
struct Scenario {
    name: &'static str,
    about: &'static str,
    run: fn() -> Result<Vec<measure::Report>, String>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "generator-file",
        about: "1,000,000 generator events (~330 B) to a file sink, no transforms",
        run: generator::plain,
    },
    Scenario {
        name: "generator-file-transforms",
        about: "the same through one filter and one add_fields",
        run: generator::with_transforms,
    },
    Scenario {
        name: "generator-file-privacy",
        about: "generator -> file plain, through redact (email, ipv4, us_ssn over every string value) and through encrypt of one field",
        run: generator::privacy,
    },
    Scenario {
        name: "fanout",
        about: "1,000,000 generator events to file vs fanned out to file + blackhole + a counting HEC receiver; one named file sink without vs with a route on a field",
        run: fanout::run_all,
    },
    Scenario {
        name: "generator-file-plugin",
        about: "generator -> file and -> blackhole built in vs the same connectors loaded from a plugin (1,000-record batches, medians of 7 runs)",
        run: plugin::file,
    },
    Scenario {
        name: "generator-http-plugin",
        about: "generator -> elasticsearch and -> datadog_logs built in vs loaded from a plugin, counting receivers (1,000-record batches, medians of 7 runs)",
        run: plugin::http,
    },
    Scenario {
        name: "plugin-instructions",
        about: "the variants of the two plugin scenarios under callgrind: instructions per record, built in vs plugin (needs valgrind)",
        run: plugin::instructions,
    },
    Scenario {
        name: "plugin-boundary",
        about: "in process, one thread: a 1,000-record sink batch lent to a plugin, and a source batch encoded by a plugin (from records, or as a source writes it in place) and decoded by the host",
        run: boundary::run,
    },
    Scenario {
        name: "json-scan",
        about: "in process, one thread: the JSON check of a `format: json` source and a route's member scan over 100,000 of the Kafka scenarios' events, 20 times",
        run: json_scan::run,
    },
    Scenario {
        name: "http-ingest",
        about: "http_server -> blackhole: bulk posts of 1,000 events (~300 B) with fsync every 10ms, single-event posts with fsync always (64 connections, then 2,000 requests/s for p99)",
        run: http_ingest::run,
    },
    Scenario {
        name: "kafka-blackhole",
        about: "1,000,000 JSON events (~300 B) on a 4-partition topic, five interleaved rounds: bare rdkafka consumer vs sluice kafka(json|raw) -> blackhole, medians",
        run: kafka::blackhole,
    },
    Scenario {
        name: "kafka-replay",
        about: "the same topic: bare rdkafka consumer vs sluice replay (every partition, --from a day ago to the ends) -> blackhole",
        run: kafka::replay::run,
    },
    Scenario {
        name: "kafka-sinks",
        about: "the same topic: bare consumer, then sluice kafka -> each sink in kafka::SINKS (or those SLUICE_BENCH_SINKS names), and Kafka Connect standalone -> file (bench/scripts/fetch-connect.sh) when all run",
        run: kafka::all_sinks,
    },
    Scenario {
        name: "http-sink",
        about: "kafka -> http against a counting server: batch: ndjson (1,000,000 on 4 partitions) and one call per record with max_in_flight: 8, order kept and ordering: none (100,000 on 8 partitions), each after the bare consumer of its topic",
        run: http_sink::run_all,
    },
    Scenario {
        name: "dlq-replay",
        about: "sluice dlq replay of 1,000,000 file DLQ letters (~300 B records) into a blackhole sink",
        run: dlq::replay,
    },
    Scenario {
        name: "generator-postgres",
        about: "1,000,000 generator events (~330 B): psql \\copy into the default audit table vs sluice -> postgres (append, binary COPY)",
        run: stores::postgres,
    },
    Scenario {
        name: "integrity-stamp",
        about: "1,000,000 generator events (~330 B) -> file without and with `integrity:` (medians of 5 alternating runs): the CPU stamping adds per record",
        run: integrity::stamp,
    },
    Scenario {
        name: "verify",
        about: "sluice verify --file over the 1,000,000 stamped lines of an integrity run, with its digest log (median of 3)",
        run: integrity::verify,
    },
    Scenario {
        name: "generator-redis",
        about: "1,000,000 generator events (~330 B) -> redis stream (XADD, one pipelined round trip per batch)",
        run: stores::redis,
    },
];

fn main() -> ExitCode {
    // With mimalloc, also without transparent huge pages, as `sluice` runs (host/src/main.rs).
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The bare Kafka consumer runs as a child process so it is measured like sluice.
    if args.first().map(String::as_str) == Some("__bare-consumer") {
        return match kafka::bare_consumer_main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: sluice-bench all | SCENARIO...\n");
        for s in SCENARIOS {
            eprintln!("  {:<28} {}", s.name, s.about);
        }
        return ExitCode::from(2);
    }
    let chosen: Vec<&Scenario> = if args.iter().any(|a| a == "all") {
        SCENARIOS.iter().collect()
    } else {
        let mut v = Vec::new();
        for a in &args {
            match SCENARIOS.iter().find(|s| s.name == a) {
                Some(s) => v.push(s),
                None => {
                    eprintln!("unknown scenario {a}");
                    return ExitCode::from(2);
                }
            }
        }
        v
    };
    let mut failed = false;
    for s in chosen {
        match (s.run)() {
            Ok(reports) => {
                reports.iter().for_each(|r| println!("{r}"));
                // Each report is compared to the baseline before it (the first report, or
                // the last one marked as a baseline).
                let mut base: Option<&measure::Report> = None;
                for r in &reports {
                    match base {
                        Some(b) if !r.baseline => println!(
                            "{:<34} {:>6.1}% of the records/s of `{}`, {:.2}x its CPU per record",
                            r.scenario,
                            100.0 * r.per_second() / b.per_second(),
                            b.scenario,
                            r.cpu_us_per_record() / b.cpu_us_per_record()
                        ),
                        _ => base = Some(r),
                    }
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", s.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
