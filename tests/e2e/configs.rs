//! Every example config is valid, and points at services and ports that docker-compose.yml
//! defines (no Docker engine runs here, so the compose file is checked, not started).

use std::collections::BTreeSet;

use crate::common::*;

/// Host ports published by the compose file.
fn compose_ports() -> BTreeSet<u16> {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("docker-compose.yml parses");
    let services = doc["services"].as_mapping().expect("services");
    for needed in [
        "redpanda",
        "console",
        "postgres",
        "redis",
        "elasticsearch",
        "splunk",
        "sluice",
    ] {
        assert!(
            services.contains_key(needed),
            "compose lacks service {needed}"
        );
    }
    let mut ports = BTreeSet::new();
    for (_, svc) in services {
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            // `HOST_PORT:CONTAINER_PORT` or `IP:HOST_PORT:CONTAINER_PORT`.
            let parts: Vec<&str> = p.as_str().unwrap().split(':').collect();
            let host = parts[parts.len().saturating_sub(2)];
            ports.insert(host.parse().unwrap());
        }
    }
    ports
}

/// `localhost:PORT` / `127.0.0.1:PORT` in `${VAR:-default}` defaults and URLs of a config.
fn local_ports(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for host in ["localhost:", "127.0.0.1:"] {
        let mut rest = text;
        while let Some(i) = rest.find(host) {
            rest = &rest[i + host.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(p) = digits.parse() {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn example_configs_validate_and_match_the_compose_stack() {
    let ports = compose_ports();
    for p in [19092, 18081, 8080, 5432, 6379, 9200, 8088] {
        assert!(ports.contains(&p), "compose does not publish {p}");
    }
    let w = Workdir::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for p in local_ports(&text) {
            // The admin listener is Sluice's own port, published by the sluice service.
            // 8000 is the CISO Assistant backend's default: an application of its own, not
            // a service of the trial stack.
            assert!(
                ports.contains(&p) || p == 8000,
                "{}: port {p} is not published by docker-compose.yml",
                path.display()
            );
        }
        // Secrets the examples read from the environment, with placeholder values.
        let out = std::process::Command::new(sluice_bin())
            .args(["validate", path.to_str().unwrap()])
            .current_dir(w.path())
            .envs([
                ("SPLUNK_HEC_TOKEN", "00000000-0000-0000-0000-000000000000"),
                ("DD_API_KEY", "placeholder"),
                ("ELASTIC_PASSWORD", "placeholder"),
                ("ELASTIC_API_KEY", "placeholder"),
                ("COSMOS_KEY", "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="),
                ("POSTGRES_URL", "postgres://postgres@localhost:5432/sluice"),
                ("REDIS_URL", "redis://localhost:6379"),
                ("CISO_API_TOKEN", "placeholder"),
                ("AUDIT_SIGNING_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 1);
}
