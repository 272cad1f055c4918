//! A projector killed mid-stream and restarted: nothing lost, nothing applied twice, and
//! the four stores end exactly as an uninterrupted replay of the same log leaves them.

use murima_tests::{TestApp, TENANT_TABLES};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_projector_resumes_without_loss_or_duplicates() {
    let mut app = TestApp::spawn().await;
    let agents = [app.create_user("ann", "agent").await, app.create_user("ben", "agent").await];
    let admin = app.token_for(app.tenant_id, runtime::auth::Role::Admin);
    let channel = app
        .command(Method::POST, "/v1/channels", &admin, Some(json!({ "name": "Chat", "type": "chat" })))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let supervisor = app.token_for(app.tenant_id, runtime::auth::Role::Supervisor);
    let team = app
        .command(Method::POST, "/v1/teams", &supervisor, Some(json!({ "name": "Night shift" })))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .clone();
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
            if i % 5 == 2 {
                let r = app
                    .command(
                        Method::POST,
                        &format!("/v1/cases/{id}/team"),
                        &supervisor,
                        Some(json!({ "team_id": team })),
                    )
                    .await;
                assert!(r.status().is_success());
            }
            if i % 4 == 1 {
                let r = app
                    .command(
                        Method::POST,
                        &format!("/v1/cases/{id}/notes"),
                        &app.token,
                        Some(json!({ "content": format!("Called back, round {round}"), "is_internal": i % 2 == 0 })),
                    )
                    .await;
                assert!(r.status().is_success());
                let task = json!({ "title": "Follow up", "priority": "high", "assigned_to": agents[(i + 1) % 2] });
                let r = app.command(Method::POST, &format!("/v1/cases/{id}/tasks"), &app.token, Some(task)).await;
                assert!(r.status().is_success());
                let r = app
                    .command(
                        Method::POST,
                        &format!("/v1/cases/{id}/interactions"),
                        &app.token,
                        Some(json!({ "channel_id": channel, "direction": "inbound", "content": "Customer rang" })),
                    )
                    .await;
                assert!(r.status().is_success());
                let document = json!({ "filename": "scan.pdf", "mime_type": "application/pdf", "size": 1024,
                                       "storage_path": format!("cases/{id}/scan.pdf") });
                let r =
                    app.command(Method::POST, &format!("/v1/cases/{id}/documents"), &app.token, Some(document)).await;
                assert!(r.status().is_success());
            }
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

    // The reference: wipe the tenant's read models and replay the whole log once more with
    // fresh consumer groups and no interruption. Every store must end exactly the same.
    let interrupted = app.store_digest().await;
    for table in TENANT_TABLES.iter().filter(|t| !matches!(**t, "team_members" | "teams" | "workflows")) {
        assert!(interrupted.0[&format!("postgres:{table}")].0 > 0, "the workload left {table} empty");
    }
    app.assert_same_as_fresh_replay(&interrupted).await;
}
