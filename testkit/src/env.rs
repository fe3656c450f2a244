//! Addresses of the real services used by tests. The test script (`scripts/test.sh`) starts
//! them and exports these variables; under CI a missing service is a failure, never a skip.

/// Apache Kafka broker started by scripts/start-kafka.sh.
pub fn kafka_brokers() -> String {
    std::env::var("SLUICE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_string())
}

/// PostgreSQL URL (trust auth on this machine).
pub fn postgres_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Redis URL.
pub fn redis_url() -> String {
    std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}
