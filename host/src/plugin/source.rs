//! A plugin source behind the ordinary [`Source`] trait.

use sluice_sdk::plugin::abi::{Buffer, Slice};
use sluice_sdk::plugin::codec::{self, StreamInterner};
use sluice_sdk::plugin::wire::SourceOpenWire;
use sluice_sdk::{
    async_trait, BuildContext, Checkpoint, ConfigError, Origin, Polled, Source, SourceContext,
    SourceError,
};

use super::call::{create_instance, take_status, Failure, Op};
use super::sink::{read_health, HealthMirror};
use super::LoadedPlugin;

pub(crate) struct PluginSource {
    plugin: &'static LoadedPlugin,
    handle: u64,
    health: HealthMirror,
    /// Stream names of earlier batches, reused so a batch allocates none.
    streams: StreamInterner,
}

impl PluginSource {
    /// The factory of a plugin source type: builds the instance inside the plugin (no I/O).
    pub fn create(
        plugin: &'static LoadedPlugin,
        type_name: &str,
        config: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let handle = create_instance(plugin, plugin.api.source_create, type_name, config, ctx)?;
        Ok(Box::new(PluginSource {
            plugin,
            handle,
            health: HealthMirror::default(),
            streams: StreamInterner::default(),
        }))
    }

    fn sync_health(&self) {
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: `out` is writable; the handle is live until drop.
        self.health
            .update(read_health(|out| unsafe { (api.source_health)(h, out) }));
    }

    fn error(&self, f: Failure) -> SourceError {
        f.into_source_error(self.plugin)
    }

    fn malformed(&self, e: codec::CodecError) -> SourceError {
        SourceError::Fatal(format!("plugin {}: {e}", self.plugin.manifest.name))
    }
}

#[async_trait]
impl Source for PluginSource {
    async fn open(&mut self, ctx: SourceContext) -> Result<(), SourceError> {
        self.health.attach(ctx.health.clone());
        let wire = serde_json::to_vec(&SourceOpenWire {
            pipeline: ctx.pipeline.to_string(),
            checkpoints: ctx.checkpoints,
        })
        .map_err(|e| SourceError::Fatal(e.to_string()))?;
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: the slice outlives the call; the waker and `op` are handed over per the ABI.
        let op = Op::start(api, |waker, op| unsafe {
            (api.source_open)(h, Slice::new(&wire), waker, op)
        })
        .map_err(|f| self.error(f))?;
        let result = op.await;
        self.sync_health();
        result.map(drop).map_err(|f| self.error(f))
    }

    async fn poll(&mut self, max: usize) -> Result<Polled, SourceError> {
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: the waker and `op` are handed over per the ABI.
        let op = Op::start(api, |waker, op| unsafe {
            (api.source_poll)(h, max as u64, waker, op)
        })
        .map_err(|f| self.error(f))?;
        let result = op.await;
        self.sync_health();
        let payload = result.map_err(|f| self.error(f))?.into_bytes();
        codec::decode_polled(&payload, &mut self.streams).map_err(|e| self.malformed(e))
    }

    async fn commit(&mut self, through: &[Origin]) -> Result<Vec<Checkpoint>, SourceError> {
        let (api, h) = (self.plugin.api, self.handle);
        let origins = Buffer::from_vec(codec::encode_origins(through));
        // SAFETY: the buffer and the waker are handed over per the ABI.
        let op = Op::start(api, move |waker, op| unsafe {
            (api.source_commit)(h, origins, waker, op)
        })
        .map_err(|f| self.error(f))?;
        let result = op.await;
        self.sync_health();
        let payload = result.map_err(|f| self.error(f))?;
        codec::decode_checkpoints(payload.as_slice()).map_err(|e| self.malformed(e))
    }

    fn lag(&self) -> Option<u64> {
        let mut lag = u64::MAX;
        // SAFETY: `lag` is writable; the handle is live.
        let status = unsafe { (self.plugin.api.source_lag)(self.handle, &mut lag) };
        take_status(status).ok()?;
        (lag != u64::MAX).then_some(lag)
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: the waker and `op` are handed over per the ABI.
        let op = Op::start(api, |waker, op| unsafe { (api.source_close)(h, waker, op) })
            .map_err(|f| self.error(f))?;
        let result = op.await;
        self.sync_health();
        result.map(drop).map_err(|f| self.error(f))
    }
}

impl Drop for PluginSource {
    fn drop(&mut self) {
        // SAFETY: the handle is live and destroyed once.
        let status = unsafe { (self.plugin.api.source_destroy)(self.handle) };
        if let Err(f) = take_status(status) {
            tracing::warn!(plugin = %self.plugin.manifest.name, "destroying a plugin source: {}", f.message);
        }
    }
}
