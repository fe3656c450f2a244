//! `sluice validate` and the printing commands, with the real binary: every problem of every
//! pipeline is listed with `file:line:col`, names that would share files are refused, `${VAR}`
//! values are taken literally, plugins are not loaded, and a reader that goes away early
//! ends a command quietly.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn printing_commands_exit_quietly_when_the_reader_goes_away() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        "pipelines:\n  - name: a\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n",
    );
    let cfg = cfg.display().to_string();
    for args in [
        vec!["connectors", "--json"],
        vec!["connectors"],
        vec!["offsets", cfg.as_str()],
        vec!["validate", cfg.as_str()],
    ] {
        let mut child = Command::new(sluice_bin())
            .args(&args)
            .current_dir(w.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        // Close the read end before the command writes: its write then fails with EPIPE.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        let status = child.wait().expect("wait");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: nothing on stderr, got {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {status:?}");
    }
}

#[test]
fn names_that_would_share_files_are_refused() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        "pipelines:\n  - name: a_b\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n  - name: a/b\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n",
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("c.yaml:5:5: pipeline name `a/b` has the character '/'"),
        "{err}"
    );
}

#[test]
fn validate_lists_every_problem_of_every_pipeline_with_its_position() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        "pipelines:\n  - name: one\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n    bach: { max_events: 10 }\n    retry: { max_attempts: lots }\n  - name: two\n    source: { type: generator, count: 1 }\n    sink: { type: postgres, url: \"postgres://u:pw-s3cret@db:notaport/x\", table: t }\n    rate_limit: { events_per_second: 0 }\n  - name: three\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n    transforms:\n      - { type: filter, field: x, matches: \"(\" }\n",
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let at = |pos: &str, text: &str| {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("c.yaml:{pos}: ")) && l.contains(text)),
            "no `{text}` at {pos}:\n{err}"
        );
    };
    at("5:5", "unknown field `bach`");
    at("5:5", "did you mean `batch`?");
    at(
        "6:14",
        "max_attempts: invalid type: string \"lots\", expected a whole number",
    );
    at(
        "9:29",
        "not a valid PostgreSQL connection URL: invalid port",
    );
    at("10:19", "events_per_second must be at least 1");
    at("15:35", "invalid regex");
    assert!(
        !err.contains("pw-s3cret") && !err.contains("notaport"),
        "{err}"
    );
    assert!(!err.contains("u32"), "{err}");
}

#[test]
fn a_tab_in_the_indentation_is_pointed_at() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        "pipelines:\n  - name: one\n    source:\n    \ttype: generator\n    sink: { type: blackhole }\n",
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("c.yaml:4:5: a tab is used for indentation"),
        "{err}"
    );
}

#[test]
fn environment_values_are_taken_literally() {
    let w = Workdir::new();
    let nasty = "pa\"ss \\ # not a comment\nextra_key: 1";
    let cfg = w.config(
        "c.yaml",
        "host: { data_dir: \"{dir}/data\" }\npipelines:\n  - name: env\n    source: { type: generator, count: 2 }\n    transforms:\n      - { type: add_fields, fields: { plain: ${NASTY}, quoted: \"${NASTY}\", cost: $$5 } }\n    sink: { type: file, path: ${OUT} }\n",
    );
    let out = w.join("out \"#x.jsonl");
    let o = Command::new(sluice_bin())
        .args(["run", &cfg.display().to_string()])
        .current_dir(w.path())
        .env("NASTY", nasty)
        .env("OUT", &out)
        .output()
        .expect("run sluice");
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_jsonl(&out);
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r["plain"], nasty);
        assert_eq!(r["quoted"], nasty);
        assert_eq!(r["cost"], "$5");
        assert!(r.get("extra_key").is_none(), "{r}");
    }
}

#[test]
fn a_short_secret_is_not_echoed() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        "pipelines:\n  - name: one\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n    concurrency: ${WORKERS}\n",
    );
    let o = Command::new(sluice_bin())
        .args(["validate", &cfg.display().to_string()])
        .current_dir(w.path())
        .env("WORKERS", "q7")
        .output()
        .expect("run sluice");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("c.yaml:5:5: pipelines[0].concurrency: invalid type"),
        "{err}"
    );
    assert!(!err.contains("q7"), "{err}");
}

/// Validate never opens a plugin library (opening one runs its initialisers): the test
/// plugin's initialiser leaves a trace when it runs, and validate leaves none; run does.
#[test]
fn validate_checks_plugins_without_loading_them() {
    let lib = sluice_testkit::conformance::cdylib("sluice-test-plugin");
    let w = Workdir::new();
    let marker = w.join("initialiser-ran");
    let yaml = format!(
        "host:\n  data_dir: \"{{dir}}/data\"\n  plugins: [ \"{}\" ]\npipelines:\n  - name: p\n    source: {{ type: generator, count: 3 }}\n    transforms:\n      - {{ type: set, field: x, value: 1 }}\n    sink: {{ type: panic_once, path: \"{{dir}}/out.jsonl\", marker: never }}\n",
        lib.display()
    );
    let cfg = w.config("c.yaml", &yaml);
    let with_marker = |args: &[&str]| {
        Command::new(sluice_bin())
            .args(args)
            .current_dir(w.path())
            .env("SLUICE_TEST_PLUGIN_INIT_MARKER", &marker)
            .output()
            .expect("run sluice")
    };
    let o = with_marker(&["validate", &cfg.display().to_string()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("not loaded: validate never runs plugin code"),
        "{err}"
    );
    assert!(
        err.contains("sink type `panic_once` is not built in: provided by a plugin, not loaded by validate; checked at run"),
        "{err}"
    );
    assert!(!marker.exists(), "validate ran the library's initialiser");

    // The rest of the pipeline is still checked.
    let bad = w.config("bad.yaml", &yaml.replace("value: 1", "valeu: 1"));
    let o = with_marker(&["validate", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did you mean `value`?"),
        "{}",
        stderr(&o)
    );
    assert!(!marker.exists());

    let o = with_marker(&["run", &cfg.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&marker).expect("run loads the plugin"),
        "loaded\n"
    );
    assert_eq!(count_lines(&w.join("out.jsonl")), 3);
}

#[test]
fn validate_refuses_a_plugin_that_is_not_a_library() {
    let w = Workdir::new();
    std::fs::write(w.join("notes.txt"), "just text\n").expect("write");
    let cfg = w.config(
        "c.yaml",
        "host:\n  plugins: [ \"{dir}/notes.txt\", \"{dir}/missing.so\" ]\npipelines:\n  - name: p\n    source: { type: generator, count: 1 }\n    sink: { type: blackhole }\n",
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("notes.txt is not a loadable library: not a shared library"),
        "{err}"
    );
    assert!(err.contains("missing.so: cannot open the file"), "{err}");
    // The host binary is an executable, not a library.
    let cfg = w.config(
        "exe.yaml",
        &format!(
            "host:\n  plugins: [ \"{}\" ]\npipelines:\n  - name: p\n    source: {{ type: generator, count: 1 }}\n    sink: {{ type: blackhole }}\n",
            sluice_bin().display()
        ),
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a shared library"),
        "{}",
        stderr(&o)
    );
}

/// An unknown type with no plugin listed is still an error.
#[test]
fn an_unknown_type_without_plugins_is_an_error() {
    let w = Workdir::new();
    let cfg = w.config(
        "c.yaml",
        "pipelines:\n  - name: p\n    source: { type: generator, count: 1 }\n    sink: { type: nosuch }\n",
    );
    let o = w.sluice(&["validate", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("c.yaml:4:13:"), "{}", stderr(&o));
}
