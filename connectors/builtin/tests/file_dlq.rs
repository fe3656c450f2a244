//! The file dead-letter queue at its I/O boundary: a torn tail left by a crash, a full disk
//! and a read-only file system (real tmpfs mounts; these tests need root, as the CI has, and
//! fail rather than skip without it), and the modes of what it creates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sluice_builtin::{FileDeadLetter, FileDeadLetterConfig};
use sluice_sdk::{BuildContext, DeadLetter, DeadLetterWriter, ErrorContext, Origin, Record, Stage};

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        run(
            &[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
            ],
            dir,
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    fn remount(&self, mode: &str) {
        run(&["mount", "-o", &format!("remount,{mode}")], &self.dir);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn run(args: &[&str], dir: &Path) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; this test needs root", args[0]));
    assert!(
        out.status.success(),
        "`{} {}` failed (this test needs root and mount permission): {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dlq(data_dir: &Path) -> FileDeadLetter {
    FileDeadLetter::new(
        FileDeadLetterConfig::default(),
        &BuildContext {
            pipeline: "audit".into(),
            data_dir: data_dir.to_path_buf(),
        },
    )
}

async fn write(dlq: &FileDeadLetter, offset: i64, value: &str) -> Result<(), String> {
    let record = Record::new(value.to_string(), Origin::new("in.jsonl".into(), 0, offset));
    let error = ErrorContext {
        pipeline: Arc::from("audit"),
        stage: Stage::Sink,
        kind: "rejected".into(),
        message: "refused".into(),
        attempts: 1,
        sink: None,
        replay: None,
    };
    dlq.write(&[DeadLetter {
        record: &record,
        error: &error,
    }])
    .await
    .map_err(|e| e.to_string())
}

/// Every line of the DLQ file parsed; the offsets of the letters in it.
fn offsets(path: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "torn last line: {text:?}"
    );
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("glued or torn line {l:?}: {e}"));
            v["__connect.errors.offset"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_torn_last_line_left_by_a_crash_is_cut_before_the_next_letter() {
    let dir = tempfile::tempdir().unwrap();
    let dlq = dlq(dir.path());
    write(&dlq, 1, "{\"a\":1}").await.unwrap();
    let path = dlq.path().clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"key\":null,\"value\":\"{\\\"a\\\":").unwrap();
    drop(f);
    write(&dlq, 2, "{\"a\":2}").await.unwrap();
    assert_eq!(offsets(&path), vec![1, 2]);
}

#[tokio::test]
async fn a_full_disk_fails_the_write_and_the_next_letter_starts_on_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs = Tmpfs::mount(&data, "64k");
    let dlq = dlq(&data);
    write(&dlq, 1, "{\"a\":1}").await.unwrap();
    // Fill the rest of the file system.
    let filler = data.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![b'x'; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    // A letter larger than the room left in the DLQ file's last page: the kernel takes part
    // of it, then refuses the rest.
    let big = format!("{{\"blob\":\"{}\"}}", "y".repeat(16 * 1024));
    let err = write(&dlq, 2, &big).await.unwrap_err();
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(
        offsets(dlq.path()),
        vec![1],
        "the failed letter left a fragment"
    );
    // Space comes back: the next letter is whole, on its own line.
    std::fs::remove_file(&filler).unwrap();
    write(&dlq, 3, "{\"a\":3}").await.unwrap();
    assert_eq!(offsets(dlq.path()), vec![1, 3]);
    drop(fs);
}

#[tokio::test]
async fn a_read_only_data_dir_fails_the_write_and_writing_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs = Tmpfs::mount(&data, "1m");
    let dlq = dlq(&data);
    write(&dlq, 1, "{\"a\":1}").await.unwrap();
    fs.remount("ro");
    let err = write(&dlq, 2, "{\"a\":2}").await.unwrap_err();
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        err.contains("audit.jsonl"),
        "the error names the file: {err}"
    );
    fs.remount("rw");
    write(&dlq, 3, "{\"a\":3}").await.unwrap();
    assert_eq!(offsets(dlq.path()), vec![1, 3]);
    drop(fs);
}

#[tokio::test]
async fn the_dlq_file_is_0600_in_a_0700_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dlq = dlq(dir.path());
    write(&dlq, 1, "{\"a\":1}").await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dlq.path()), 0o600);
    assert_eq!(mode(&dir.path().join("dlq")), 0o700);
}
