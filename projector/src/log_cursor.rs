//! Where a worker is in each partition of the log, and what to do with the next message.
//!
//! The events topic is neither compacted nor transactional, so its offsets are
//! contiguous: a message after offset `n` must be at `n + 1`. A worker that sees a jump
//! has missed messages, and it must not carry on. tansu 0.6 shows why this matters. A
//! Fetch that starts inside a record batch gets only the batches whose *base* offset
//! is at or after the one asked for, so the rest of the batch it started in is silently
//! left out. (Kafka returns the whole batch and the client drops the records before the
//! offset.) A consumer resuming at a checkpoint that fell inside a producer batch
//! therefore skipped up to a batch of acknowledged events, and librdkafka accepted the
//! jump without complaint. (See `tests/api/log_gaps.rs`.)
//!
//! Two defences:
//! - A worker starts each partition [`REWIND`] offsets before its checkpoint. The relay
//!   caps producer batches at that size, so the batch holding the checkpoint comes back
//!   whole. Messages before the checkpoint are dropped as duplicates.
//! - Any jump past the expected offset is a [`Verdict::Gap`]. The worker applies what came
//!   before it, then starts again further back, doubling the rewind each time. Only a
//!   jump that is still there on a second read from the very start of the log is
//!   accepted, because the messages are not in the log. It is counted and logged as an
//!   error, and `murima-admin verify --repair` restores from the journal whatever they
//!   held. tansu makes such holes: a produce it refuses after raising the partition's
//!   high watermark leaves those offsets empty for good. The relay sends the refused
//!   events again after the hole, so nothing is lost there.
//!
//! Log epochs: the relay stamps each message with its refill count. A broker that lost
//! its log is refilled from offset 0 in a new epoch, so an offset below the expected one
//! in a newer epoch starts a new generation of the log rather than being a duplicate.
//! (A worker starting with a checkpoint of an older epoch than the relay's reads the
//! partition from offset 0 instead: see `Worker::consume`.)

use std::collections::BTreeMap;

use crate::projection::LogPosition;

