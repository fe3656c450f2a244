//! The source's own fetch queue: every assigned partition's fetched messages are forwarded to
//! one librdkafka queue, read in batches (`rd_kafka_consume_batch_queue`). The consumer queue
//! keeps the rest (rebalances, errors, commits), served by polling the consumer as before.
//!
//! Reading a message at a time from the consumer queue costs, per message, its own queue
//! lock, an event wrapper, an allocation and five clock reads (librdkafka's poll-interval
//! bookkeeping): a third of the read loop's time. A batch read pays those once.
//!
//! Ordering: a partition's messages reach exactly one queue, in fetch order. Its fetch queue
//! is forwarded here before it is assigned (librdkafka keeps a forward the application set,
//! marking it as the application's), so none of its messages ever reach the consumer queue
//! first. All FFI of the source is in this module.

use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::Notify;

/// The source's fetch queue. Dropped before the consumer it belongs to (see
/// [`crate::context::ClientState::take_fetch_queue`]).
pub struct FetchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    rk: NonNull<rd::rd_kafka_t>,
    /// Woken by librdkafka when a message arrives in the empty queue.
    wake: Arc<Notify>,
}

// SAFETY: librdkafka queues and client handles are thread-safe; the pointers are only used
// through librdkafka's API, which locks internally.
unsafe impl Send for FetchQueue {}
unsafe impl Sync for FetchQueue {}

