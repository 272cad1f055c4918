//! A broker that restarts empty (tansu keeps its log in memory) is refilled from the journal.

use murima_tests::{test_settings, PrivateBroker, TestApp};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_restarts_empty_is_refilled_and_every_store_catches_up() {
    let broker = PrivateBroker::start(None).await;
    let mut settings = test_settings();
    settings.kafka_brokers = format!("127.0.0.1:{}", broker.port);
    // The services that talk to the broker run as processes of their own: librdkafka can
    // crash on a topic deleted under it, and in-process that took the whole test binary
    // (and every test still running in it) down with it once.
    let app = TestApp::spawn_processes_with(settings).await;
    for i in 0..3 {
        let id = app.open_case(&format!("Before {i}")).await["id"].as_str().unwrap().to_owned();
        app.command(
            Method::POST,
            &format!("/v1/cases/{id}/assignment"),
            &app.token,
            Some(json!({ "assigned_to": app.user_id })),
        )
        .await;
    }
    app.wait_for_all_stores().await;

    // The broker dies and comes back empty: no topic, no messages, no group offsets.
    eprintln!("killing the broker");
    let port = broker.kill().await;
    // Commands keep being accepted while it is down: the journal, not the broker, is the record.
    app.open_case("During the outage").await;
    eprintln!("restarting the broker");
    let _broker = PrivateBroker::start(Some(port)).await;
    eprintln!("restarted");
    app.open_case("After the restart").await;

    let counts = app.wait_for_all_stores().await;
    assert_eq!(counts.postgres_versions, 3 * 2 + 2);
    app.assert_counters_match_postgres().await;
    let refills: i32 =
        sqlx::query_scalar("SELECT refills FROM eventstore.relay_state").fetch_one(&app.pool).await.unwrap();
    assert!(refills >= 1, "the relay should have refilled the topic");

    // Every worker noticed on its own and replaced its consumer; status says so.
    let status: serde_json::Value = app.admin(Method::GET, "/v1/admin/projections", None).await.json().await.unwrap();
    for projection in status["projections"].as_array().unwrap() {
        assert!(projection["restarts"].as_i64().unwrap() >= 1, "{projection:#}");
        assert!(projection["last_restart_reason"].is_string(), "{projection:#}");
    }
}
