//! The `http` sink with the real binary against the in-process REST API emulator.

use std::io::Write as _;
use std::time::Duration;

use serde_json::json;
use sluice_testkit::api::{ApiAuth, ApiEmulator, TOKEN_PATH};

use crate::common::*;

const TOKEN: &str = "3c2b1a09f8e7d6c5b4a3928170f6e5d4";

fn api(auth: ApiAuth) -> (tokio::runtime::Runtime, ApiEmulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(ApiEmulator::start(
        auth,
        &[("PATCH", "/api/applied-controls/*/")],
    ));
    (rt, server)
}

/// The CISO Assistant example of docs/connectors/http.md, as written there.
fn ciso_example() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/connectors/http.md")).unwrap();
    let start = doc
        .find("# ciso-assistant: update_applied_control_status")
        .expect("the CISO example in the docs");
    let end = start + doc[start..].find("```").expect("end of the example");
    doc[start..end].to_string()
}

#[test]
fn the_ciso_assistant_example_in_the_docs_validates() {
    let w = Workdir::new();
    let cfg = w.config("ciso.yaml", &ciso_example());
    let out = std::process::Command::new(sluice_bin())
        .args(["validate", cfg.to_str().unwrap()])
        .current_dir(w.path())
        .env("SCHEMA_REGISTRY_URL", "http://localhost:18081")
        .env("CISO_API_TOKEN", TOKEN)
        .output()
        .expect("run sluice");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // The same config with a record field in the host is refused at the url's line.
    let bad = ciso_example().replace(
        "${CISO_API_URL:-http://localhost:8000/api}",
        "http://{{ tenant }}.api:8000/api",
    );
    let cfg = w.config("bad.yaml", &bad);
    let out = std::process::Command::new(sluice_bin())
        .args(["validate", cfg.to_str().unwrap()])
        .current_dir(w.path())
        .env("SCHEMA_REGISTRY_URL", "http://localhost:18081")
        .env("CISO_API_TOKEN", TOKEN)
        .output()
        .expect("run sluice");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let line = bad
        .lines()
        .position(|l| l.trim_start().starts_with("url: \"http://{{"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("bad.yaml:{line}:7: ")) && text.contains("scheme, host or port"),
        "{text}"
    );
}

fn pipeline(w: &Workdir, api: &str, source: &str, auth: &str, admin: &str) -> std::path::PathBuf {
    w.config(
        "http.yaml",
        &format!(
            r#"host:
  data_dir: "{{dir}}/data"
  admin: {{ listen: "{admin}" }}
  shutdown_timeout: 3s
pipelines:
  - name: ciso
    source: {source}
    sink:
      type: http
      url: "{api}/api/applied-controls/{{{{ payload.applied_control_id }}}}/"
      method: PATCH
      body: {{ template: {{ status: "{{{{ payload.status }}}}", seq: "{{{{ seq }}}}" }} }}
      auth: {auth}
      idempotency_key: {{ header: Idempotency-Key, template: "{{{{ event_id }}}}" }}
    batch: {{ max_events: 100, linger: 20ms }}
    rate_limit: {{ events_per_second: 1500 }}
    retry: {{ max_attempts: 3, initial_backoff: 10ms, max_backoff: 200ms }}
    commit_interval: 100ms
    dead_letter: {{ type: file }}
"#
        ),
    )
}

/// `n` CISO observation events in a file; the `file` source block reading them once.
fn events(w: &Workdir, n: u64) -> String {
    let input = w.join("events.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for seq in 0..n {
        let e = json!({"event_id": format!("evt-{seq}"), "event_type": "update_applied_control_status",
                       "seq": seq, "payload": {"applied_control_id": format!("ac-{}", seq % 50), "status": "active"}});
        writeln!(f, "{e}").unwrap();
    }
    format!(
        "{{ type: file, path: \"{}\", at_end: stop }}",
        input.display()
    )
}

#[test]
fn after_kill_9_every_event_is_applied_exactly_once_with_an_idempotency_key() {
    let (_rt, api) = api(ApiAuth::Header {
        name: "authorization".into(),
        value: format!("Token {TOKEN}"),
    });
    let w = Workdir::new();
    let source = events(&w, 6000);
    let admin = format!("127.0.0.1:{}", free_port());
    let auth = "{ type: header, name: Authorization, value: \"Token ${CISO_API_TOKEN}\" }";
    let cfg = pipeline(&w, &api.url(), &source, auth, &admin);
    let env = [("CISO_API_TOKEN", TOKEN)];
    let mut s = w.start_with(&cfg, &env);
    wait_for(Duration::from_secs(60), "calls applied", || {
        (api.applied_count() >= 1500).then_some(())
    });
    s.kill9();
    let before = api.applied_count();
    assert!(before < 6000, "killed mid-run ({before})");
    let mut s = w.start_with(&cfg, &env);
    let status = s.wait(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}: {}", s.logs());
    let mut seqs: Vec<u64> = api
        .applied()
        .iter()
        .map(|c| c.body["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(api.applied_count(), 6000, "each event applied exactly once");
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 6000);
    assert!(
        api.duplicates() > 0,
        "the restart resent calls the API had applied"
    );
    assert!(lines(&w.join("data/dlq/ciso.jsonl")).is_empty());
}

#[test]
fn a_wrong_client_secret_makes_health_unhealthy_and_dead_letters_nothing() {
    let (_rt, api) = api(ApiAuth::OAuth2 {
        client_id: "sluice".into(),
        client_secret: "right-secret".into(),
        ttl: Duration::from_secs(60),
    });
    let w = Workdir::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let auth = format!(
        "{{ type: oauth2, token_url: \"{}{TOKEN_PATH}\", client_id: sluice, client_secret: \"${{CLIENT_SECRET}}\" }}",
        api.url()
    );
    let source = events(&w, 200);
    let cfg = pipeline(&w, &api.url(), &source, &auth, &admin);
    let s = w.start_with(&cfg, &[("CLIENT_SECRET", "wrong-secret")]);
    let body = wait_for(
        Duration::from_secs(30),
        "an unhealthy /health",
        || match http_get(&format!("http://{admin}/health")) {
            Some((503, body)) if body.contains("invalid_client") => Some(body),
            _ => None,
        },
    );
    assert!(!body.contains("wrong-secret"), "{body}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api.applied_count(), 0);
    assert!(api.tokens_refused() >= 1);
    assert_eq!(
        metric(&admin, "sluice_records_dead_lettered_total", "ciso").unwrap_or(0.0),
        0.0
    );
    assert!(lines(&w.join("data/dlq/ciso.jsonl")).is_empty());
    assert!(!s.logs().contains("wrong-secret"));
}
