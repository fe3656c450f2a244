//! `sluice verify` reading the stamped records back from a PostgreSQL table, a Kafka topic
//! and an Elasticsearch index (the emulator): a clean copy verifies, and a changed field, a
//! deleted record, two swapped and a forged one are each found and named at their location.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sha2::{Digest, Sha256};
use sluice_testkit::elasticsearch::{EsAuth, EsEmulator, EsOptions};
use sluice_testkit::http::{test_pki, ServerTls};
use sluice_testkit::kafka::{create_topic, real_broker, unique};

use super::{config, hex_decode, hex_encode, keygen, run_to_end, write_input};
use crate::common::*;
use crate::postgres::{table, Pg};

/// 200 records stamped by a file pipeline: the lines, the digest log and the public key.
struct Stamped {
    w: Workdir,
    public: String,
    lines: Vec<String>,
    digests: PathBuf,
}

fn stamped() -> Stamped {
    let w = Workdir::new();
    let (private, public) = keygen(&w);
    write_input(&w, 0, 200);
    let cfg = config(&w, "");
    run_to_end(&w, &cfg, &private);
    let lines = lines(&w.join("out.jsonl"));
    assert_eq!(lines.len(), 200);
    let digests = w.join("data/integrity/audit.digests");
    Stamped {
        w,
        public,
        lines,
        digests,
    }
}

impl Stamped {
    /// `sluice verify <output args> --digests .. --public-key ..`: (exit code, output).
    fn verify(&self, output: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let digests = self.digests.display().to_string();
        let mut args: Vec<&str> = vec!["verify"];
        args.extend_from_slice(output);
        args.extend_from_slice(&["--digests", &digests, "--public-key", &self.public]);
        let out = std::process::Command::new(sluice_bin())
            .args(&args)
            .envs(env.iter().copied())
            .current_dir(self.w.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// A forged record with a plausible stamp: the sequence after line `i`, linked to it.
    fn forged_after(&self, i: usize) -> String {
        let prev: serde_json::Value = serde_json::from_str(&self.lines[i]).unwrap();
        let mut stamp = prev["_audit"].clone();
        let prev_hash = stamp["hash"].as_str().unwrap().to_string();
        let body = r#"{"msg":"forged","n":4001}"#;
        let mut h = Sha256::new();
        h.update(hex_decode(&prev_hash));
        h.update(body.as_bytes());
        stamp["seq"] = (stamp["seq"].as_u64().unwrap() + 1).into();
        stamp["prev"] = prev_hash.into();
        stamp["hash"] = hex_encode(&h.finalize()).into();
        let mut forged: serde_json::Value = serde_json::from_str(body).unwrap();
        forged["_audit"] = stamp;
        forged.to_string()
    }
}

fn expect(found: (i32, String), code: i32, words: &[&str]) {
    let (c, text) = found;
    assert_eq!(c, code, "{text}");
    for w in words {
        assert!(text.contains(w), "want `{w}` in: {text}");
    }
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[test]
fn postgres_rows_verify_in_key_order_and_each_tampering_is_found() {
    let s = stamped();
    let pg = Pg::connect();
    let t = table("verify");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigserial PRIMARY KEY, record jsonb NOT NULL)"
    ));
    let values: Vec<String> = s
        .lines
        .iter()
        .map(|l| format!("({}::jsonb)", sql_text(l)))
        .collect();
    pg.execute(&format!(
        "INSERT INTO {t} (record) VALUES {}",
        values.join(",")
    ));
    let url = sluice_testkit::env::postgres_url();
    let args = ["--postgres", &url, "--table", &t, "--column", "record"];
    let verify = || s.verify(&args, &[]);
    expect(verify(), 0, &["200 records", "OK"]);
    let ordered = [&args[..], &["--order-by", "id"]].concat();
    expect(s.verify(&ordered, &[]), 0, &["200 records"]);
    // TLS as the sink's `tls:` modes: `disable` reads in plaintext; `verify-full` is refused,
    // since the test server offers no TLS or only a certificate for another name from an
    // issuer nobody trusts (Debian's snakeoil).
    let plain = [&args[..], &["--postgres-tls", "disable"]].concat();
    expect(s.verify(&plain, &[]), 0, &["200 records"]);
    let tls = [&args[..], &["--postgres-tls", "verify-full"]].concat();
    expect(s.verify(&tls, &[]), 2, &["TLS"]);

