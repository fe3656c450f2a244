//! The admin API of the real binary: a bearer token guards every endpoint but a bare liveness
//! `/health`, TLS serves HTTPS only, an open listener beyond loopback is warned about, and
//! pause, resume and restart keep the pipeline's position.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const TOKEN: &str = "adm-7Hq2-secret-token";

/// A request with an optional bearer token: status and body, `None` when no HTTP answer came.
fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let mut req = client.request(method, url).timeout(Duration::from_secs(5));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.ok()?))
    })
}

fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> Option<(u16, String)> {
    request(client, reqwest::Method::GET, url, token)
}

fn post(client: &reqwest::Client, url: &str, token: Option<&str>) -> Option<(u16, String)> {
    request(client, reqwest::Method::POST, url, token)
}

fn config(w: &Workdir, admin: &str) -> std::path::PathBuf {
    w.config(
        "admin.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  admin: {admin}\npipelines:\n  - name: gen\n    \
             source: {{ type: generator, rate: 100 }}\n    sink: {{ type: blackhole }}\n"
        ),
    )
}

#[test]
fn a_token_guards_everything_but_bare_liveness() {
    let w = Workdir::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cfg = config(
        &w,
        &format!("{{ listen: \"127.0.0.1:{port}\", token: \"${{ADMIN_TOKEN}}\" }}"),
    );
    let mut s = w.start_with(&cfg, &[("ADMIN_TOKEN", TOKEN)]);
    let client = reqwest::Client::new();
    let (code, body) = wait_for(Duration::from_secs(30), "admin listening", || {
        get(&client, &format!("{base}/health"), None)
    });

    // Without a token: liveness only.
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "ok"}), "no details: {body}");
    for path in ["/metrics", "/pipelines"] {
        let (code, body) = get(&client, &format!("{base}{path}"), None).unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        assert!(!body.contains("gen"), "{path}: {body}");
    }

    // The right token: the details.
    let (code, body) = get(&client, &format!("{base}/health"), Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["pipelines"]["gen"]["healthy"], true, "{body}");
    let (code, body) = get(&client, &format!("{base}/metrics"), Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("sluice_records_received_total{pipeline=\"gen\"}"),
        "{body}"
    );
    let (code, body) = get(&client, &format!("{base}/pipelines"), Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"gen\""), "{body}");

    // A wrong token is refused everywhere, /health included.
    for path in ["/health", "/metrics", "/pipelines"] {
        let (code, _) = get(
            &client,
            &format!("{base}{path}"),
            Some("adm-7Hq2-secret-tokeN"),
        )
        .unwrap();
        assert_eq!(code, 401, "{path}");
    }

    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    let logs = s.logs();
    assert!(!logs.contains(TOKEN), "the token is in the log: {logs}");
    assert!(!logs.contains("without host.admin.token"), "{logs}");
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made with the openssl CLI.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("admin-cert.pem");
    let key = dir.join("admin-key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A server certificate, not a CA: rustls refuses a CA as the end entity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (package openssl) makes the test certificate");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn tls_serves_https_and_refuses_plaintext() {
    let w = Workdir::new();
    let (cert, key) = self_signed(w.path());
    let port = free_port();
    let cfg = config(
        &w,
        &format!(
            "{{ listen: \"127.0.0.1:{port}\", token: \"${{ADMIN_TOKEN}}\", \
             tls: {{ cert_file: \"{}\", key_file: \"{}\" }} }}",
            cert.display(),
            key.display()
        ),
    );
    let mut s = w.start_with(&cfg, &[("ADMIN_TOKEN", TOKEN)]);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/health");
    let (code, body) = wait_for(Duration::from_secs(30), "admin listening", || {
        get(&https, &url, Some(TOKEN))
    });
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["pipelines"]["gen"]["healthy"], true, "{body}");
    let (code, _) = get(&https, &format!("https://localhost:{port}/metrics"), None).unwrap();
    assert_eq!(code, 401);

    // Plain HTTP gets no answer.
    let plain = reqwest::Client::new();
    assert_eq!(
        get(
            &plain,
            &format!("http://127.0.0.1:{port}/health"),
            Some(TOKEN)
        ),
        None
    );
    // The listener still serves HTTPS after a plaintext attempt.
    assert_eq!(get(&https, &url, Some(TOKEN)).map(|r| r.0), Some(200));

    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
}

#[test]
fn a_listener_beyond_loopback_without_a_token_is_warned_about() {
    let w = Workdir::new();
    let port = free_port();
    let cfg = config(&w, &format!("{{ listen: \"0.0.0.0:{port}\" }}"));
    let mut s = w.start(&cfg);
    let client = reqwest::Client::new();
    let (code, body) = wait_for(Duration::from_secs(30), "admin listening", || {
        get(&client, &format!("http://127.0.0.1:{port}/metrics"), None)
    });
    assert_eq!(code, 200, "no token configured: open, {body}");
    // ... but nobody beyond this host may stop the flow without a token.
    let (code, body) = post(
        &client,
        &format!("http://127.0.0.1:{port}/pipelines/gen/pause"),
        None,
    )
    .unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("set a token"), "{body}");
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    let logs = s.logs();
    assert!(
        logs.contains("WARN") && logs.contains("without host.admin.token"),
        "{logs}"
    );
}