/// How far before its checkpoint a partition is read again: at least one whole
/// producer batch (the relay caps them at `runtime::kafka::MAX_BATCH_RECORDS`).
pub const REWIND: i64 = runtime::kafka::MAX_BATCH_RECORDS;

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next message of its partition: apply it.
    Apply,
    /// Already applied (a rewind, a redelivery, or an older log epoch): drop it.
    Duplicate,
    /// Messages are missing before this one; read the partition again from `from`.
    Gap { expected: i64, from: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partition {
    /// The next offset to apply, and the log epoch it belongs to.
    next: LogPosition,
    /// Where this consumer started reading the partition.
    started_at: i64,
    /// How far back the next restart reads (doubles after each gap at the same place).
    rewind: i64,
    /// Set once a gap is seen: the rest of the partition waits for the restart.
    gap: bool,
    /// The offset last found missing, and how many times in a row.
    missing: Option<(i64, u32)>,
}

/// The cursor of every partition a worker reads. It lives as long as the worker, so the
/// rewind grows across consumer restarts while a gap persists.
#[derive(Debug, Default)]
pub struct LogCursor {
    partitions: BTreeMap<i32, Partition>,
}

impl LogCursor {
    /// Resets the cursor to the store's checkpoints and returns the offset each
    /// partition is read from.
    pub fn start(&mut self, partitions: &[i32], checkpoints: &BTreeMap<i32, LogPosition>) -> BTreeMap<i32, i64> {
        partitions
            .iter()
            .map(|&p| {
                let next = checkpoints.get(&p).copied().unwrap_or(LogPosition { next_offset: 0, epoch: 0 });
                let old = self.partitions.get(&p);
                let rewind = old.map_or(REWIND, |old| old.rewind);
                let missing = old.and_then(|old| old.missing);
                let started_at = (next.next_offset - rewind).max(0);
                self.partitions.insert(p, Partition { next, started_at, rewind, gap: false, missing });
                (p, started_at)
            })
            .collect()
    }

    /// The verdict on a message at `offset` of `partition`, stamped with `epoch`.
    pub fn observe(&mut self, partition: i32, offset: i64, epoch: i32) -> Verdict {
        let Some(p) = self.partitions.get_mut(&partition) else {
            // A partition added to the topic since the worker started: from its start.
            self.partitions.insert(
                partition,
                Partition {
                    next: LogPosition { next_offset: offset + 1, epoch },
                    started_at: offset,
                    rewind: REWIND,
                    gap: false,
                    missing: None,
                },
            );
            return Verdict::Apply;
        };
        if p.gap {
            return Verdict::Duplicate;
        }
        let expected = p.next.next_offset;
        if offset == expected {
            p.next = LogPosition { next_offset: offset + 1, epoch: epoch.max(p.next.epoch) };
            if p.missing.is_none_or(|(at, _)| at < p.next.next_offset) {
                p.missing = None;
                p.rewind = REWIND;
            }
            return Verdict::Apply;
        }
        if offset < expected {
            if epoch > p.next.epoch {
                // A refilled log, counted again from 0: a new generation starts here.
                p.next = LogPosition { next_offset: offset + 1, epoch };
                p.rewind = REWIND;
                return Verdict::Apply;
            }
            return Verdict::Duplicate;
        }
        let times = match p.missing {
            Some((at, n)) if at == expected => n + 1,
            _ => 1,
        };
        p.missing = Some((expected, times));
        if p.started_at == 0 && times >= 2 {
            // Read again from the very start of the log and still missing: the messages are
            // not in the log (gone by retention, or a hole the broker made). Re-reading
            // cannot bring them; the journal has them (a refill or `verify --repair`).
            tracing::error!(partition, expected, offset, "messages missing from the log; accepting the gap");
            metrics::counter!("projection_offset_gaps_accepted_total").increment(1);
            p.next = LogPosition { next_offset: offset + 1, epoch: epoch.max(p.next.epoch) };
            p.missing = None;
            p.rewind = REWIND;
            return Verdict::Apply;
        }
        p.gap = true;
        let from = (expected - p.rewind).max(0);
        p.rewind = p.rewind.saturating_mul(2);
        Verdict::Gap { expected, from }
    }

    /// Where each partition's applied messages end (for the checkpoint).
    pub fn position(&self, partition: i32) -> Option<LogPosition> {
        self.partitions.get(&partition).map(|p| p.next)
    }

    /// The next offset expected of each partition.
    pub fn expected(&self) -> BTreeMap<i32, i64> {
        self.partitions.iter().map(|(p, c)| (*p, c.next.next_offset)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(next_offset: i64, epoch: i32) -> LogPosition {
        LogPosition { next_offset, epoch }
    }

    #[test]
    fn a_worker_starts_a_whole_batch_before_its_checkpoint_and_drops_what_it_applied() {
        let mut cursor = LogCursor::default();
        let from = cursor.start(&[0, 1], &BTreeMap::from([(0, at(250, 0))]));
        assert_eq!(from, BTreeMap::from([(0, 250 - REWIND), (1, 0)]));
        assert_eq!(cursor.observe(0, 250 - REWIND, 0), Verdict::Duplicate);
        assert_eq!(cursor.observe(0, 249, 0), Verdict::Duplicate);
        assert_eq!(cursor.observe(0, 250, 0), Verdict::Apply);
        assert_eq!(cursor.observe(1, 0, 0), Verdict::Apply);
        assert_eq!(cursor.position(0), Some(at(251, 0)));
    }

    #[test]
    fn a_jump_past_the_expected_offset_is_a_gap_and_the_restart_reads_further_back_each_time() {
        let mut cursor = LogCursor::default();
        cursor.start(&[0], &BTreeMap::from([(0, at(1_000, 0))]));
        // tansu answered a Fetch from inside a batch with the batch after it.
        assert_eq!(cursor.observe(0, 1_040, 0), Verdict::Gap { expected: 1_000, from: 1_000 - REWIND });
        // The rest of the partition waits for the restart; nothing moves the checkpoint.
        assert_eq!(cursor.observe(0, 1_041, 0), Verdict::Duplicate);
        assert_eq!(cursor.position(0), Some(at(1_000, 0)));
        let from = cursor.start(&[0], &BTreeMap::from([(0, at(1_000, 0))]));
        assert_eq!(from[&0], 1_000 - 2 * REWIND, "the rewind doubles while the gap persists");
        assert_eq!(cursor.observe(0, 1_000, 0), Verdict::Apply);
        let from = cursor.start(&[0], &BTreeMap::from([(0, at(1_001, 0))]));
        assert_eq!(from[&0], 1_001 - REWIND, "and resets once the partition moves on");
    }

    #[test]
    fn a_refilled_log_counted_from_zero_again_is_applied_in_its_new_epoch() {
        let mut cursor = LogCursor::default();
        cursor.start(&[0], &BTreeMap::from([(0, at(5_000, 1))]));
        // Published after the broker restarted, before the relay noticed: same epoch, and
        // the refill sends them again.
        assert_eq!(cursor.observe(0, 0, 1), Verdict::Duplicate);
        assert_eq!(cursor.observe(0, 1, 2), Verdict::Apply);
        assert_eq!(cursor.observe(0, 2, 2), Verdict::Apply);
        assert_eq!(cursor.position(0), Some(at(3, 2)));
        assert_eq!(cursor.observe(0, 4, 2), Verdict::Gap { expected: 3, from: 0 });
    }

    #[test]
    fn a_hole_at_the_start_of_a_partition_read_from_offset_zero_twice_is_accepted() {
        // A refilled log whose first message is followed by a hole: applying offset 0
        // must not make the worker forget that it already read from the start once.
        let mut cursor = LogCursor::default();
        cursor.start(&[2], &BTreeMap::new());
        assert_eq!(cursor.observe(2, 0, 0), Verdict::Apply);
        assert_eq!(cursor.observe(2, 9, 1), Verdict::Gap { expected: 1, from: 0 });
        cursor.start(&[2], &BTreeMap::new());
        assert_eq!(cursor.observe(2, 0, 0), Verdict::Apply);
        assert_eq!(cursor.observe(2, 9, 1), Verdict::Apply, "the second time from the start, it is accepted");
        assert_eq!(cursor.observe(2, 10, 1), Verdict::Apply);
    }

    #[test]
    fn a_gap_that_remains_when_reading_from_the_start_of_the_log_is_accepted() {
        let mut cursor = LogCursor::default();
        cursor.start(&[0], &BTreeMap::from([(0, at(10, 0))]));
        assert_eq!(cursor.observe(0, 50, 0), Verdict::Gap { expected: 10, from: 0 });
        cursor.start(&[0], &BTreeMap::from([(0, at(10, 0))]));
        assert_eq!(cursor.observe(0, 50, 0), Verdict::Apply);
        assert_eq!(cursor.position(0), Some(at(51, 0)));
    }
}
