//! A plugin transform behind the ordinary [`Transform`] trait. The chain hands it whole
//! batches: each is lent to the plugin in one call that answers one result per record.

use sluice_sdk::plugin::abi::{Buffer, LentBatch, Status};
use sluice_sdk::plugin::codec;
use sluice_sdk::plugin::lend::LentBatchBuf;
use sluice_sdk::plugin::ForeignBuffer;
use sluice_sdk::transform::{Applied, Event, TransformError, Verdict, PLUGIN_ERROR};
use sluice_sdk::{BuildContext, ConfigError, Record, RecordRef, Transform};

use super::call::{create_instance, take_status};
use super::LoadedPlugin;

type ApplyFn = unsafe extern "C" fn(u64, LentBatch, *mut Buffer) -> Status;
type DestroyFn = unsafe extern "C" fn(u64) -> Status;

pub(crate) struct PluginTransform {
    plugin: &'static LoadedPlugin,
    handle: u64,
    apply: ApplyFn,
    destroy: DestroyFn,
}

impl PluginTransform {
    /// The factory of a plugin transform type: builds the instance inside the plugin (no I/O).
    pub fn create(
        plugin: &'static LoadedPlugin,
        type_name: &str,
        config: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Transform>, ConfigError> {
        let api = plugin.api;
        // The loader refuses a plugin that lists a transform without all three slots.
        let (Some(create), Some(apply), Some(destroy)) = (
            api.transform_create,
            api.transform_apply,
            api.transform_destroy,
        ) else {
            return Err(ConfigError::new(format!(
                "plugin {} has no transform functions",
                plugin.manifest.name
            )));
        };
        let handle = create_instance(plugin, create, type_name, config, ctx)?;
        Ok(Box::new(PluginTransform {
            plugin,
            handle,
            apply,
            destroy,
        }))
    }

    /// One call across the boundary for the whole batch; the results, one per record.
    fn call(&self, records: &[&Record]) -> Result<Vec<Applied>, String> {
        let name = &self.plugin.manifest.name;
        let views: Vec<RecordRef<'_>> = records.iter().map(|r| r.view()).collect();
        let lent = LentBatchBuf::new(&views);
        let mut out = Buffer::EMPTY;
        // SAFETY: the batch is lent for the call only and outlives it; `out` is writable.
        let status = unsafe { (self.apply)(self.handle, lent.batch(), &mut out) };
        // SAFETY: written by the plugin (or left empty), owned by us now.
        let payload = unsafe { ForeignBuffer::new(out) }.into_bytes();
        take_status(status).map_err(|f| match f.code {
            sluice_sdk::plugin::abi::code::PANIC => format!("plugin {name} {}", f.message),
            _ => format!("plugin {name}: {}", f.message),
        })?;
        let applied = codec::decode_applied(&payload).map_err(|e| format!("plugin {name}: {e}"))?;
        if applied.len() != records.len() {
            return Err(format!(
                "plugin {name}: {} results for {} records",
                applied.len(),
                records.len()
            ));
        }
        Ok(applied)
    }
}

impl Transform for PluginTransform {
    /// One record by itself, as it stands after the transforms before this one; the chain
    /// calls [`apply_batch`](Transform::apply_batch) instead.
    fn apply(&self, event: &mut Event<'_>) -> Result<Verdict, TransformError> {
        let current;
        let record = if event.is_changed() {
            let mut value = Vec::new();
            event
                .fields()?
                .write(&mut value)
                .map_err(|e| TransformError::Serialise(e.to_string()))?;
            current = Record {
                value: value.into(),
                ..event.record().clone()
            };
            &current
        } else {
            event.record()
        };
        let mut out = Vec::with_capacity(1);
        self.apply_batch(&[record], &mut out);
        match out.pop() {
            Some(Applied::Kept) => Ok(Verdict::Keep),
            Some(Applied::Changed(value)) => {
                event.replace_value(&value)?;
                Ok(Verdict::Keep)
            }
            Some(Applied::Skipped) => Ok(Verdict::Skip),
            Some(Applied::Failed(e)) => Err(e),
            None => Err(TransformError::other(PLUGIN_ERROR, "no result")),
        }
    }

    fn per_batch(&self) -> bool {
        true
    }

    /// A batch the plugin cannot answer for (it breaks the ABI) fails every record of it with
    /// kind [`PLUGIN_ERROR`]: they are dead-lettered, never passed on untransformed.
    fn apply_batch(&self, records: &[&Record], out: &mut Vec<Applied>) {
        if records.is_empty() {
            return;
        }
        match self.call(records) {
            Ok(mut applied) => out.append(&mut applied),
            Err(message) => {
                tracing::error!(plugin = %self.plugin.manifest.name, "a plugin transform failed a batch: {message}");
                out.extend(records.iter().map(|_| {
                    Applied::Failed(TransformError::other(PLUGIN_ERROR, message.clone()))
                }));
            }
        }
    }
}

impl Drop for PluginTransform {
    fn drop(&mut self) {
        // SAFETY: the handle is live and destroyed once.
        let status = unsafe { (self.destroy)(self.handle) };
        if let Err(f) = take_status(status) {
            tracing::warn!(plugin = %self.plugin.manifest.name, "destroying a plugin transform: {}", f.message);
        }
    }
}
