//! Prometheus metrics, all labelled by pipeline, and by sink where they concern one (names are
//! a stable contract, listed in `docs/operations.md`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The host's metric families.
pub struct Metrics {
    registry: Registry,
    received: IntCounterVec,
    sent: IntCounterVec,
    dead_lettered: IntCounterVec,
    filtered: IntCounterVec,
    retried: IntCounterVec,
    request_duration: HistogramVec,
    lag: IntGaugeVec,
    skipped: IntCounterVec,
    restarts: IntCounterVec,
    fallback: IntCounterVec,
}

/// Handles for one pipeline, resolved once so the hot path only adds.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub received: IntCounter,
    /// Letters of the stages before the sinks (decoding, transforms, unrouted): `sink=""`.
    pub dead_lettered: IntCounter,
    pub filtered: IntCounter,
    pub lag: IntGauge,
    pub skipped: IntCounter,
    pub restarts: IntCounter,
}

/// Handles for one sink of one pipeline.
#[derive(Clone)]
pub struct SinkMetrics {
    pub sent: IntCounter,
    pub dead_lettered: IntCounter,
    pub retried: IntCounter,
    pub fallback: IntCounter,
    pub request_duration: prometheus::Histogram,
}

fn counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["pipeline"]).expect("valid metric definition")
}

fn sink_counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["pipeline", "sink"])
        .expect("valid metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let received = counter(
            "sluice_records_received_total",
            "Records read from the source.",
        );
        let sent = sink_counter(
            "sluice_records_sent_total",
            "Records the sink confirmed delivered.",
        );
        let fallback = sink_counter(
            "sluice_records_fallback_total",
            "Records a sink's fallback took while the sink was unavailable.",
        );
        let dead_lettered = sink_counter(
            "sluice_records_dead_lettered_total",
            "Records written to the dead-letter queue.",
        );
        let filtered = counter(
            "sluice_records_filtered_total",
            "Records a transform filtered out (done without being sent). received = sent + dead-lettered + filtered + in flight.",
        );
        let retried = sink_counter(
            "sluice_records_retried_total",
            "Record delivery attempts that are retried (record-level retries, whole-batch failures, acknowledgement timeouts).",
        );
        let skipped = counter(
            "sluice_source_skipped_records_total",
            "Records a source skipped upstream (retention passed a Kafka committed offset).",
        );
        let restarts = counter(
            "sluice_pipeline_restarts_total",
            "Times a failed pipeline was restarted.",
        );
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_sink_request_duration_seconds",
                "Duration of one sink send call (one batch).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["pipeline", "sink"],
        )
        .expect("valid metric definition");
        let lag = IntGaugeVec::new(
            Opts::new(
                "sluice_source_lag_records",
                "Records available upstream and not yet read, where the source can tell.",
            ),
            &["pipeline"],
        )
        .expect("valid metric definition");
        for c in [
            &received,
            &sent,
            &dead_lettered,
            &filtered,
            &skipped,
            &retried,
            &restarts,
            &fallback,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
        }
        registry
            .register(Box::new(request_duration.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(lag.clone()))
            .expect("metric registered once");
        Metrics {
            registry,
            received,
            sent,
            dead_lettered,
            filtered,
            retried,
            request_duration,
            lag,
            skipped,
            restarts,
            fallback,
        }
    }

    pub fn pipeline(&self, name: &str) -> PipelineMetrics {
        PipelineMetrics {
            received: self.received.with_label_values(&[name]),
            dead_lettered: self.dead_lettered.with_label_values(&[name, ""]),
            filtered: self.filtered.with_label_values(&[name]),
            lag: self.lag.with_label_values(&[name]),
            skipped: self.skipped.with_label_values(&[name]),
            restarts: self.restarts.with_label_values(&[name]),
        }
    }

    pub fn sink(&self, pipeline: &str, sink: &str) -> SinkMetrics {
        let l = [pipeline, sink];
        SinkMetrics {
            sent: self.sent.with_label_values(&l),
            dead_lettered: self.dead_lettered.with_label_values(&l),
            retried: self.retried.with_label_values(&l),
            fallback: self.fallback.with_label_values(&l),
            request_duration: self.request_duration.with_label_values(&l),
        }
    }

    /// Records sent and dead-lettered by a pipeline, summed over its sinks (and, for dead
    /// letters, its stages before the sinks).
    pub fn totals(&self, pipeline: &str) -> (u64, u64) {
        (
            sum_for(&self.sent, pipeline),
            sum_for(&self.dead_lettered, pipeline),
        )
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Connectors register their own families in the process-wide default registry
        // (`sluice_http_events_total`); they are exposed after the host's.
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The sum of a family's counters whose `pipeline` label is `pipeline`.
fn sum_for(family: &IntCounterVec, pipeline: &str) -> u64 {
    use prometheus::core::Collector;
    family
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "pipeline" && l.value() == pipeline)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}
