//! What a failed produce means: try the record again, refuse it for good, or a problem with
//! the destination as a whole (unreachable, timed out, not authorised) that is resent for as
//! long as it takes and never dead-lettered.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;
use sluice_sdk::{Outcome, SinkError};

/// How the host should treat one failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient for this message (leader moved, throttled, unknown topic that may appear).
    Retry,
    /// The broker will never take it (too large, invalid record, bad topic name).
    Reject,
    /// The cluster cannot take it now (unreachable, timed out, too few replicas): when the
    /// whole batch fails this way it is [`SinkError::Unavailable`], otherwise the record is
    /// [`Outcome::Unavailable`]; resent without counting an attempt, never dead-lettered.
    Unavailable,
    /// Credentials or ACLs refused: [`SinkError::Unauthorized`] for the batch, retried until
    /// the ACL is fixed, never dead-lettered.
    Unauthorized,
    /// The producer instance is unusable (idempotence state lost): restart the pipeline.
    Fatal,
}

pub fn classify(code: C) -> Verdict {
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessage
        | C::InvalidMessageSize
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::InvalidTopic
        | C::MessageBatchTooLarge
        | C::UnsupportedForMessageFormat
        | C::PolicyViolation
        | C::BadMessage
        | C::InvalidArgument
        | C::UnknownPartition => Verdict::Reject,
        C::MessageTimedOut
        | C::AllBrokersDown
        | C::BrokerTransportFailure
        | C::Resolve
        | C::RequestTimedOut
        | C::OperationTimedOut
        | C::NetworkException
        | C::BrokerNotAvailable
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::QueueFull
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::KafkaStorageError
        | C::ThrottlingQuotaExceeded
        | C::Retry => Verdict::Unavailable,
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::SSL => Verdict::Unauthorized,
        C::Fatal
        | C::Fenced
        | C::ProducerFenced
        | C::InvalidProducerEpoch
        | C::OutOfOrderSequenceNumber
        | C::UnknownProducerId => Verdict::Fatal,
        _ => Verdict::Retry,
    }
}

/// The librdkafka error code inside a produce error, if any.
pub fn code_of(error: &KafkaError) -> Option<C> {
    error.rdkafka_error_code()
}

/// Stable DLQ kind for a refused message: `kafka.<librdkafka error name>`.
pub fn kind(code: C) -> String {
    format!("kafka.{code:?}")
}

/// The per-record outcome for a failed message: only a record-level refusal is dead-lettered
/// at once, and only a record-level transient error counts toward `max_attempts`.
pub fn outcome(error: &KafkaError) -> Outcome {
    match code_of(error).map(classify) {
        Some(Verdict::Reject) => Outcome::reject(
            kind(code_of(error).unwrap_or(C::Unknown)),
            error.to_string(),
        ),
        Some(Verdict::Unavailable | Verdict::Unauthorized) => {
            Outcome::Unavailable(error.to_string())
        }
        _ => Outcome::Retry(error.to_string()),
    }
}

/// Folds the failures of a batch into a whole-batch error: the producer is unusable, an
/// authorisation failure (the pipeline waits, unhealthy, until the ACL is fixed), or nothing
/// was delivered and every failure is about the cluster. `failures` holds the errors of the
/// records that failed; `total` is the batch size.
pub fn batch_error(failures: &[&KafkaError], total: usize) -> Option<SinkError> {
    if let Some(fatal) = failures
        .iter()
        .find(|e| code_of(e).map(classify) == Some(Verdict::Fatal))
    {
        return Some(SinkError::Fatal(format!(
            "kafka producer unusable: {fatal}"
        )));
    }
    if let Some(denied) = failures
        .iter()
        .find(|e| code_of(e).map(classify) == Some(Verdict::Unauthorized))
    {
        return Some(SinkError::Unauthorized(format!("kafka: {denied}")));
    }
    if failures.is_empty() || failures.len() < total {
        return None;
    }
    if failures
        .iter()
        .all(|e| code_of(e).map(classify) == Some(Verdict::Unavailable))
    {
        return Some(SinkError::unavailable(format!("kafka: {}", failures[0])));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod(c: C) -> KafkaError {
        KafkaError::MessageProduction(c)
    }

    #[test]
    fn per_record_outcomes() {
        match outcome(&prod(C::MessageSizeTooLarge)) {
            Outcome::Reject(r) => assert_eq!(r.kind, "kafka.MessageSizeTooLarge"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome(&prod(C::NotEnoughReplicas)),
            Outcome::Unavailable(_)
        ));
        assert!(matches!(
            outcome(&prod(C::MessageTimedOut)),
            Outcome::Unavailable(_)
        ));
        assert!(matches!(
            outcome(&prod(C::UnknownTopicOrPartition)),
            Outcome::Retry(_)
        ));
    }

    #[test]
    fn whole_batch() {
        let down = prod(C::MessageTimedOut);
        assert!(matches!(
            batch_error(&[&down, &down], 2),
            Some(SinkError::Unavailable { .. })
        ));
        // Something was delivered: per-record outcomes, not a batch error.
        assert!(batch_error(&[&down], 2).is_none());
        let too_large = prod(C::MessageSizeTooLarge);
        assert!(batch_error(&[&down, &too_large], 2).is_none());
        let denied = prod(C::TopicAuthorizationFailed);
        assert!(matches!(
            batch_error(&[&denied], 1),
            Some(SinkError::Unauthorized(_))
        ));
        // Authorisation is about the destination even when other records went through.
        assert!(matches!(
            batch_error(&[&denied], 3),
            Some(SinkError::Unauthorized(_))
        ));
        let fenced = prod(C::ProducerFenced);
        assert!(matches!(
            batch_error(&[&fenced], 3),
            Some(SinkError::Fatal(_))
        ));
    }
}
