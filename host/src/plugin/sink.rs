//! A plugin sink behind the ordinary [`Sink`] trait.

use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sluice_sdk::plugin::abi::{Buffer, HostWaker, LentBatch, PluginApi, Slice, Status};
use sluice_sdk::plugin::codec;
use sluice_sdk::plugin::lend::LentBatchBuf;
use sluice_sdk::plugin::wire::SinkOpenWire;
use sluice_sdk::plugin::ForeignBuffer;
use sluice_sdk::{
    async_trait, BuildContext, ConfigError, Health, Outcome, RecordRef, Sink, SinkContext,
    SinkError,
};

use super::call::{create_instance, take_status, Failure, Op};
use super::LoadedPlugin;

/// Mirrors the health a plugin connector reports into the host's [`Health`]: only changes
/// are applied, so the host's own verdicts are not overwritten by an unchanged plugin state.
#[derive(Default)]
pub(crate) struct HealthMirror {
    host: Option<Health>,
    last: Mutex<Option<String>>,
}

impl HealthMirror {
    pub fn attach(&mut self, health: Health) {
        self.host = Some(health);
    }

    /// `state`: the plugin's reason for being unhealthy, or `None`.
    pub fn update(&self, state: Option<String>) {
        let Some(host) = &self.host else { return };
        let mut last = self.last.lock();
        if *last == state {
            return;
        }
        match &state {
            Some(reason) => host.set_unhealthy(reason.clone()),
            None => host.set_healthy(),
        }
        *last = state;
    }
}

/// Reads a health answer (`*_health`): empty buffer when healthy.
pub(crate) fn read_health(
    call: impl FnOnce(*mut Buffer) -> sluice_sdk::plugin::abi::Status,
) -> Option<String> {
    let mut out = Buffer::EMPTY;
    let status = call(&mut out);
    // SAFETY: written by the plugin (or left empty), owned by us now.
    let reason = unsafe { ForeignBuffer::new(out) };
    take_status(status).ok()?;
    (!reason.is_empty()).then(|| reason.to_string_lossy())
}

pub(crate) struct PluginSink {
    plugin: &'static LoadedPlugin,
    handle: u64,
    health: HealthMirror,
}

impl PluginSink {
    /// The factory of a plugin sink type: builds the instance inside the plugin (no I/O).
    pub fn create(
        plugin: &'static LoadedPlugin,
        type_name: &str,
        config: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let handle = create_instance(plugin, plugin.api.sink_create, type_name, config, ctx)?;
        Ok(Box::new(PluginSink {
            plugin,
            handle,
            health: HealthMirror::default(),
        }))
    }

    fn sync_health(&self) {
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: `out` is writable; the handle is live until drop.
        self.health
            .update(read_health(|out| unsafe { (api.sink_health)(h, out) }));
    }

    fn error(&self, f: Failure) -> SinkError {
        f.into_sink_error(self.plugin)
    }

    /// Waits for a send operation and reads its outcomes, one per record.
    async fn outcomes(
        &self,
        op: Result<LentOp<'_>, Failure>,
        records: usize,
    ) -> Result<Vec<Outcome>, SinkError> {
        let result = op.map_err(|f| self.error(f))?.await;
        self.sync_health();
        let payload = result.map_err(|f| self.error(f))?;
        let outcomes = codec::decode_outcomes(payload.as_slice())
            .map_err(|e| SinkError::Fatal(format!("plugin {}: {e}", self.plugin.manifest.name)))?;
        if outcomes.len() != records {
            return Err(SinkError::Fatal(format!(
                "plugin {}: {} outcomes for {records} records",
                self.plugin.manifest.name,
                outcomes.len(),
            )));
        }
        Ok(outcomes)
    }
}

/// An operation on a lent batch. The operation is dropped first (a drop cancels it, and the
/// plugin has let go of the batch when the cancel returns), then the descriptors; the
/// records they point into are borrowed for longer still.
struct LentOp<'a> {
    op: Op,
    _batch: LentBatchBuf<'a>,
}

impl<'a> LentOp<'a> {
    fn start(
        api: &'static PluginApi,
        records: &'a [RecordRef<'_>],
        submit: impl FnOnce(LentBatch, HostWaker, *mut u64) -> Status,
    ) -> Result<Self, Failure> {
        let batch = LentBatchBuf::new(records);
        let lent = batch.batch();
        let op = Op::start(api, |waker, op| submit(lent, waker, op))?;
        Ok(LentOp { op, _batch: batch })
    }
}

impl Future for LentOp<'_> {
    type Output = <Op as Future>::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().op).poll(cx)
    }
}

#[async_trait]
impl Sink for PluginSink {
    async fn open(&mut self, ctx: SinkContext) -> Result<(), SinkError> {
        self.health.attach(ctx.health.clone());
        let wire = serde_json::to_vec(&SinkOpenWire {
            pipeline: ctx.pipeline.to_string(),
        })
        .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: the slice outlives the call; the waker and `op` are handed over per the ABI.
        let op = Op::start(api, |waker, op| unsafe {
            (api.sink_open)(h, Slice::new(&wire), waker, op)
        })
        .map_err(|f| self.error(f))?;
        let result = op.await;
        self.sync_health();
        result.map(drop).map_err(|f| self.error(f))
    }

    async fn send(&self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, SinkError> {
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: the batch is lent for the operation, which `LentOp` ends before it lets the
        // batch go; the waker is handed over per the ABI.
        let op = LentOp::start(api, records, |batch, waker, op| unsafe {
            (api.sink_send)(h, batch, waker, op)
        });
        self.outcomes(op, records.len()).await
    }

    fn default_concurrency(&self) -> usize {
        let mut n = 1u32;
        // SAFETY: `n` is writable; the handle is live.
        let status = unsafe { (self.plugin.api.sink_concurrency)(self.handle, &mut n) };
        match take_status(status) {
            Ok(()) => n.max(1) as usize,
            Err(_) => 1,
        }
    }

    async fn close(&self) -> Result<(), SinkError> {
        let (api, h) = (self.plugin.api, self.handle);
        // SAFETY: the waker and `op` are handed over per the ABI.
        let op = Op::start(api, |waker, op| unsafe { (api.sink_close)(h, waker, op) })
            .map_err(|f| self.error(f))?;
        let result = op.await;
        self.sync_health();
        result.map(drop).map_err(|f| self.error(f))
    }
}

impl Drop for PluginSink {
    fn drop(&mut self) {
        // SAFETY: the handle is live and destroyed once.
        let status = unsafe { (self.plugin.api.sink_destroy)(self.handle) };
        if let Err(f) = take_status(status) {
            tracing::warn!(plugin = %self.plugin.manifest.name, "destroying a plugin sink: {}", f.message);
        }
    }
}
