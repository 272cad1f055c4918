//! `verify` compares each read model with the journal; `--repair` re-applies exactly the
//! streams it found missing or stale (issue 13).

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_row_deleted_by_hand_and_repair_restores_it() {
    let app = TestApp::spawn().await;
    let gone: Uuid = app.open_case("Deleted by hand").await["id"].as_str().unwrap().parse().unwrap();
    let kept: Uuid = app.open_case("Left alone").await["id"].as_str().unwrap().parse().unwrap();
    app.wait_for_all_stores().await;
    let schema = runtime::tenancy::Tenancy(app.tenant_id).pg_schema();
    let row = |id: Uuid| {
        let (pool, sql) = (app.pool.clone(), format!("SELECT title, version FROM {schema}.cases WHERE id = $1"));
        async move { sqlx::query_as::<_, (String, i64)>(&sql).bind(id).fetch_optional(&pool).await.unwrap() }
    };
    let before = row(gone).await.expect("projected");
    sqlx::query(&format!("DELETE FROM {schema}.cases WHERE id = $1")).bind(gone).execute(&app.pool).await.unwrap();

    let tenant = app.tenant_id.to_string();
    let (ok, out) = app
        .admin_cli(&["verify", "--projection", "postgres", "--tenant", &tenant, "--grace-secs", "0", "--json"])
        .await;
    assert!(ok);
    let reports: Value = serde_json::from_str(&out).unwrap();
    let report = &reports[0];
    assert_eq!(
        (report["missing"].as_i64(), report["stale"].as_i64(), report["extra"].as_i64()),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(report["discrepancies"][0]["stream_id"], json!(gone));
    assert_eq!(report["discrepancies"][0]["what"], "cases");
    assert_eq!(row(gone).await, None, "verify alone changes nothing");

    let (ok, out) = app
        .admin_cli(&[
            "verify",
            "--projection",
            "postgres",
            "--tenant",
            &tenant,
            "--grace-secs",
            "0",
            "--repair",
            "--json",
        ])
        .await;
    assert!(ok);
    let reports: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports[0]["repaired_streams"], 1);
    assert_eq!(reports[0]["unrepaired"], 0);
    assert_eq!(row(gone).await, Some(before), "the row is back as it was");
    assert!(row(kept).await.is_some());

    // Clean now, and the last result is on the projector's /metrics.
    let (ok, out) = app.admin_cli(&["verify", "--tenant", &tenant, "--grace-secs", "0"]).await;
    assert!(ok, "{out}");
    let verify = json!({ "tenant_id": app.tenant_id, "grace_seconds": 0 });
    let reports: Value = app.admin(Method::POST, "/v1/admin/verify", Some(verify)).await.json().await.unwrap();
    for report in reports["reports"].as_array().unwrap() {
        assert_eq!((report["missing"].as_i64(), report["stale"].as_i64()), (Some(0), Some(0)), "{report:#}");
    }
    murima_tests::eventually("verify results on /metrics", || async {
        let metrics = app.http.get(format!("{}/metrics", app.projector_url)).send().await.ok()?.text().await.ok()?;
        metrics.contains("projection_verify_streams{").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_over_http_is_for_platform_administrators_and_refuses_bad_input() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/admin/verify", app.projector_url);
    let post = |token: Option<String>, body: Value| {
        let mut request = app.http.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let tenant = json!({ "tenant_id": app.tenant_id });
    assert_eq!(post(None, tenant.clone()).await.status(), StatusCode::UNAUTHORIZED);
    for role in [Role::Agent, Role::Supervisor, Role::Admin] {
        let answer = post(Some(app.token_for(app.tenant_id, role)), tenant.clone()).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{role:?}");
    }
    let platform = app.platform_token();
    let refused = [
        (json!({ "projection": "nope" }), StatusCode::NOT_FOUND),
        (json!({ "grace_seconds": 1_000_000_000u64 }), StatusCode::BAD_REQUEST),
        (json!({ "grace_seconds": -1 }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "tenant_id": "not-a-uuid" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "repair": true, "unknown": 1 }), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in refused {
        let answer = post(Some(platform.clone()), body.clone()).await;
        assert_eq!(answer.status(), status, "{body}");
        assert_eq!(answer.headers()["content-type"], "application/problem+json", "{body}");
    }
    // Another tenant's id, or none at all, is a clean report: nothing to compare.
    let answer = post(Some(platform), json!({ "tenant_id": Uuid::now_v7(), "grace_seconds": 0 })).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let reports: Value = answer.json().await.unwrap();
    assert_eq!(reports["reports"].as_array().unwrap().len(), 7);
}