unsafe extern "C" fn on_arrival(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` the queue's owner keeps alive until it turns this
    // callback off (in `Drop`). librdkafka calls it holding the queue's lock, which turning
    // it off takes too, so no call is still running once that returns.
    let notify = unsafe { &*(opaque as *const Notify) };
    notify.notify_one();
}

impl std::fmt::Debug for FetchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchQueue")
    }
}

/// Scratch space for [`FetchQueue::drain`], kept by the reader between batches.
#[derive(Default)]
pub struct DrainBuf(Vec<*mut rd::rd_kafka_message_t>);

// SAFETY: the buffer holds no message between calls (`drain` destroys each one it got).
unsafe impl Send for DrainBuf {}

impl FetchQueue {
    /// A new queue on the client `rk` (a consumer's native handle).
    pub fn new(rk: *mut rd::rd_kafka_t) -> Option<FetchQueue> {
        let rk = NonNull::new(rk)?;
        // SAFETY: `rk` is a live client handle; the queue is owned and destroyed in `Drop`.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_new(rk.as_ptr()) })?;
        let wake = Arc::new(Notify::new());
        // SAFETY: the `Notify` outlives the callback: `Drop` turns the callback off first.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(on_arrival),
                Arc::as_ptr(&wake) as *mut c_void,
            )
        };
        Some(FetchQueue { queue, rk, wake })
    }

    /// Forwards a partition's fetched messages here. Called before the partition is
    /// assigned; forwarding a partition again is harmless. False if librdkafka has no queue
    /// for it (its messages then stay on the consumer queue, still read there).
    pub fn adopt(&self, topic: &str, partition: i32) -> bool {
        let Ok(name) = CString::new(topic) else {
            return false;
        };
        // SAFETY: a live client; the partition handle is released once forwarded (the
        // partition keeps its queue and the forward).
        unsafe {
            let part = rd::rd_kafka_queue_get_partition(self.rk.as_ptr(), name.as_ptr(), partition);
            if part.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(part, self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(part);
        }
        true
    }

    /// A partition's log start offset as of its latest fetch response (librdkafka's cached
    /// low watermark: no request). `None` when not known yet.
    pub fn log_start(&self, topic: &str, partition: i32) -> Option<i64> {
        let name = CString::new(topic).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: a live client; librdkafka reads the name and writes the two offsets.
        let err = unsafe {
            rd::rd_kafka_get_watermark_offsets(
                self.rk.as_ptr(),
                name.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0).then_some(low)
    }

    /// Waits until a message may have arrived since the queue was last found empty.
    pub async fn arrived(&self) {
        self.wake.notified().await
    }

    /// Takes up to `max` messages without waiting and hands each to `take`, in queue order.
    /// Returns how many were taken.
    pub fn drain(
        &self,
        max: usize,
        buf: &mut DrainBuf,
        mut take: impl FnMut(Fetched<'_>),
    ) -> usize {
        let buf = &mut buf.0;
        buf.clear();
        buf.reserve(max);
        // SAFETY: `buf` has room for `max` pointers; librdkafka fills the first `n`.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, buf.as_mut_ptr(), max)
        };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: librdkafka wrote `n` message pointers.
        unsafe { buf.set_len(n) };
        for &m in buf.iter() {
            // SAFETY: each message is valid until destroyed, right after `take` saw it.
            take(Fetched(unsafe { &*m }));
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
        buf.clear();
        n
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the callback is turned off before its `Notify` can go; the queue is ours.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// One message (or per-partition event) of the fetch queue, borrowed until the next.
pub struct Fetched<'a>(&'a rd::rd_kafka_message_t);

impl Fetched<'_> {
    /// The message's error: end of partition, or a fetch error librdkafka recovers from.
    pub fn error(&self) -> Option<RDKafkaRespErr> {
        (self.0.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(self.0.err)
    }
}

/// A fetched message as the source reads it, from the fetch queue or, for a partition that
/// could not be forwarded, the consumer queue.
pub trait Incoming {
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn payload(&self) -> Option<&[u8]>;
    fn key(&self) -> Option<&[u8]>;
    /// Milliseconds since the epoch, when the message has a timestamp.
    fn timestamp(&self) -> Option<i64>;
    /// Calls `each` with every header's name and value (`None`: a null value), in order.
    fn headers(&self, each: impl FnMut(&str, Option<&[u8]>));
}

impl Incoming for BorrowedMessage<'_> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }
    fn partition(&self) -> i32 {
        Message::partition(self)
    }
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }
    fn timestamp(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }
    fn headers(&self, mut each: impl FnMut(&str, Option<&[u8]>)) {
        if let Some(hs) = Message::headers(self) {
            for h in hs.iter() {
                each(h.key, h.value);
            }
        }
    }
}

impl Incoming for Fetched<'_> {
    /// The topic, or "" when librdkafka gives none (an error without a partition).
    fn topic(&self) -> &str {
        if self.0.rkt.is_null() {
            return "";
        }
        // SAFETY: a message's topic handle lives as long as the message; its name is a C
        // string librdkafka keeps with the handle.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.0.rkt)) }
            .to_str()
            .unwrap_or("")
    }

    fn partition(&self) -> i32 {
        self.0.partition
    }

    fn offset(&self) -> i64 {
        self.0.offset
    }

    fn payload(&self) -> Option<&[u8]> {
        bytes(self.0.payload, self.0.len)
    }

    fn key(&self) -> Option<&[u8]> {
        bytes(self.0.key, self.0.key_len)
    }

    fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message; `kind` is written by librdkafka.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
            .then_some(ts)
    }

    fn headers(&self, mut each: impl FnMut(&str, Option<&[u8]>)) {
        let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: a valid message; the headers belong to it and are read, never kept.
        unsafe {
            if rd::rd_kafka_message_headers(self.0, &mut hdrs)
                != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
                || hdrs.is_null()
            {
                return;
            }
            let mut idx = 0;
            loop {
                let mut name: *const std::ffi::c_char = std::ptr::null();
                let mut value: *const c_void = std::ptr::null();
                let mut size = 0usize;
                if rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size)
                    != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    break;
                }
                let name = CStr::from_ptr(name).to_string_lossy();
                each(&name, bytes(value as *mut c_void, size));
                idx += 1;
            }
        }
    }
}

fn bytes<'a>(ptr: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: librdkafka's (pointer, length) pairs describe readable bytes owned by the
    // message, which outlives the borrow.
    Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}
