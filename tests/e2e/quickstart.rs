//! The README's first command: the quickstart runs with no external service.

use std::time::Duration;

use crate::common::*;

#[test]
fn quickstart_writes_filtered_enriched_events() {
    let w = Workdir::new();
    let out = w.join("quickstart.jsonl");
    let data = w.join("data");
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = repo_root().join("configs/quickstart.yaml");
    let mut s = w.start_with(
        &cfg,
        &[
            ("SLUICE_DATA_DIR", data.to_str().unwrap()),
            ("SLUICE_OUT", out.to_str().unwrap()),
            ("SLUICE_ADMIN", &admin),
        ],
    );
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "quickstart failed: {}", s.logs());

    let events = read_jsonl(&out);
    // The generator's event types are spread evenly; the filter keeps two of four.
    assert!(
        (350..650).contains(&events.len()),
        "unexpected count {}",
        events.len()
    );
    let mut last = None;
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
        let seq = e["seq"].as_u64().unwrap();
        assert!(
            seq < 1000 && last.is_none_or(|l| seq > l),
            "order/uniqueness broken at {seq}"
        );
        last = Some(seq);
    }
    // Filtered records are committed too: the position is past the last generated record.
    assert_eq!(stored_offsets(&data, "quickstart").unwrap()["0"], "1000");
}