#[test]
fn an_empty_token_or_an_unreadable_certificate_stops_the_start() {
    let w = Workdir::new();
    let port = free_port();
    let cfg = config(
        &w,
        &format!("{{ listen: \"127.0.0.1:{port}\", token: \"${{ADMIN_TOKEN:-}}\" }}"),
    );
    let mut s = w.start(&cfg);
    assert_eq!(s.wait(Duration::from_secs(30)).code(), Some(1));
    assert!(
        s.logs().contains("host.admin.token is empty"),
        "{}",
        s.logs()
    );

    let cfg = config(
        &w,
        &format!(
            "{{ listen: \"127.0.0.1:{port}\", tls: {{ cert_file: \"{{dir}}/none.pem\", \
             key_file: \"{{dir}}/none-key.pem\" }} }}"
        ),
    );
    let mut s = w.start(&cfg);
    assert_eq!(s.wait(Duration::from_secs(30)).code(), Some(1));
    assert!(
        s.logs().contains("host.admin.tls.cert_file") && s.logs().contains("none.pem"),
        "{}",
        s.logs()
    );
}

#[test]
fn pause_resume_and_restart_keep_the_position_and_need_the_token() {
    let w = Workdir::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let out = w.join("out.jsonl");
    let cfg = w.config(
        "control.yaml",
        &format!(
            "host:\n  data_dir: {{dir}}/data\n  admin: {{ listen: \"127.0.0.1:{port}\", token: \"${{ADMIN_TOKEN}}\" }}\n\
             pipelines:\n  - name: gen\n    source: {{ type: generator, rate: 5000 }}\n    \
             sink: {{ type: file, path: {} }}\n    batch: {{ max_events: 500, linger: 50ms }}\n    \
             commit_interval: 100ms\n",
            out.display()
        ),
    );
    let mut s = w.start_with(&cfg, &[("ADMIN_TOKEN", TOKEN)]);
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "records written", || {
        (count_lines(&out) > 2000).then_some(())
    });
    let url = |action: &str| format!("{base}/pipelines/gen/{action}");

    // Controls need the token.
    assert_eq!(post(&client, &url("pause"), None).unwrap().0, 401);
    assert_eq!(post(&client, &url("pause"), Some("wrong")).unwrap().0, 401);
    assert_eq!(
        get(&client, &url("offsets"), None).unwrap().0,
        401,
        "offsets need the token"
    );
    let (code, body) = post(
        &client,
        &format!("{base}/pipelines/nope/pause"),
        Some(TOKEN),
    )
    .unwrap();
    assert_eq!(code, 404, "{body}");

    // Paused: the batches in hand are delivered and committed, then nothing more is read.
    let (code, body) = post(&client, &url("pause"), Some(TOKEN)).unwrap();
    assert_eq!(code, 202, "{body}");
    wait_for(Duration::from_secs(30), "health says paused", || {
        let (code, body) = get(&client, &format!("{base}/health"), Some(TOKEN))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["status"] == "paused" && v["pipelines"]["gen"]["state"] == "paused")
            .then_some(())
    });
    let (code, body) = get(&client, &format!("{base}/health"), None).unwrap();
    assert_eq!(code, 200, "a paused pipeline is not a failure: {body}");
    let held = wait_for(
        Duration::from_secs(10),
        "everything read is committed",
        || {
            let n = count_lines(&out);
            let (_, body) = get(&client, &url("offsets"), Some(TOKEN))?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            // The position is text: the count of records written.
            let committed = v["committed"]["0"].as_str()?.parse::<usize>().ok()?;
            (committed == n).then_some(n)
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count_lines(&out), held, "records were read while paused");
    assert_eq!(
        stored_offsets(&w.join("data"), "gen").unwrap()["0"],
        held.to_string(),
        "the saved position is what was delivered"
    );
    // Pausing again changes nothing.
    assert_eq!(post(&client, &url("pause"), Some(TOKEN)).unwrap().0, 202);

    // Resumed: reading goes on from the position.
    assert_eq!(post(&client, &url("resume"), Some(TOKEN)).unwrap().0, 202);
    wait_for(Duration::from_secs(30), "records after resume", || {
        (count_lines(&out) > held + 2000).then_some(())
    });

    // Restarted: a new run, drained and committed first, without gap or duplicate.
    let (code, body) = post(&client, &url("restart"), Some(TOKEN)).unwrap();
    assert_eq!(code, 202, "{body}");
    wait_for(Duration::from_secs(30), "the restart logged", || {
        s.logs()
            .contains("pipeline restarting on request")
            .then_some(())
    });
    let after = count_lines(&out);
    wait_for(Duration::from_secs(30), "records after the restart", || {
        (count_lines(&out) > after + 2000).then_some(())
    });
    s.sigterm();
    assert!(s.wait(Duration::from_secs(30)).success(), "{}", s.logs());
    let counts = seq_counts(&out);
    let n = counts.len() as u64;
    assert!(counts.values().all(|&c| c == 1), "duplicates");
    assert!((0..n).all(|i| counts.contains_key(&i)), "a gap");
    let logs = s.logs();
    assert!(
        logs.contains("pipeline paused") && logs.contains("pipeline resumed"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "the token is in the log");
}