    // One field changed (row id=10 holds sequence 10).
    pg.execute(&format!(
        "UPDATE {t} SET record = jsonb_set(record, '{{msg}}', '\"event nine\"') WHERE id = 10"
    ));
    expect(
        verify(),
        1,
        &["altered", "row id=10", "first break at sequence 10"],
    );
    let restore = |id: usize| {
        pg.execute(&format!(
            "UPDATE {t} SET record = {}::jsonb WHERE id = {id}",
            sql_text(&s.lines[id - 1])
        ))
    };
    restore(10);
    expect(verify(), 0, &["OK"]);

    // One row deleted.
    pg.execute(&format!("DELETE FROM {t} WHERE id = 21"));
    expect(verify(), 1, &["missing", "sequences 21..=21"]);
    pg.execute(&format!(
        "INSERT INTO {t} (id, record) VALUES (21, {}::jsonb)",
        sql_text(&s.lines[20])
    ));
    expect(verify(), 0, &["OK"]);

    // Two rows swapped.
    pg.execute(&format!(
        "UPDATE {t} SET record = CASE id WHEN 30 THEN {}::jsonb ELSE {}::jsonb END \
         WHERE id IN (30, 31)",
        sql_text(&s.lines[30]),
        sql_text(&s.lines[29])
    ));
    expect(
        verify(),
        1,
        &["reordered", "row id=31: sequence 30 after 31"],
    );
    restore(30);
    restore(31);

    // A forged row with a plausible stamp.
    pg.execute(&format!(
        "INSERT INTO {t} (record) VALUES ({}::jsonb)",
        sql_text(&s.forged_after(40))
    ));
    expect(verify(), 1, &["conflicting_duplicate", "row id=201"]);

    // A table without a key needs --order-by; a missing table cannot be read.
    let bare = table("verify_bare");
    pg.execute(&format!("CREATE TABLE {bare} (record jsonb)"));
    let bare_args = ["--postgres", &url, "--table", &bare, "--column", "record"];
    expect(s.verify(&bare_args, &[]), 2, &["--order-by"]);
    let missing = [
        "--postgres",
        &url,
        "--table",
        "no_such_table",
        "--column",
        "record",
    ];
    expect(s.verify(&missing, &[]), 2, &["no_such_table"]);
    pg.execute(&format!("DROP TABLE {t}; DROP TABLE {bare}"));
}

