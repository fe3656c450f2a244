use std::sync::Arc;

use sluice_sdk::{views, Origin, Record};

use super::*;

fn sink(path: &str, time_field: Option<&str>) -> FileSink {
    FileSink::new(FileSinkConfig {
        path: path.to_string(),
        time_field: time_field.map(str::to_string),
        fsync: false,
        max_open_files: 64,
    })
    .unwrap()
}

fn records(values: &[&str]) -> Vec<Record> {
    let stream: Arc<str> = Arc::from("t");
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Record::new(v.to_string(), Origin::new(stream.clone(), 0, i as i64)))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_torn_last_line_is_cut_back_to_the_last_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
    drop(open_file(&path).unwrap());
    assert_eq!(read(&path), "{\"a\":1}\n{\"a\":2}\n");
    std::fs::write(&path, "no newline at all").unwrap();
    drop(open_file(&path).unwrap());
    assert_eq!(read(&path), "");
}

#[tokio::test]
async fn date_parts_of_the_event_time_pick_the_file_and_roll_over_at_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/purview/audit_%Y%m%d.jsonl", dir.path().display());
    let mut s = sink(&path, Some("timestamp"));
    s.open(test_context()).await.unwrap();
    let recs = records(&[
        r#"{"n":1,"timestamp":"2026-12-05T23:59:59Z"}"#,
        r#"{"n":2,"timestamp":"2026-12-06T00:00:00Z"}"#,
        r#"{"n":3,"timestamp":1796515200}"#,
        r#"{"n":4,"timestamp":"2026-12-05T12:00:00.5Z"}"#,
    ]);
    let out = s.send(&views(&recs)).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 4]);
    let day5 = dir.path().join("purview/audit_20261205.jsonl");
    let day6 = dir.path().join("purview/audit_20261206.jsonl");
    let lines5: Vec<String> = read(&day5).lines().map(str::to_string).collect();
    let lines6: Vec<String> = read(&day6).lines().map(str::to_string).collect();
    assert_eq!(
        lines5,
        [
            r#"{"n":1,"timestamp":"2026-12-05T23:59:59Z"}"#,
            r#"{"n":4,"timestamp":"2026-12-05T12:00:00.5Z"}"#
        ]
    );
    assert_eq!(
        lines6,
        [
            r#"{"n":2,"timestamp":"2026-12-06T00:00:00Z"}"#,
            r#"{"n":3,"timestamp":1796515200}"#
        ]
    );
}

#[tokio::test]
async fn without_the_time_field_the_record_timestamp_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/audit_%Y-%m-%d_%H.jsonl", dir.path().display());
    let s = sink(&path, Some("timestamp"));
    let mut recs = records(&[r#"{"n":1}"#, r#"{"n":2,"timestamp":"not a time"}"#]);
    for r in &mut recs {
        r.timestamp = Some(1_796_536_000_000); // 2026-12-06T05:46:40Z
    }
    let out = s.send(&views(&recs)).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 2]);
    assert_eq!(
        read(&dir.path().join("audit_2026-12-06_05.jsonl")),
        "{\"n\":1}\n{\"n\":2,\"timestamp\":\"not a time\"}\n"
    );
}

#[tokio::test]
async fn field_templates_make_a_file_per_value_and_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}/tenants/{{{{ tenant }}}}/events.jsonl",
        dir.path().display()
    );
    let s = sink(&path, None);
    let recs = records(&[
        r#"{"tenant":"acme","n":1}"#,
        r#"{"tenant":"globex","n":2}"#,
        r#"{"tenant":"acme","n":3}"#,
        r#"{"tenant":7,"n":4}"#,
    ]);
    let out = s.send(&views(&recs)).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 4]);
    let t = dir.path().join("tenants");
    assert_eq!(
        read(&t.join("acme/events.jsonl")),
        "{\"tenant\":\"acme\",\"n\":1}\n{\"tenant\":\"acme\",\"n\":3}\n"
    );
    assert_eq!(
        read(&t.join("globex/events.jsonl")),
        "{\"tenant\":\"globex\",\"n\":2}\n"
    );
    assert_eq!(read(&t.join("7/events.jsonl")), "{\"tenant\":7,\"n\":4}\n");
}

#[tokio::test]
async fn a_rendered_path_that_leaves_the_directory_is_refused_and_the_others_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("logs");
    let path = format!("{}/{{{{ tenant }}}}/events.jsonl", base.display());
    let s = sink(&path, None);
    let recs = records(&[
        r#"{"tenant":"../escaped"}"#,
        r#"{"tenant":"/etc/passwd"}"#,
        r#"{"tenant":"a/../../b"}"#,
        "{\"tenant\":\"nul\\u0000x\"}",
        r#"{"tenant":"."}"#,
        r#"{"tenant":"ok"}"#,
        r#"{"other":"no tenant"}"#,
        "not json",
    ]);
    let out = s.send(&views(&recs)).await.unwrap();
    for (i, o) in out.iter().enumerate().take(4) {
        match o {
            Outcome::Reject(r) => {
                assert_eq!(r.kind, "file.path_outside_directory", "record {i}");
                let first = r.message.lines().next().unwrap();
                assert!(first.contains(&format!("{}/", base.display())), "{first}");
                assert!(
                    !first.contains("passwd") && !first.contains("escaped"),
                    "{first}"
                );
            }
            other => panic!("record {i}: {other:?}"),
        }
    }
    assert!(matches!(&out[4], Outcome::Reject(r) if r.kind == "file.path_outside_directory"));
    assert_eq!(out[5], Outcome::Delivered);
    for o in &out[6..] {
        assert!(
            matches!(o, Outcome::Reject(r) if r.kind == "file.path_template"),
            "{o:?}"
        );
    }
    assert_eq!(read(&base.join("ok/events.jsonl")), "{\"tenant\":\"ok\"}\n");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["logs"]);
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1);
}

#[tokio::test]
async fn more_files_than_max_open_files_are_all_written_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/{{{{ k }}}}.jsonl", dir.path().display());
    let s = FileSink::new(FileSinkConfig {
        path,
        time_field: None,
        fsync: true,
        max_open_files: 2,
    })
    .unwrap();
    for round in 0..3 {
        let values: Vec<String> = (0..5)
            .map(|k| format!("{{\"k\":\"f{k}\",\"round\":{round}}}"))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let recs = records(&refs);
        assert_eq!(
            s.send(&views(&recs)).await.unwrap(),
            vec![Outcome::Delivered; 5]
        );
        assert!(s.state.lock().open.len() <= 2);
    }
    for k in 0..5 {
        let text = read(&dir.path().join(format!("f{k}.jsonl")));
        let rounds: Vec<&str> = text.lines().collect();
        assert_eq!(
            rounds,
            (0..3)
                .map(|r| format!("{{\"k\":\"f{k}\",\"round\":{r}}}"))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn bad_paths_are_refused_at_the_option() {
    let bad = |path: &str| {
        FileSink::new(FileSinkConfig {
            path: path.into(),
            time_field: None,
            fsync: false,
            max_open_files: 64,
        })
        .err()
        .unwrap()
        .to_string()
    };
    assert!(bad("/x/%Q.jsonl").contains("unsupported `%Q`"));
    assert!(bad("/x/{{ a.jsonl").contains("unclosed"));
    assert!(bad("").contains("must not be empty"));
}

fn test_context() -> SinkContext {
    SinkContext {
        pipeline: Arc::from("p"),
        health: sluice_sdk::Health::default(),
    }
}
