//! Test-only fault injection, compiled into debug builds only.
//!
//! `SLUICE_FAULT_PANIC=<pipeline>:<stage>[:<n>]` makes that stage of that pipeline panic once
//! in the life of the process, at its `n`th batch (default the first), so the end-to-end
//! tests can show that a panic anywhere in a pipeline is caught, reported and restarted. Stages: `source` (the source loop),
//! `delivery` (the delivery task), `open` (a run's start, where the connectors open). Release builds have no such hook: the variable is ignored there.

#[cfg(debug_assertions)]
pub fn maybe_panic(pipeline: &str, stage: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// Pipeline, stage and the call (1-based) that panics.
    static TARGET: OnceLock<Option<(String, String, u64)>> = OnceLock::new();
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("SLUICE_FAULT_PANIC").ok()?;
        let mut parts = v.splitn(3, ':');
        let (p, s) = (parts.next()?, parts.next()?);
        let nth = parts.next().map_or(Some(1), |n| n.parse().ok())?;
        Some((p.to_string(), s.to_string(), nth))
    });
    if let Some((p, s, nth)) = target {
        if p == pipeline && s == stage && CALLS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            panic!("injected fault: stage `{stage}` of pipeline `{pipeline}` panicked (SLUICE_FAULT_PANIC)");
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn maybe_panic(_pipeline: &str, _stage: &str) {}

/// The text of a panic payload (`panic!` with a message carries a `&str` or a `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
