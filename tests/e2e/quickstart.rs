//! The README's first command: the quickstart runs with no external service until Ctrl-C,
//! shows its progress and admin endpoints while it runs, and a rerun resumes where it stopped.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// The generator's event type for `seq` (its documented pure function of `seq`: splitmix64,
/// type index = hash % 4), so the test knows which `seq` the filter keeps.
fn event_type(seq: u64) -> &'static str {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let h = z ^ (z >> 31);
    [
        "assessment.started",
        "control.evaluated",
        "gap.identified",
        "report.generated",
    ][(h % 4) as usize]
}

fn kept(seq: u64) -> bool {
    matches!(event_type(seq), "control.evaluated" | "gap.identified")
}

/// Starts the quickstart as the README says (`./data` relative to the working directory),
/// on a free admin port.
fn start(w: &Workdir, admin: &str) -> Sluice {
    w.start_with(
        &repo_root().join("configs/quickstart.yaml"),
        &[("SLUICE_ADMIN", admin)],
    )
}

/// Ctrl-C, then the exit status.
fn interrupt(s: &mut Sluice) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-INT", &s.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    s.wait(Duration::from_secs(30))
}

/// Waits for the output to grow past `n` lines, then for a progress line.
fn watch_running(s: &Sluice, out: &std::path::Path, n: usize) {
    wait_for(
        Duration::from_secs(30),
        "records in ./data/quickstart.jsonl",
        || (lines(out).len() > n).then_some(()),
    );
    wait_for(Duration::from_secs(15), "a progress line", || {
        let logs = s.logs();
        logs.lines()
            .any(|l| {
                l.contains("progress")
                    && ["received=", "sent=", "filtered=", "dead_lettered="]
                        .iter()
                        .all(|f| l.contains(f))
            })
            .then_some(())
    });
}

fn check_admin(admin: &str) {
    let (code, body) = http_get(&format!("http://{admin}/health")).expect("/health answers");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&format!("http://{admin}/pipelines")).expect("/pipelines");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("quickstart"), "{body}");
    let received = metric(admin, "sluice_records_received_total", "quickstart")
        .expect("/metrics has the received counter");
    assert!(received > 0.0);
    assert!(metric(admin, "sluice_records_filtered_total", "quickstart").is_some());
}

#[test]
fn quickstart_runs_until_ctrl_c_and_a_rerun_resumes_without_gap_or_duplicate() {
    let w = Workdir::new();
    let out = w.join("data/quickstart.jsonl");
    let admin = format!("127.0.0.1:{}", free_port());

    let mut first = start(&w, &admin);
    watch_running(&first, &out, 10);
    check_admin(&admin);
    let status = interrupt(&mut first);
    assert!(status.success(), "Ctrl-C must exit 0: {}", first.logs());
    assert!(
        first.logs().contains("starting at seq 0"),
        "{}",
        first.logs()
    );
    let resumed_at: u64 = stored_offsets(&w.join("data"), "quickstart").expect("a position")["0"]
        .as_str()
        .expect("a string position")
        .parse()
        .expect("a number");
    assert!(resumed_at > 0);
    let after_first = lines(&out).len();

    let mut second = start(&w, &admin);
    wait_for(Duration::from_secs(15), "the resumed line", || {
        second
            .logs()
            .contains(&format!("resumed at seq {resumed_at}"))
            .then_some(())
    });
    watch_running(&second, &out, after_first + 10);
    let status = interrupt(&mut second);
    assert!(status.success(), "Ctrl-C must exit 0: {}", second.logs());
    let end: u64 = stored_offsets(&w.join("data"), "quickstart").expect("a position")["0"]
        .as_str()
        .expect("a string position")
        .parse()
        .expect("a number");

    // Every record is enriched as the README says.
    let events = read_jsonl(&out);
    for e in &events {
        let t = e["event_type"].as_str().unwrap();
        assert!(t == "control.evaluated" || t == "gap.identified", "{e}");
        assert_eq!(e["environment"], "quickstart");
        assert_eq!(e["pipeline"], "sluice-quickstart");
        assert!(
            e["evaluated_by"].is_string() && e.get("actor").is_none(),
            "{e}"
        );
        assert!(e.get("source").is_none(), "dropped field present: {e}");
        for f in [
            "event_id",
            "timestamp",
            "tenant_id",
            "assessment_id",
            "control_id",
            "severity",
        ] {
            assert!(e[f].is_string(), "{f} missing: {e}");
        }
    }
    // Across the two runs: each kept `seq` below the final position exactly once, in order.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (0..end).filter(|&s| kept(s)).collect();
    let counts: HashMap<u64, usize> = seqs.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(*s).or_default() += 1;
        m
    });
    let dups: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(dups.is_empty(), "duplicates across the rerun: {dups:?}");
    assert_eq!(seqs, expected, "gap or reordering across the rerun");
    assert!(end > resumed_at);
}
