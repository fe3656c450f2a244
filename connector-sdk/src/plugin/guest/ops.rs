//! Operations: connector futures run on the plugin's own tokio runtime, reported to the host
//! through its waker, collected with `op_poll`. Nothing here blocks a host thread.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

use crate::plugin::abi::{code, Buffer, HostWaker, Status, NO_RETRY_AFTER};
use crate::plugin::codec::CodecError;
use crate::plugin::BufferPool;
use crate::{ConfigError, SinkError, SourceError};

/// Why a call or an operation failed, before it becomes a [`Status`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: i32,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub path: Option<String>,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retry_after: None,
            path: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(code::INVALID, message)
    }

    pub fn into_status(self) -> Status {
        Status {
            code: self.code,
            retry_after_ms: self.retry_after.map_or(NO_RETRY_AFTER, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
            }),
            message: Buffer::from_vec(self.message.into_bytes()),
            path: self
                .path
                .map_or(Buffer::EMPTY, |p| Buffer::from_vec(p.into_bytes())),
        }
    }
}

impl From<SinkError> for Failure {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Unavailable {
                message,
                retry_after,
            } => Failure {
                retry_after,
                ..Failure::new(code::UNAVAILABLE, message)
            },
            SinkError::Unauthorized(m) => Failure::new(code::UNAUTHORIZED, m),
            SinkError::TooLarge(m) => Failure::new(code::TOO_LARGE, m),
            SinkError::Fatal(m) => Failure::new(code::FATAL, m),
        }
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Unavailable(m) => Failure::new(code::UNAVAILABLE, m),
            SourceError::Unauthorized(m) => Failure::new(code::UNAUTHORIZED, m),
            SourceError::Fatal(m) => Failure::new(code::FATAL, m),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            path: e.path,
            ..Failure::new(code::CONFIG, e.message)
        }
    }
}

impl From<CodecError> for Failure {
    fn from(e: CodecError) -> Self {
        Failure::invalid(e.to_string())
    }
}

thread_local! {
    /// Where the last panic on this thread happened, set by the panic hook.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Remembers the location of a panic so the status message can name it.
pub(crate) fn note_panic_location(location: String) {
    PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(location));
}

/// `panicked at src/lib.rs:10:5: the message`
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    };
    match PANIC_LOCATION.with(|l| l.borrow_mut().take()) {
        Some(loc) => format!("panicked at {loc}: {msg}"),
        None => format!("panicked: {msg}"),
    }
}

/// Runs a synchronous export body; a panic becomes a `PANIC` status.
pub(crate) fn guard(f: impl FnOnce() -> Result<Status, Failure>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => failure.into_status(),
        Err(payload) => Failure::new(code::PANIC, panic_message(payload)).into_status(),
    }
}

/// A future whose panics become an error result instead of unwinding.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.get_mut().0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}

/// The host's waker, owned by the plugin: released exactly once, on drop.
pub(crate) struct WakerGuard(HostWaker);

// SAFETY: the ABI requires `wake` and `release` to be callable from any thread.
unsafe impl Send for WakerGuard {}

impl WakerGuard {
    /// # Safety
    /// `waker` must be a valid host waker handed over by the current call.
    pub unsafe fn new(waker: HostWaker) -> Self {
        WakerGuard(waker)
    }

    fn wake(&self) {
        // SAFETY: valid until released in `drop`.
        unsafe { (self.0.wake)(self.0.ctx) }
    }
}

impl Drop for WakerGuard {
    fn drop(&mut self) {
        // SAFETY: released exactly once.
        unsafe { (self.0.release)(self.0.ctx) }
    }
}

/// What an operation hands back to the host.
pub(crate) enum Payload {
    /// A small answer (outcomes, checkpoints), freed by the host's release.
    Owned(Vec<u8>),
    /// A record batch from [`batch_buffer`]: the host's release returns it to the pool.
    Batch(Vec<u8>),
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::Owned(v)
    }
}

type OpResult = Result<Payload, Failure>;

struct OpEntry {
    result: Arc<Mutex<Option<OpResult>>>,
    /// Absent when the operation finished within its submit call.
    running: Option<Running>,
}

/// An operation's work while its task runs. The future sits behind a lock that its task
/// holds while polling it, so a cancel can drop it at once and know that it is gone: what
/// the host lent the operation is not read after `op_cancel` returns.
struct Running {
    work: Arc<dyn Cancel>,
    abort: AbortHandle,
}

trait Cancel: Send + Sync {
    /// Drops the work unless it already ended; waits for a poll in progress.
    fn cancel(&self);
}

impl<F: Send> Cancel for Mutex<Option<F>> {
    fn cancel(&self) {
        let work = self.lock().take();
        drop(work);
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static OPS: LazyLock<Mutex<HashMap<u64, OpEntry>>> = LazyLock::new(Default::default);
static BATCH_BUFFERS: LazyLock<Arc<BufferPool>> = LazyLock::new(BufferPool::new);

/// An empty vector to encode a record batch into (see [`Payload::Batch`]).
pub(crate) fn batch_buffer() -> Vec<u8> {
    BATCH_BUFFERS.take()
}
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// A fresh handle for an operation or an instance.
pub(crate) fn next_handle() -> u64 {
    NEXT_HANDLE.fetch_add(1, Ordering::Relaxed)
}

/// Starts the plugin's runtime (once per process).
pub(crate) fn start_runtime(name: &str, worker_threads: usize) -> Result<(), Failure> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(code::FATAL, format!("cannot start the plugin runtime: {e}")))?;
    // A concurrent init may have won; its runtime is as good as ours.
    let _ = RUNTIME.set(rt);
    Ok(())
}

