//! The `file` source and `file` DLQ under faults a user meets: a line far over
//! `max_line_bytes`, and a dead-letter queue on a full disk (a real tmpfs; needs root, as the
//! CI has, and fails rather than skips without it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount (this test needs root)");
        assert!(
            out.status.success(),
            "mount failed (this test needs root and mount permission): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn position(data: &Path, pipeline: &str) -> Option<u64> {
    stored_offsets(data, pipeline)?["0"].as_str()?.parse().ok()
}

#[test]
fn a_line_over_max_line_bytes_is_dead_lettered_as_too_large_with_its_position() {
    let w = Workdir::new();
    let input = w.join("in.jsonl");
    let long = format!("{{\"blob\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let text = format!("{{\"n\":1}}\n{long}\n{{\"n\":3}}\n");
    std::fs::write(&input, &text).unwrap();
    let cfg = w.config(
        "p.yaml",
        r#"
host: { data_dir: "{dir}/data" }
pipelines:
  - name: lines
    source: { type: file, path: "{dir}/in.jsonl", at_end: stop }
    sink: { type: file, path: "{dir}/out.jsonl" }
"#,
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let out = read_jsonl(&w.join("out.jsonl"));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["n"], 1);
    assert_eq!(out[1]["n"], 3);
    let dlq = read_jsonl(&w.join("data/dlq/lines.jsonl"));
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d["__connect.errors.exception.class.name"], "too_large");
    assert_eq!(d["__connect.errors.stage"], "VALUE_CONVERTER");
    assert_eq!(d["__connect.errors.offset"], "8");
    let msg = d["__connect.errors.exception.message"].as_str().unwrap();
    assert!(msg.contains(&format!("{} bytes", long.len())), "{msg}");
    assert_eq!(d["value"].as_str().unwrap(), &long[..1024]);
    assert_eq!(position(&w.join("data"), "lines"), Some(text.len() as u64));
    assert!(
        !s.logs().contains("xxxxxxxx"),
        "record contents in the logs"
    );
}

#[test]
fn a_dlq_on_a_full_disk_holds_the_position_and_never_glues_letters() {
    let w = Workdir::new();
    let fs_dir = w.join("dlqfs");
    let _fs = Tmpfs::mount(&fs_dir, "64k");
    let input = w.join("in.jsonl");
    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&input)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    };
    append("{\"n\":0}\nnot json\n{\"n\":2}\n");
    let cfg = w.config(
        "p.yaml",
        r#"
host: { data_dir: "{dir}/data" }
pipelines:
  - name: lines
    source: { type: file, path: "{dir}/in.jsonl" }
    sink: { type: file, path: "{dir}/out.jsonl" }
    dead_letter: { type: file, path: "{dir}/dlqfs/lines.jsonl" }
    commit_interval: 50ms
"#,
    );
    let mut s = w.start(&cfg);
    let dlq_path = fs_dir.join("lines.jsonl");
    wait_for(
        Duration::from_secs(20),
        "the first letter, committed",
        || {
            (lines(&dlq_path).len() == 1 && position(&w.join("data"), "lines") == Some(25))
                .then_some(())
        },
    );

    // The disk fills up; the next letter is larger than the room left in the DLQ file's last
    // page, so the kernel takes part of it and refuses the rest.
    let filler = fs_dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![b'x'; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let big_at = std::fs::metadata(&input).unwrap().len();
    append(&format!(
        "not json {}\n{{\"n\":4}}\n",
        "y".repeat(16 * 1024)
    ));
    wait_for(
        Duration::from_secs(20),
        "the DLQ failure in the logs",
        || s.logs().contains("No space left").then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    // The position never passes the record the DLQ could not take.
    let held = position(&w.join("data"), "lines").unwrap_or(0);
    assert!(
        held <= big_at,
        "committed {held} past the record at {big_at}"
    );

    // Room again: the restarted pipeline dead-letters it, whole, on its own line.
    std::fs::remove_file(&filler).unwrap();
    let end = std::fs::metadata(&input).unwrap().len();
    wait_for(Duration::from_secs(30), "the position at the end", || {
        (position(&w.join("data"), "lines") == Some(end)).then_some(())
    });
    let raw = std::fs::read_to_string(&dlq_path).unwrap();
    assert!(raw.ends_with('\n'), "torn DLQ tail");
    let offsets: Vec<String> = raw
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("glued or torn DLQ line ({e}): {:.200}", l));
            v["__connect.errors.offset"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        offsets,
        vec!["8".to_string(), big_at.to_string()],
        "{}",
        s.logs()
    );
    let mut ns: Vec<i64> = read_jsonl(&w.join("out.jsonl"))
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    ns.dedup();
    assert_eq!(ns, vec![0, 2, 4], "every good line delivered");
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
}
