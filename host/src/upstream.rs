//! `sluice offsets`: positions a source keeps upstream (a Kafka consumer group's committed
//! offsets, each partition's end and lag), asked without joining the group.

use std::path::Path;

use serde_json::{json, Value};
use sluice_sdk::BuildContext;

use crate::config::PipelineConfig;

/// `{"partitions": [...]}` for a source that keeps positions upstream, `{"error": ...}` when
/// they cannot be read, `None` when the source keeps none (its positions are in the store).
pub fn positions(p: &PipelineConfig, data_dir: &Path) -> Option<Value> {
    let registry = crate::registry::compiled_in();
    let ctx = BuildContext {
        pipeline: p.name.as_str().into(),
        data_dir: data_dir.to_path_buf(),
    };
    let mut source = registry
        .build_source(&p.source.type_name, p.source.config.clone(), &ctx)
        .ok()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    match rt.block_on(source.stored_positions()) {
        Ok(None) => None,
        Ok(Some(parts)) => Some(json!({ "partitions": parts })),
        Err(e) => Some(json!({ "error": e.to_string() })),
    }
}

/// Text lines for one pipeline's upstream positions.
pub fn describe(upstream: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(e) = upstream["error"].as_str() {
        let _ = writeln!(out, "  upstream positions unavailable: {e}");
    }
    for p in upstream["partitions"].as_array().into_iter().flatten() {
        let show = |v: &Value| v.as_i64().map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "  {}/{}: committed {}, end {}, lag {}",
            p["stream"].as_str().unwrap_or_default(),
            p["partition"],
            show(&p["committed"]),
            show(&p["end"]),
            show(&p["lag"]),
        );
    }
    out
}
