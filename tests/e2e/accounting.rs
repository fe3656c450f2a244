//! Every record received is accounted for in the metrics: received = sent + dead-lettered +
//! filtered once nothing is in flight.

use std::time::Duration;

use crate::common::*;

#[test]
fn received_equals_sent_plus_dead_lettered_plus_filtered() {
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    // 100 lines: 10 not JSON (decode error), 10 filtered out, 10 failing a transform
    // (`a` is a number, so `a.b` cannot be set), 70 delivered.
    let mut body = String::new();
    for i in 0..100 {
        match i % 10 {
            3 => body.push_str(&format!("not json #{i}\n")),
            5 => body.push_str(&format!("{{\"n\":{i},\"kind\":\"noise\",\"a\":{{}}}}\n")),
            7 => body.push_str(&format!("{{\"n\":{i},\"a\":1}}\n")),
            _ => body.push_str(&format!("{{\"n\":{i},\"a\":{{}}}}\n")),
        }
    }
    std::fs::write(w.join("in.jsonl"), body).unwrap();
    let cfg = w.config(
        "acct.yaml",
        &format!(
            r#"host: {{ data_dir: "{{dir}}/data", admin: {{ listen: "{admin}" }} }}
pipelines:
  - name: acct
    source: {{ type: file, path: "{{dir}}/in.jsonl" }}
    transforms:
      - {{ type: filter, field: kind, equals: noise, negate: true }}
      - {{ type: set, field: a.b, value: 1 }}
    sink: {{ type: file, path: "{{dir}}/out.jsonl" }}
    batch: {{ max_events: 7, linger: 10ms }}
"#
        ),
    );
    let _s = w.start(&cfg);
    let m = |name: &str| metric(&admin, name, "acct").unwrap_or(0.0);
    let (received, sent, dead, filtered) =
        wait_for(Duration::from_secs(30), "every line accounted for", || {
            let v = (
                m("sluice_records_received_total"),
                m("sluice_records_sent_total"),
                m("sluice_records_dead_lettered_total"),
                m("sluice_records_filtered_total"),
            );
            (v.0 == 100.0 && v.1 + v.2 + v.3 == 100.0).then_some(v)
        });
    assert_eq!(
        (received, sent, dead, filtered),
        (100.0, 70.0, 20.0, 10.0),
        "received = sent + dead-lettered + filtered"
    );
    assert_eq!(read_jsonl(&w.join("out.jsonl")).len(), 70);
    let dlq = read_jsonl(&w.join("data/dlq/acct.jsonl"));
    assert_eq!(dlq.len(), 20);
    let kinds = |k: &str| {
        dlq.iter()
            .filter(|d| d["__connect.errors.exception.class.name"] == k)
            .count()
    };
    assert_eq!(
        (kinds("decode_error"), kinds("transform_error")),
        (10, 10),
        "{dlq:?}"
    );
}
