//! A projector killed mid-stream and restarted: nothing lost, nothing applied twice.

use murima_tests::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_projector_resumes_without_loss_or_duplicates() {
    let mut app = TestApp::spawn().await;
    let agents = [app.create_user("ann", "agent").await, app.create_user("ben", "agent").await];
    let mut ids = Vec::new();
    for round in 0..3 {
        for i in 0..8 {
            let id = app.open_case(&format!("Case {round}-{i}")).await["id"].as_str().unwrap().to_owned();
            let agent = agents[i % 2];
            app.command(
                Method::POST,
                &format!("/v1/cases/{id}/assignment"),
                &app.token,
                Some(json!({ "assigned_to": agent })),
            )
            .await;
            if i % 3 == 0 {
                app.command(
                    Method::POST,
                    &format!("/v1/cases/{id}/status"),
                    &app.token,
                    Some(json!({ "status": "resolved" })),
                )
                .await;
            }
            ids.push(id);
        }
        // Kill it while it is busy with this round; the next round arrives while it is down.
        app.kill_projector().await;
        for id in ids.iter().step_by(4) {
            app.command(Method::PATCH, &format!("/v1/cases/{id}"), &app.token, Some(json!({ "priority": "urgent" })))
                .await;
        }
        app.start_projector().await;
    }
    // Exactly one audit entry per journal event of the tenant: nothing lost, nothing twice.
    let counts = app.wait_for_all_stores().await;
    let case_events = app.journal_count("case").await;
    assert_eq!(counts.postgres_versions, case_events);
    let all_events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE tenant_id = $1")
        .bind(app.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(counts.audit_entries as i64, all_events);
    app.assert_counters_match_postgres().await;
}