/// Produces `lines` to a new 3-partition topic, line `i` to partition `i % 3`.
fn topic_of(brokers: &str, lines: &[String]) -> String {
    let topic = unique("verify");
    create_topic(brokers, &topic, 3);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (i, l) in lines.iter().enumerate() {
        let partition = (i % 3) as i32;
        p.send(
            BaseRecord::<(), _>::to(&topic)
                .payload(l.as_bytes())
                .partition(partition),
        )
        .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
    topic
}

#[test]
fn kafka_topics_verify_per_partition_and_each_tampering_is_found() {
    let s = stamped();
    let brokers = real_broker();
    let check = |lines: Vec<String>, code: i32, words: &[&str]| {
        let topic = topic_of(&brokers, &lines);
        expect(
            s.verify(&["--kafka", &brokers, "--topic", &topic], &[]),
            code,
            words,
        );
    };
    // Records of one chain spread over three partitions: order holds within each.
    check(s.lines.clone(), 0, &["200 records", "OK"]);
    // Client properties (TLS, SASL on a real cluster) go to librdkafka; the reader's own
    // group settings are not the user's to change.
    let topic = topic_of(&brokers, &s.lines);
    expect(
        s.verify(
            &[
                "--kafka",
                &brokers,
                "--topic",
                &topic,
                "-X",
                "client.id=auditor",
                "--kafka-option",
                "security.protocol=plaintext",
            ],
            &[],
        ),
        0,
        &["200 records", "OK"],
    );
    expect(
        s.verify(
            &[
                "--kafka",
                &brokers,
                "--topic",
                &topic,
                "-X",
                "group.id=mine",
            ],
            &[],
        ),
        2,
        &["group.id", "cannot be overridden"],
    );
    let mut l = s.lines.clone();
    l[9] = l[9].replace("\"event 9\"", "\"event nine\"");
    check(
        l,
        1,
        &[
            "altered",
            "partition 0 offset 3",
            "first break at sequence 10",
        ],
    );
    let mut l = s.lines.clone();
    l.remove(20);
    check(l, 1, &["missing", "sequences 21..=21"]);
    // Two records swapped within partition 0 (lines 30 and 33).
    let mut l = s.lines.clone();
    l.swap(30, 33);
    check(
        l,
        1,
        &["reordered", "partition 0 offset 11: sequence 31 after 34"],
    );
    let mut l = s.lines.clone();
    l.insert(41, s.forged_after(40));
    check(l, 1, &["conflicting_duplicate"]);
    // A topic that does not exist cannot be read.
    expect(
        s.verify(&["--kafka", &brokers, "--topic", &unique("absent")], &[]),
        2,
        &["does not exist"],
    );
}

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

/// `_bulk` on the emulator: `(action, id, source)` lines.
fn bulk(rt: &tokio::runtime::Runtime, url: &str, items: &[(&str, String, Option<&str>)]) {
    bulk_with(rt, &reqwest::Client::new(), url, items);
}

/// [`bulk`] through `client` (one that trusts the emulator's certificate, over TLS).
fn bulk_with(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    items: &[(&str, String, Option<&str>)],
) {
    let mut body = String::new();
    for (action, id, source) in items {
        body.push_str(&format!(
            "{{\"{action}\":{{\"_index\":\"audit\",\"_id\":\"{id}\"}}}}\n"
        ));
        if let Some(s) = source {
            body.push_str(s);
            body.push('\n');
        }
    }
    let answer: serde_json::Value = rt.block_on(async {
        client
            .post(format!("{url}/_bulk"))
            .header("content-type", "application/x-ndjson")
            .header("authorization", format!("ApiKey {API_KEY}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(answer["errors"], false, "{answer}");
}

/// The 200 stamped records as documents `d0`..`d199` of `audit` on a fresh emulator that
/// asks for an API key (over `https` with `tls`), the runtime it runs on, and its URL.
struct Indexed {
    s: Stamped,
    rt: tokio::runtime::Runtime,
    _es: EsEmulator,
    url: String,
}

fn indexed(tls: Option<ServerTls>) -> Indexed {
    let s = stamped();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let es = rt.block_on(EsEmulator::start_with(EsOptions {
        auth: Some(EsAuth::ApiKey(API_KEY.into())),
        tls,
        ..Default::default()
    }));
    let url = es.url();
    // Trusts the test CA, for an emulator serving https.
    let ca = std::fs::read(test_pki().ca).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let all: Vec<(&str, String, Option<&str>)> = s
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| ("index", format!("d{i}"), Some(l.as_str())))
        .collect();
    bulk_with(&rt, &client, &url, &all);
    Indexed {
        s,
        rt,
        _es: es,
        url,
    }
}

/// An index behind `https` with a certificate of a private CA: `--elasticsearch-ca-file`
/// with that CA verifies; without it, or with another CA, the certificate is refused and
/// nothing is judged.
#[test]
fn elasticsearch_over_tls_verifies_with_the_ca_file_given() {
    let Indexed {
        s,
        rt: _rt,
        _es,
        url,
    } = indexed(Some(ServerTls::test(false)));
    assert!(url.starts_with("https://"), "{url}");
    let pki = test_pki();
    let key = [("ES_API_KEY", API_KEY)];
    let args = ["--elasticsearch", &url, "--index", "audit"];
    let with = |ca: &std::path::Path| {
        let ca = ca.display().to_string();
        s.verify(
            &[&args[..], &["--elasticsearch-ca-file", &ca]].concat(),
            &key,
        )
    };
    expect(with(&pki.ca), 0, &["200 records", "OK"]);
    expect(s.verify(&args, &key), 2, &["invalid peer certificate"]);
    expect(with(&pki.other_ca), 2, &["invalid peer certificate"]);
}

#[test]
fn elasticsearch_documents_verify_and_each_tampering_is_found() {
    let Indexed { s, rt, url, _es } = indexed(None);
    let args = ["--elasticsearch", &url, "--index", "audit"];
    let key = [("ES_API_KEY", API_KEY)];
    let verify = || s.verify(&args, &key);
    // 200 documents take several pages of the point in time.
    expect(verify(), 0, &["200 records", "OK"]);
    expect(s.verify(&args, &[]), 2, &["401"]);
    // A CA file goes to the TLS set-up the sink uses: one that cannot be read is named.
    let missing = s.w.join("no-such-ca.pem").display().to_string();
    let with_ca = [&args[..], &["--elasticsearch-ca-file", &missing]].concat();
    expect(s.verify(&with_ca, &key), 2, &["no-such-ca.pem"]);

    let changed = s.lines[9].replace("\"event 9\"", "\"event nine\"");
    bulk(&rt, &url, &[("index", "d9".into(), Some(&changed))]);
    expect(
        verify(),
        1,
        &["altered", "doc _id=d9", "first break at sequence 10"],
    );
    bulk(&rt, &url, &[("index", "d9".into(), Some(&s.lines[9]))]);
    expect(verify(), 0, &["OK"]);

    bulk(&rt, &url, &[("delete", "d20".into(), None)]);
    expect(verify(), 1, &["missing", "sequences 21..=21"]);
    bulk(&rt, &url, &[("index", "d20".into(), Some(&s.lines[20]))]);

    // The index keeps no write order: two documents' contents swapped are two intact
    // records, and order is not judged.
    bulk(
        &rt,
        &url,
        &[
            ("index", "d30".into(), Some(&s.lines[31])),
            ("index", "d31".into(), Some(&s.lines[30])),
        ],
    );
    expect(verify(), 0, &["200 records", "OK"]);

    let forged = s.forged_after(40);
    bulk(&rt, &url, &[("index", "forged".into(), Some(&forged))]);
    expect(verify(), 1, &["conflicting_duplicate", "doc _id=forged"]);
    expect(
        s.verify(&["--elasticsearch", &url, "--index", "nope"], &key),
        2,
        &["index_not_found_exception"],
    );
}

#[test]
fn exactly_one_output_is_read() {
    let w = Workdir::new();
    let out = w.sluice(&[
        "verify",
        "--file",
        "a",
        "--kafka",
        "b",
        "--topic",
        "t",
        "--digests",
        "d",
        "--public-key",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    let out = w.sluice(&["verify", "--digests", "d", "--public-key", "k"]);
    assert_eq!(out.status.code(), Some(2));
    let out = w.sluice(&[
        "verify",
        "--postgres",
        "u",
        "--digests",
        "d",
        "--public-key",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--table"));
}

/// The emulator's point-in-time search answers mistakes as Elasticsearch does, so the
/// reader is held to the real protocol.
#[test]
fn the_emulator_answers_point_in_time_mistakes_as_elasticsearch_does() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let es = rt.block_on(EsEmulator::start());
    let url = es.url();
    let docs: Vec<(&str, String, Option<&str>)> = (0..3)
        .map(|i| ("index", format!("d{i}"), Some("{\"a\":1}")))
        .collect();
    bulk(&rt, &url, &docs);
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        rt.block_on(async {
            let mut r = reqwest::Client::new().request(method, format!("{url}{path}"));
            if let Some(b) = body {
                r = r.json(&b);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        })
    };
    use reqwest::Method;
    use serde_json::json;
    let (code, v) = call(Method::POST, "/audit/_pit", None);
    assert_eq!(
        (code, v["error"]["type"].as_str()),
        (400, Some("action_request_validation_exception")),
        "{v}"
    );
    let (code, v) = call(Method::POST, "/nope/_pit?keep_alive=1m", None);
    assert_eq!(
        (code, v["error"]["type"].as_str()),
        (404, Some("index_not_found_exception")),
        "{v}"
    );
    let (code, v) = call(Method::POST, "/audit/_pit?keep_alive=1m", None);
    assert_eq!(code, 200, "{v}");
    let pit = v["id"].as_str().unwrap().to_string();
    // Written after the point in time opened: not seen through it.
    bulk(&rt, &url, &[("index", "late".into(), Some("{\"a\":2}"))]);
    let page = |after: Option<u64>| {
        let mut b = json!({"size": 2, "pit": {"id": pit, "keep_alive": "1m"}, "sort": [{"_shard_doc": "asc"}]});
        if let Some(a) = after {
            b["search_after"] = json!([a]);
        }
        call(Method::POST, "/_search", Some(b))
    };
    let (code, first) = page(None);
    assert_eq!(code, 200, "{first}");
    let hits = first["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    let after = hits[1]["sort"][0].as_u64().unwrap();
    let (_, second) = page(Some(after));
    let ids: Vec<&str> = second["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d2"]);
    assert_eq!(second["pit_id"].as_str(), Some(pit.as_str()));

    let with_index = json!({"pit": {"id": pit}, "sort": ["_shard_doc"]});
    let (code, v) = call(Method::POST, "/audit/_search", Some(with_index));
    assert_eq!(
        (code, v["error"]["type"].as_str()),
        (400, Some("action_request_validation_exception")),
        "{v}"
    );
    let (code, v) = call(
        Method::POST,
        "/audit/_search",
        Some(json!({"sort": ["_shard_doc"]})),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("[_shard_doc] sort field cannot be used without [point in time]"));
    let two = json!({"pit": {"id": pit}, "sort": ["_shard_doc"], "search_after": [1, 2]});
    let (code, v) = call(Method::POST, "/_search", Some(two));
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("search_after has 2 value(s) but sort has 1"));

    let (code, v) = call(Method::DELETE, "/_pit", Some(json!({"id": pit})));
    assert_eq!((code, v["num_freed"].as_u64()), (200, Some(1)), "{v}");
    let (code, v) = call(Method::DELETE, "/_pit", Some(json!({"id": pit})));
    assert_eq!((code, v["num_freed"].as_u64()), (404, Some(0)), "{v}");
    let (code, v) = call(Method::POST, "/_search", Some(json!({"pit": {"id": pit}})));
    assert_eq!(
        (code, v["error"]["type"].as_str()),
        (404, Some("search_context_missing_exception")),
        "{v}"
    );
}

/// An edit of a copied message: its index, value and stamp header.
type Edit = dyn Fn(usize, &mut Vec<u8>, &mut Option<Vec<u8>>);

/// Records that are not JSON objects carry their stamp in the `sluice.audit` header: a
/// `kafka` sink writes it, `verify --kafka` reads it back, and a changed value or header is
/// found.
#[test]
fn kafka_records_stamped_in_headers_verify_and_tampering_is_found() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

    let w = Workdir::new();
    let (private, public) = keygen(&w);
    let brokers = real_broker();
    let topic = unique("stamped-raw");
    create_topic(&brokers, &topic, 1);
    let mut input = String::new();
    for i in 0..60 {
        input.push_str(&format!("plain text event {i}\n"));
    }
    std::fs::write(w.join("in.txt"), input).unwrap();
    let cfg = w.config(
        "raw.yaml",
        &format!(
            r#"
host: {{ data_dir: "{{dir}}/data" }}
pipelines:
  - name: raw
    source: {{ type: file, path: "{{dir}}/in.txt", format: raw, at_end: stop }}
    sink: {{ type: kafka, brokers: "{brokers}", topic: "{topic}" }}
    batch: {{ max_events: 25, linger: 20ms }}
    commit_interval: 100ms
    integrity: {{ signing_key: "${{SIGN}}" }}
"#
        ),
    );
    let mut s = w.start_with(&cfg, &[("SIGN", &private)]);
    assert!(s.wait(Duration::from_secs(120)).success(), "{}", s.logs());
    let digests = w.join("data/integrity/raw.digests").display().to_string();
    let verify = |topic: &str| {
        let o = w.sluice(&[
            "verify",
            "--kafka",
            &brokers,
            "--topic",
            topic,
            "--digests",
            &digests,
            "--public-key",
            &public,
        ]);
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    expect(verify(&topic), 0, &["60 records", "OK"]);

    // What the sink wrote, as (value, stamp header).
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("read-back"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&topic]).unwrap();
    let mut written: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while written.len() < 60 && std::time::Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let h = m.headers().unwrap();
            let stamp = h
                .iter()
                .find(|h| h.key == "sluice.audit")
                .and_then(|h| h.value)
                .expect("the stamp header")
                .to_vec();
            written.push((m.payload().unwrap().to_vec(), stamp));
        }
    }
    assert_eq!(written.len(), 60);
    assert_eq!(
        written[7].0, b"plain text event 7",
        "the value is left as it was"
    );

    // Copies of the topic: one value changed, one stamp header dropped.
    let copy = |edit: &Edit| {
        let t = unique("stamped-copy");
        create_topic(&brokers, &t, 1);
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        for (i, (v, h)) in written.iter().enumerate() {
            let (mut v, mut h) = (v.clone(), Some(h.clone()));
            edit(i, &mut v, &mut h);
            let headers = h.as_ref().map(|h| {
                OwnedHeaders::new().insert(Header {
                    key: "sluice.audit",
                    value: Some(h),
                })
            });
            let mut r = BaseRecord::<(), _>::to(&t).payload(&v);
            if let Some(hs) = headers {
                r = r.headers(hs);
            }
            p.send(r).unwrap();
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(30)).unwrap();
        t
    };
    let altered = copy(&|i, v, _| {
        if i == 12 {
            *v = b"plain text event 12, edited".to_vec();
        }
    });
    expect(verify(&altered), 1, &["altered"]);
    let unstamped = copy(&|i, _, h| {
        if i == 30 {
            *h = None;
        }
    });
    expect(verify(&unstamped), 1, &["partition 0 offset 30"]);
}
