//! The host end of plugin logging: one `tracing` event per plugin log line, under the target
//! `sluice::plugin` with the plugin's name and the module that logged.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use sluice_sdk::plugin::abi::{level, Slice};

/// Identifies the plugin in its log lines; lives as long as the process.
pub(crate) struct LogContext {
    pub plugin: String,
}

pub(crate) unsafe extern "C" fn host_log(
    ctx: *const c_void,
    lvl: u32,
    target: Slice,
    message: Slice,
) {
    // Never unwind into the plugin.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if ctx.is_null() {
            return;
        }
        // SAFETY: `ctx` is the leaked `LogContext` handed over at init; the slices are
        // borrowed for this call.
        let (ctx, target, message) = unsafe {
            (
                &*ctx.cast::<LogContext>(),
                target.as_bytes(),
                message.as_bytes(),
            )
        };
        let plugin = ctx.plugin.as_str();
        let module = String::from_utf8_lossy(target);
        let msg = String::from_utf8_lossy(message);
        match lvl {
            level::ERROR => {
                tracing::error!(target: "sluice::plugin", plugin, module = %module, "{msg}")
            }
            level::WARN => {
                tracing::warn!(target: "sluice::plugin", plugin, module = %module, "{msg}")
            }
            level::INFO => {
                tracing::info!(target: "sluice::plugin", plugin, module = %module, "{msg}")
            }
            level::DEBUG => {
                tracing::debug!(target: "sluice::plugin", plugin, module = %module, "{msg}")
            }
            _ => tracing::trace!(target: "sluice::plugin", plugin, module = %module, "{msg}"),
        }
    }));
}
