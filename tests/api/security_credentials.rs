//! Credentials off the log (issue 14): a password hash lives only in the write side's
//! credentials table. The events say that a password was set or changed; no journal
//! envelope, Kafka message, read model, audit entry, search document or Redis key holds it.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn no_store_but_the_credentials_table_holds_a_password_hash() {
    let app = TestApp::spawn().await;
    let operator = app.token_for(app.tenant_id, Role::Admin);
    let user = app.create_user("hashless", "agent").await;
    let reset = json!({ "new_password": "another integration password" });
    let answer = app.command(Method::POST, &format!("/v1/users/{user}/password/reset"), &operator, Some(reset)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM eventstore.credentials WHERE tenant_id = $1 AND user_id = $2")
            .bind(app.tenant_id)
            .bind(user)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2"), "{hash}");
    // The digest part of the PHC string: what must appear nowhere else.
    let digest = hash.rsplit('$').next().unwrap().to_owned();
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    murima_tests::eventually("the password reset in the users read model", || async {
        let version: i64 = sqlx::query_scalar(&format!("SELECT version FROM {schema}.users WHERE id = $1"))
            .bind(user)
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (version == 2).then_some(())
    })
    .await;
    murima_tests::eventually("the password change in the audit log", || async {
        let audit = app.store_contents_of(app.tenant_id, true).await;
        let entries = audit.iter().filter(|(store, _)| store.contains("audit_logs")).flat_map(|(_, rows)| rows);
        entries.into_iter().any(|row| row.contains("password_reset")).then_some(())
    })
    .await;

    let journal: Vec<String> =
        sqlx::query_scalar("SELECT envelope::text FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2")
            .bind(app.tenant_id)
            .bind(user)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(journal.len(), 2, "created, then a password reset");
    for envelope in &journal {
        assert!(!envelope.contains(&digest) && !envelope.contains("argon2"), "journal: {envelope}");
    }
    let log = app.event_log();
    assert!(log.iter().any(|m| m.contains(&user.to_string())), "the user's events are in the log");
    for message in log {
        assert!(!message.contains(&digest) && !message.contains("argon2"), "kafka: {message}");
    }
    for (store, rows) in app.store_contents_of(app.tenant_id, true).await {
        for row in rows {
            assert!(!row.contains(&digest) && !row.contains("argon2"), "{store}: {row}");
        }
    }
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'users'",
    )
    .bind(runtime::tenancy::Tenancy(app.tenant_id).pg_schema())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!columns.iter().any(|c| c == "password_hash"), "{columns:?}");
}
