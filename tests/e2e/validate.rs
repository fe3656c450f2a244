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
