//! Where a consumer group stands: the committed offset of each partition against the
//! partition's watermarks. Used when partitions are assigned (a committed offset that
//! retention passed is a gap: reported and counted, then reading starts at the earliest
//! record), and by `sluice offsets` (asked without joining the group).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use sluice_sdk::PartitionPosition;

/// How long one broker question (committed offsets, watermarks, metadata) may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one assigned partition starts reading.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// At the committed offset, which is still readable.
    Committed,
    /// Nothing committed: where `start_from` says.
    Default,
    /// The committed offset is no longer readable (retention deleted `skipped` records past
    /// it, or the partition was recreated shorter): from the earliest record.
    Gap {
        committed: i64,
        low: i64,
        skipped: u64,
    },
}

/// Decides the start of a partition from its committed offset and watermarks.
pub fn start(committed: Option<i64>, low: i64, high: i64) -> Start {
    match committed {
        None => Start::Default,
        Some(c) if c < low => Start::Gap {
            committed: c,
            low,
            skipped: (low - c) as u64,
        },
        Some(c) if c > high => Start::Gap {
            committed: c,
            low,
            skipped: 0,
        },
        Some(_) => Start::Committed,
    }
}

fn offset_of(o: Offset) -> Option<i64> {
    o.to_raw().filter(|o| *o >= 0)
}

/// One partition's committed position: offset and the note committed with it.
pub struct Committed {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
    /// The commit's metadata, when it has any.
    pub note: Option<String>,
}

/// The committed offsets of `tpl`'s partitions, with their metadata.
pub fn committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> Result<Vec<Committed>, String> {
    let got = consumer
        .committed_offsets(tpl.clone(), ASK_TIMEOUT)
        .map_err(|e| format!("committed offsets: {e}"))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| Committed {
            topic: e.topic().to_string(),
            partition: e.partition(),
            offset: offset_of(e.offset()),
            note: Some(e.metadata())
                .filter(|m| !m.is_empty())
                .map(str::to_string),
        })
        .collect())
}

/// Every partition of `subscription` (topic names, or one `^regex`), from the metadata.
pub fn partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    subscription: &[String],
) -> Result<TopicPartitionList, String> {
    let mut tpl = TopicPartitionList::new();
    let mut add = |metadata: &rdkafka::metadata::Metadata, wanted: &dyn Fn(&str) -> bool| {
        for t in metadata.topics().iter().filter(|t| wanted(t.name())) {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    };
    match subscription {
        // A pattern needs every topic's name; named topics are asked for alone (a cluster
        // may hold thousands of topics).
        [p] if p.starts_with('^') => {
            let re = regex::Regex::new(&format!("^(?:{})$", &p[1..])).map_err(|e| e.to_string())?;
            let metadata = consumer
                .fetch_metadata(None, ASK_TIMEOUT)
                .map_err(|e| format!("metadata: {e}"))?;
            add(&metadata, &|name| re.is_match(name));
        }
        topics => {
            for topic in topics {
                let metadata = consumer
                    .fetch_metadata(Some(topic), ASK_TIMEOUT)
                    .map_err(|e| format!("metadata of {topic}: {e}"))?;
                add(&metadata, &|name| name == topic);
            }
        }
    }
    Ok(tpl)
}

/// Positions of every partition of `subscription` (topic names, or one `^regex`) for the
/// consumer's group, without joining it.
pub fn stored<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    subscription: &[String],
) -> Result<Vec<PartitionPosition>, String> {
    let tpl = partitions(consumer, subscription)?;
    let mut out = Vec::new();
    for Committed {
        topic,
        partition,
        offset: committed,
        ..
    } in committed(consumer, &tpl)?
    {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, ASK_TIMEOUT)
            .map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))?;
        out.push(PartitionPosition {
            lag: Some((high - committed.unwrap_or(low).max(low)).max(0) as u64),
            stream: topic,
            partition,
            committed,
            end: Some(high),
        });
    }
    out.sort_by(|a, b| (&a.stream, a.partition).cmp(&(&b.stream, b.partition)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps() {
        assert_eq!(start(None, 5, 10), Start::Default);
        assert_eq!(start(Some(7), 5, 10), Start::Committed);
        assert_eq!(start(Some(10), 5, 10), Start::Committed);
        assert_eq!(
            start(Some(2), 5, 10),
            Start::Gap {
                committed: 2,
                low: 5,
                skipped: 3
            }
        );
        assert!(matches!(
            start(Some(12), 0, 10),
            Start::Gap { skipped: 0, .. }
        ));
    }
}
