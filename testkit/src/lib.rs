//! Test support shared by connector tests and the end-to-end tests in `tests/`.
//!
//! * [`http`]: start an in-process HTTP server on a free loopback port.
//! * One module per emulated service (Splunk HEC, Elasticsearch, Datadog Logs, Cosmos DB,
//!   Schema Registry). Each checks requests strictly as `docs/protocols.md` describes
//!   and answers with the real service's status codes and bodies, errors included, so a
//!   connector that passes against it speaks the protocol rather than a convenient subset.
//! * [`conformance`]: the SDK's connector conformance suite, re-exported.
//! * [`env`]: addresses of the real services the test script starts (Kafka, PostgreSQL, Redis).

pub mod api;
pub mod cosmos;
pub mod datadog;
pub mod drive;
pub mod elasticsearch;
pub mod env;
pub mod hec;
pub mod http;
pub mod kafka;
pub mod schema_registry;

/// The connector conformance suite, which lives in `sluice-sdk` (feature `conformance`) so
/// that plugin authors outside this repository can run it too.
pub use sluice_sdk::conformance;
