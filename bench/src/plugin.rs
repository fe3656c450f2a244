//! The plugin path against the same connectors built in: generator -> file with the built-in
//! `file` sink, then with `plugin_file` (the very same code loaded from
//! `libsluice_file_plugin.so`), then with the generator itself loaded as `plugin_generator`.
//! 1,000-record batches. The plugin library is looked up next to the `sluice` binary: build
//! it with the same profile (`cargo build --release -p sluice-file-plugin`).

use std::path::PathBuf;

use crate::measure::{run_to_end, sluice_bin, Report};

const RECORDS: u64 = 1_000_000;

fn plugin_lib() -> Result<PathBuf, String> {
    let bin = sluice_bin()?;
    let dir = bin.parent().ok_or("sluice binary has no directory")?;
    let lib = dir.join("libsluice_file_plugin.so");
    if !lib.exists() {
        return Err(format!(
            "{} not found: build it with the same profile as sluice (cargo build --release -p sluice-file-plugin)",
            lib.display()
        ));
    }
    Ok(lib)
}

fn run(name: &str, source: &str, sink: &str) -> Result<Report, String> {
    let lib = plugin_lib()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().display();
    let config = dir.path().join("bench.yaml");
    let yaml = format!(
        "host: {{ data_dir: \"{d}/data\", plugins: [ \"{}\" ] }}\npipelines:\n  - name: bench\n    source: {{ type: {source}, count: {RECORDS} }}\n    sink: {{ type: {sink}, path: \"{d}/out.jsonl\" }}\n    batch: {{ max_events: 1000, max_bytes: 4MiB, linger: 50ms }}\n",
        lib.display()
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let report = run_to_end(name, &config, RECORDS)?;
    let written = std::fs::read(dir.path().join("out.jsonl"))
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    if written != RECORDS {
        return Err(format!("{name}: expected {RECORDS} lines, found {written}"));
    }
    Ok(report)
}

pub fn file() -> Result<Vec<Report>, String> {
    Ok(vec![
        run(
            "generator -> file (built in, plugin loaded)",
            "generator",
            "file",
        )?,
        run("generator -> plugin_file", "generator", "plugin_file")?,
        run("plugin_generator -> file", "plugin_generator", "file")?,
    ])
}