pub(crate) fn runtime() -> Result<&'static Runtime, Failure> {
    RUNTIME
        .get()
        .ok_or_else(|| Failure::invalid("plugin not initialised: call sluice_plugin_init first"))
}

/// Starts `fut` as an operation and writes its handle to `out_op`.
///
/// The future is polled once right here, inside the plugin runtime's context, the way the
/// host polls a built-in connector on its own worker: an operation that needs no waiting
/// (a file write, a generated batch) is then done when `submit` returns, with no thread
/// hand-off in either direction. Anything it waits for continues as a task on the plugin's
/// runtime, which calls the host's waker when the result is ready.
///
/// # Safety
/// `out_op` must be valid for a write.
pub(crate) unsafe fn submit<F, P>(
    waker: WakerGuard,
    out_op: *mut u64,
    fut: F,
) -> Result<Status, Failure>
where
    F: Future<Output = Result<P, Failure>> + Send + 'static,
    P: Into<Payload>,
{
    if out_op.is_null() {
        return Err(Failure::invalid("null out_op"));
    }
    let rt = runtime()?;
    let id = next_handle();
    let mut fut = CatchUnwind(Box::pin(async move { fut.await.map(Into::into) }));
    let first = {
        let _runtime = rt.enter();
        // Not the host's waker: a pending future is polled again as soon as it is spawned.
        Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()))
    };
    let entry = match first {
        Poll::Ready(r) => {
            drop(waker);
            // Dropped here, before the host can see the result (see `Running`).
            let _runtime = rt.enter();
            drop(fut);
            OpEntry {
                result: Arc::new(Mutex::new(Some(
                    r.unwrap_or_else(|panic| Err(Failure::new(code::PANIC, panic))),
                ))),
                running: None,
            }
        }
        Poll::Pending => {
            let result = Arc::new(Mutex::new(None));
            let slot = result.clone();
            let work = Arc::new(Mutex::new(Some(fut)));
            let task_work = work.clone();
            // Hold the table while spawning so a fast task cannot complete before its entry
            // exists.
            let mut ops = OPS.lock();
            let task = rt.spawn(async move {
                let r = std::future::poll_fn(|cx| {
                    let mut work = task_work.lock();
                    let Some(fut) = work.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let r = std::task::ready!(Pin::new(fut).poll(cx));
                    // The work goes before its result is published: once the host sees
                    // the result it may free what it lent.
                    *work = None;
                    Poll::Ready(Some(r))
                })
                .await;
                let Some(r) = r else { return };
                *slot.lock() =
                    Some(r.unwrap_or_else(|panic| Err(Failure::new(code::PANIC, panic))));
                waker.wake();
                drop(waker);
            });
            ops.insert(
                id,
                OpEntry {
                    result,
                    running: Some(Running {
                        work,
                        abort: task.abort_handle(),
                    }),
                },
            );
            drop(ops);
            // SAFETY: checked non-null; the caller guarantees validity.
            unsafe { *out_op = id };
            return Ok(Status::OK);
        }
    };
    OPS.lock().insert(id, entry);
    // SAFETY: checked non-null; the caller guarantees validity.
    unsafe { *out_op = id };
    Ok(Status::OK)
}

pub(crate) unsafe extern "C" fn op_poll(op: u64, out: *mut Buffer) -> Status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("null out"));
        }
        let mut ops = OPS.lock();
        let entry = ops
            .get(&op)
            .ok_or_else(|| Failure::invalid(format!("unknown operation {op}")))?;
        let Some(result) = entry.result.lock().take() else {
            return Ok(Status::PENDING);
        };
        ops.remove(&op);
        drop(ops);
        match result {
            Ok(payload) => {
                let buffer = match payload {
                    Payload::Owned(v) => Buffer::from_vec(v),
                    Payload::Batch(v) => BATCH_BUFFERS.hand_over(v),
                };
                // SAFETY: checked non-null; the host guarantees validity.
                unsafe { out.write(buffer) };
                Ok(Status::OK)
            }
            Err(f) => {
                // SAFETY: as above.
                unsafe { out.write(Buffer::EMPTY) };
                Err(f)
            }
        }
    })
}

pub(crate) unsafe extern "C" fn op_cancel(op: u64) {
    let entry = OPS.lock().remove(&op);
    let Some(running) = entry.and_then(|e| e.running) else {
        return;
    };
    running.abort.abort();
    // The work may hold runtime resources: drop it in the runtime. A panic in a destructor
    // must not unwind into the host.
    let _rt = RUNTIME.get().map(Runtime::enter);
    let _ = catch_unwind(AssertUnwindSafe(|| running.work.cancel()));
}
