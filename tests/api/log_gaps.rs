//! The skipped event of issue 13. tansu answers a Fetch that starts inside a record batch
//! with only the batches after it, so a projection resuming from a checkpoint in the
//! middle of a producer batch silently lost the rest of that batch. Here the log holds
//! 30 acknowledged case openings in one producer batch (a republish sends them together),
//! and every projection's checkpoint is set ten messages into it: the last 20 cases must
//! still reach every store.

use std::collections::BTreeMap;
use std::time::Duration;

use murima_tests::{eventually, TestApp};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

fn watermarks(app: &TestApp) -> BTreeMap<i32, i64> {
    let client: BaseConsumer = runtime::kafka::client_config(&app.settings.kafka_brokers).create().unwrap();
    (0..app.settings.kafka_partitions)
        .map(|p| (p, client.fetch_watermarks(&app.settings.kafka_topic, p, Duration::from_secs(5)).unwrap().1))
        .collect()
}

/// (offset, journal position) of every message of a partition, read from its start.
fn read_partition(app: &TestApp, partition: i32) -> Vec<(i64, i64)> {
    use rdkafka::Message;
    let client: BaseConsumer = runtime::kafka::client_config(&app.settings.kafka_brokers)
        .set("group.id", "murima.tests.reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&app.settings.kafka_topic, partition, Offset::Beginning).unwrap();
    client.assign(&assignment).unwrap();
    let mut read = Vec::new();
    while let Some(message) = client.poll(Duration::from_secs(3)) {
        let message = message.unwrap();
        let envelope: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        read.push((message.offset(), envelope["position"].as_i64().unwrap()));
    }
    read
}

async fn relayed(app: &TestApp) {
    eventually("the relay to empty the outbox", || async {
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox").fetch_one(&app.pool).await.unwrap();
        (queued == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_projection_resuming_inside_a_producer_batch_applies_the_rest_of_the_batch() {
    let mut app = TestApp::spawn().await;
    app.open_case("Before the crash").await;
    app.wait_for_all_stores().await;
    app.kill_projector().await;

    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            app.open_case(&format!("Opened while the projector was down {i}")).await["id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }
    relayed(&app).await;
    let before = watermarks(&app);
    let first: i64 = sqlx::query_scalar("SELECT min(position) FROM eventstore.events WHERE stream_id = ANY($1)")
        .bind(&ids)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // Sent again in one go: one producer batch on the tenant's partition.
    projector::operations::republish(&app.pool, first).await.unwrap();
    relayed(&app).await;
    let partition = eventually("the republished events in the log", || async {
        // (tansu reports the base offset of a partition's last batch as its high watermark.)
        watermarks(&app).into_iter().find(|(p, h)| *h != before[p]).map(|(p, _)| p)
    })
    .await;
    // The offsets of the second copies, read from the start of the partition.
    let copies: Vec<(i64, i64)> = read_partition(&app, partition)
        .into_iter()
        .filter(|(_, position)| *position >= first)
        .skip(ids.len())
        .collect();
    assert_eq!(copies.len(), ids.len(), "every republished event is in the log once more");
    let inside = copies[10].0;

    // Every projection stopped ten messages into that batch: in the store's checkpoint
    // and in the broker's committed offsets (which the workers used to start from).
    let epoch: i32 = sqlx::query_scalar("SELECT refills FROM eventstore.relay_state WHERE topic = $1")
        .bind(&app.settings.kafka_topic)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for name in projector::stores::ProjectionName::ALL {
        let group = format!("{}.{name}", app.settings.kafka_group_prefix);
        sqlx::query(
            "INSERT INTO projector.checkpoints (projection, topic, partition, next_offset, epoch, updated_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = $4, epoch = $5",
        )
        .bind(&group)
        .bind(&app.settings.kafka_topic)
        .bind(partition)
        .bind(inside)
        .bind(epoch)
        .execute(&app.pool)
        .await
        .unwrap();
        let client: BaseConsumer =
            runtime::kafka::client_config(&app.settings.kafka_brokers).set("group.id", &group).create().unwrap();
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&app.settings.kafka_topic, partition, Offset::Offset(inside)).unwrap();
        client.commit(&offsets, CommitMode::Sync).unwrap();
    }
    app.start_projector().await;

    let rest: Vec<Uuid> = ids[10..].to_vec();
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    eventually("the rest of the batch in PostgreSQL", || async {
        let found: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.cases WHERE id = ANY($1)"))
            .bind(&rest)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (found == rest.len() as i64).then_some(())
    })
    .await;
    // And in the other stores: verify compares every projection with the journal.
    eventually("every projection to hold the rest of the batch", || async {
        let verify = serde_json::json!({ "tenant_id": app.tenant_id, "grace_seconds": 0 });
        let answer: serde_json::Value =
            app.admin(reqwest::Method::POST, "/v1/admin/verify", Some(verify)).await.json().await.ok()?;
        let reports = answer["reports"].as_array()?;
        // Cases 0-9 are behind the checkpoints on purpose; nothing else may be missing.
        let missing: Vec<Uuid> = reports
            .iter()
            .flat_map(|r| r["discrepancies"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d["stream_id"].as_str()?.parse().ok())
            .collect();
        missing.iter().all(|id| ids[..10].contains(id)).then_some(())
    })
    .await;
}
