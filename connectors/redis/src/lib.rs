//! `redis` sink: records become stream entries (`XADD`, approximate `MAXLEN` trimming),
//! hashes (`HSET`), list items (`RPUSH`), pub/sub messages (`PUBLISH`) or keys (`SET`, with
//! an optional TTL), under a key templated from record fields. A batch is one pipelined round
//! trip; a Redis that is down makes the batch `Unavailable` (nothing is lost) and the
//! connection manager reconnects by itself.

mod config;
mod encoder;
mod response;
mod sink;

pub use config::{Mode, RedisConfig};
pub use sink::RedisSink;

use sluice_sdk::Registry;

/// Registers the `redis` sink.
pub fn register(registry: &mut Registry) {
    registry.register_sink("redis", env!("CARGO_PKG_VERSION"), |cfg: RedisConfig, _| {
        Ok(Box::new(RedisSink::new(cfg)?))
    });
}
