//! `projector.checkpoints`: where each projection is in each partition of the log.
//!
//! Every worker resumes from here, not from the broker's committed offsets (tansu's
//! consumer groups can stall for good after a member dies, so workers assign their
//! partitions themselves). The PostgreSQL projection saves its checkpoint in the same
//! transaction as its rows; the other stores cannot share a transaction with PostgreSQL,
//! so their worker saves it right after the batch is applied, and a crash in between
//! re-applies that batch, which their version guards ignore.

use std::collections::BTreeMap;

use sqlx::{PgExecutor, Postgres, Transaction};

use crate::projection::{Checkpoint, LogPosition};

/// The checkpoints of one consumer group (a projection instance) on a topic.
pub async fn load<'e>(db: impl PgExecutor<'e>, group: &str, topic: &str) -> sqlx::Result<BTreeMap<i32, LogPosition>> {
    let rows: Vec<(i32, i64, i32)> = sqlx::query_as(
        "SELECT partition, next_offset, epoch FROM projector.checkpoints WHERE projection = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(p, next_offset, epoch)| (p, LogPosition { next_offset, epoch })).collect())
}

/// Records the end of a batch, in the caller's transaction.
pub async fn save(tx: &mut Transaction<'_, Postgres>, checkpoint: &Checkpoint) -> sqlx::Result<()> {
    if checkpoint.positions.is_empty() {
        return Ok(()); // a replay or repair: not read from the log
    }
    let partitions: Vec<i32> = checkpoint.positions.keys().copied().collect();
    let offsets: Vec<i64> = checkpoint.positions.values().map(|p| p.next_offset).collect();
    let epochs: Vec<i32> = checkpoint.positions.values().map(|p| p.epoch).collect();
    sqlx::query(
        "INSERT INTO projector.checkpoints (projection, topic, partition, next_offset, epoch, updated_at)
         SELECT $1, $2, p, o, e, now() FROM UNNEST($3::int[], $4::bigint[], $5::int[]) AS t(p, o, e)
         ON CONFLICT (projection, topic, partition)
         DO UPDATE SET next_offset = EXCLUDED.next_offset, epoch = EXCLUDED.epoch, updated_at = now()",
    )
    .bind(&checkpoint.group)
    .bind(&checkpoint.topic)
    .bind(partitions)
    .bind(offsets)
    .bind(epochs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
