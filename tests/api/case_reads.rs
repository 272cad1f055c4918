//! Reading cases: filters and sorts with stable cursors, the case screen (related items,
//! internal-note visibility, SLA), cache invalidation with read-your-writes, 304s, the
//! caller's queue and the dashboard series.

use std::collections::HashSet;

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

async fn open(app: &TestApp, body: Value) -> (String, String) {
    let r = app.command(Method::POST, "/v1/cases", &app.token, Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["position"].as_str().unwrap().to_owned())
}

/// Every id of a filtered, sorted list, page by page (checking pages never overlap).
async fn ids(app: &TestApp, query: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut next = Some(format!("/v1/cases?{query}&limit={limit}"));
    while let Some(url) = next {
        let r = app.query(&url, &app.token).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let link = r.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
        let body: Value = r.json().await.unwrap();
        all.extend(body["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        next = link.map(|l| l.trim_start_matches('<').split('>').next().unwrap().to_owned());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "pages overlap for {query}");
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_filter_sort_and_page_stably() {
    let app = TestApp::spawn().await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let team =
        app.post_ok("/v1/teams", &supervisor, json!({ "name": "Billing" })).await["id"].as_str().unwrap().to_owned();
    let priorities = ["low", "medium", "high", "urgent"];
    let mut opened = Vec::new();
    for i in 0..12 {
        let due = (i % 3 != 0).then(|| format!("2030-01-{:02}T00:00:00Z", 28 - i));
        let body = json!({
            "title": if i % 4 == 0 { format!("Invoice dispute {i}") } else { format!("Router fault {i}") },
            "case_type_id": app.case_type_id, "priority": priorities[i % 4],
            "tags": if i % 2 == 0 { json!(["vip"]) } else { json!([]) },
            "custom_fields": {}, "due_date": due,
        });
        opened.push(open(&app, body).await);
    }
    for (id, _) in opened.iter().step_by(3) {
        let r = app
            .command(Method::POST, &format!("/v1/cases/{id}/team"), &supervisor, Some(json!({ "team_id": team })))
            .await;
        assert!(r.status().is_success());
    }
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{}/status", opened[1].0),
            &app.token,
            Some(json!({ "status": "resolved" })),
        )
        .await;
    let last: Value = r.json().await.unwrap();
    let position = last["position"].as_str().unwrap();
    // Read-your-writes for the list: wait for the last write, then every filter is exact.
    let r = app.query(&format!("/v1/cases?position={position}&limit=1"), &app.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    eventually("every team assignment in the list", || async {
        (ids(&app, &format!("team_id={team}"), 2).await.len() == 4).then_some(())
    })
    .await;

    let all = ids(&app, "sort=created", 5).await;
    let expected: Vec<String> = opened.iter().rev().map(|(id, _)| id.clone()).collect();
    assert_eq!(all, expected, "newest first, every case once");
    assert_eq!(ids(&app, "priority=urgent", 2).await.len(), 3);
    assert_eq!(ids(&app, "tag=vip", 2).await.len(), 6);
    assert_eq!(ids(&app, "status=resolved", 2).await, vec![opened[1].0.clone()]);
    assert_eq!(ids(&app, "q=invoice", 2).await.len(), 3, "full text over the title");
    assert_eq!(ids(&app, "q=invoice&tag=vip&priority=low", 2).await.len(), 3);
    assert_eq!(ids(&app, &format!("case_type_id={}&status=open", app.case_type_id), 4).await.len(), 11);
    assert_eq!(ids(&app, "due_from=2030-01-20T00:00:00Z&due_to=2030-01-27T00:00:00Z", 2).await.len(), 5);
    assert_eq!(ids(&app, "created_from=2000-01-01T00:00:00Z", 5).await.len(), 12);
    assert!(ids(&app, "created_to=2000-01-01T00:00:00Z", 5).await.is_empty());
    assert!(ids(&app, "custom_fields=%7B%22region%22%3A%22north%22%7D", 5).await.is_empty());

    // Sorts: every order pages stably over all twelve and agrees with the data.
    let by_due = ids(&app, "sort=due", 5).await;
    assert_eq!(by_due.len(), 12);
    let first_due: Value = app.query(&format!("/v1/cases/{}", by_due[0]), &app.token).await.json().await.unwrap();
    assert_eq!(first_due["due_date"], "2030-01-17T00:00:00Z", "soonest due first");
    let by_priority = ids(&app, "sort=priority", 5).await;
    let top: Value = app.query(&format!("/v1/cases/{}", by_priority[0]), &app.token).await.json().await.unwrap();
    assert_eq!(top["priority"], "urgent");
    assert_eq!(ids(&app, "sort=updated", 7).await.len(), 12);

    // Bad input names what to fix.
    for bad in ["sort=alphabetical", "custom_fields=%5B1%5D", "priority=extreme", "created_from=yesterday"] {
        let r = app.query(&format!("/v1/cases?{bad}"), &app.token).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let first: Value = app.query("/v1/cases?sort=due&limit=2", &app.token).await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let r = app.query(&format!("/v1/cases?sort=created&cursor={cursor}"), &app.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a cursor of another sort");
    // A tampered cursor (a sort key that is no timestamp) is a 400 too.
    use base64::Engine;
    let forged =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("due|not a time|{}", uuid::Uuid::now_v7()));
    let r = app.query(&format!("/v1/cases?sort=due&cursor={forged}"), &app.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a forged cursor");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_case_screen_shows_related_items_and_never_a_stale_case() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let colleague = app.create_user("colleague", "agent").await;
    let colleague_token = app.keys.issue(colleague, app.tenant_id, Role::Agent, chrono::Duration::hours(1));
    let (case, _) =
        open(&app, json!({ "title": "Screen", "case_type_id": app.case_type_id, "due_date": "2030-01-01T00:00:00Z" }))
            .await;
    let channel = app.post_ok("/v1/channels", &admin, json!({ "name": "Line", "type": "voice" })).await;
    let say = |path: String, body: Value| {
        let app = &app;
        async move {
            let r = app.command(Method::POST, &path, &app.token, Some(body)).await;
            assert!(r.status().is_success(), "{path}");
        }
    };
    say(
        format!("/v1/cases/{case}/interactions"),
        json!({ "channel_id": channel["id"], "direction": "inbound", "content": "Hi" }),
    )
    .await;
    say(format!("/v1/cases/{case}/tasks"), json!({ "title": "Call back" })).await;
    say(
        format!("/v1/cases/{case}/documents"),
        json!({ "filename": "a.pdf", "mime_type": "application/pdf", "size": 1, "storage_path": "x/a.pdf" }),
    )
    .await;
    say(format!("/v1/cases/{case}/notes"), json!({ "content": "internal by me", "is_internal": true })).await;
    say(format!("/v1/cases/{case}/notes"), json!({ "content": "public by me", "is_internal": false })).await;
    let r = app
        .command(
            Method::POST,
            &format!("/v1/cases/{case}/notes"),
            &colleague_token,
            Some(json!({ "content": "internal by a colleague", "is_internal": true })),
        )
        .await;
    assert!(r.status().is_success());

    let screen: Value = eventually("every related item on the case screen", || async {
        let s: Value = app.query(&format!("/v1/cases/{case}"), &app.token).await.json().await.ok()?;
        let full = s["interactions"]["items"].as_array()?.len() == 1
            && s["tasks"]["items"].as_array()?.len() == 1
            && s["documents"]["items"].as_array()?.len() == 1
            && s["notes"]["items"].as_array()?.len() == 2;
        full.then_some(s)
    })
    .await;
    // An agent sees public notes and their own internal ones, not a colleague's.
    let contents: HashSet<&str> =
        screen["notes"]["items"].as_array().unwrap().iter().map(|n| n["content"].as_str().unwrap()).collect();
    assert_eq!(contents, HashSet::from(["internal by me", "public by me"]));
    let lead = app.create_user("lead", "supervisor").await;
    let lead_token = app.login_token("lead").await;
    let as_supervisor: Value = app.query(&format!("/v1/cases/{case}"), &lead_token).await.json().await.unwrap();
    assert_eq!(as_supervisor["notes"]["items"].as_array().unwrap().len(), 3, "supervisors see internal notes");
    // Rights are the user's current ones: a login token gets what its user has now, and
    // a locked account reads nothing from its very next request.
    let as_colleague: Value =
        app.query(&format!("/v1/cases/{case}"), &app.login_token("colleague").await).await.json().await.unwrap();
    assert_eq!(as_colleague["notes"]["items"].as_array().unwrap().len(), 2, "public and their own");
    let r = app
        .command(Method::POST, &format!("/v1/users/{lead}/status"), &admin, Some(json!({ "status": "locked" })))
        .await;
    assert!(r.status().is_success());
    let status = app.query(&format!("/v1/cases/{case}"), &lead_token).await.status();
    assert!([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status), "the locked supervisor: {status}");
    assert_eq!(screen["sla"]["running"], true);
    assert_eq!(screen["sla"]["breached"], false);
    assert!(screen["sla"]["seconds_left"].as_i64().unwrap() > 0);

    // A deleted document leaves the screen.
    let document = screen["documents"]["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(app
        .command(Method::DELETE, &format!("/v1/documents/{document}"), &app.token, None)
        .await
        .status()
        .is_success());
    // Revalidation compares two reads of one screen: both after the deletion is projected.
    eventually("the deleted document to leave the screen", || async {
        let screen: Value = app.query(&format!("/v1/cases/{case}"), &app.token).await.json().await.ok()?;
        let shown = screen["documents"]["items"].as_array()?.iter().any(|d| d["id"] == document.as_str());
        (!shown).then_some(())
    })
    .await;

    // Revalidation: the same screen is a 304; a change makes it 200 again.
    let first = app.query(&format!("/v1/cases/{case}"), &app.token).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let revalidate = || async {
        let request = app.http.get(format!("{}/v1/cases/{case}", app.query_url)).bearer_auth(&app.token);
        request.header("if-none-match", &etag).send().await.unwrap().status()
    };
    assert_eq!(revalidate().await, StatusCode::NOT_MODIFIED);

    // Cache: every update is read back at once with its token, never the cached old title.
    for round in 0..5 {
        let title = format!("Screen, take {round}");
        let r =
            app.command(Method::PATCH, &format!("/v1/cases/{case}"), &app.token, Some(json!({ "title": title }))).await;
        let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
        let read: Value =
            app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await.json().await.unwrap();
        assert_eq!(read["title"], title);
        assert!(read["documents"]["items"].as_array().unwrap().is_empty());
    }
    assert_eq!(revalidate().await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn my_queue_orders_my_and_my_teams_cases_by_sla_urgency() {
    let app = TestApp::spawn().await;
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let team =
        app.post_ok("/v1/teams", &supervisor, json!({ "name": "Queue" })).await["id"].as_str().unwrap().to_owned();
    let r = app
        .command(
            Method::POST,
            &format!("/v1/teams/{team}/members"),
            &supervisor,
            Some(json!({ "user_id": app.user_id })),
        )
        .await;
    assert!(r.status().is_success());
    let later = open(&app, json!({ "title": "Later", "case_type_id": app.case_type_id, "assigned_to": app.user_id, "due_date": "2031-01-01T00:00:00Z" })).await.0;
    let sooner =
        open(&app, json!({ "title": "Sooner", "case_type_id": app.case_type_id, "due_date": "2030-06-01T00:00:00Z" }))
            .await
            .0;
    let undated =
        open(&app, json!({ "title": "Undated", "case_type_id": app.case_type_id, "assigned_to": app.user_id })).await.0;
    let elsewhere = open(&app, json!({ "title": "Not mine", "case_type_id": app.case_type_id })).await.0;
    let r = app
        .command(Method::POST, &format!("/v1/cases/{sooner}/team"), &supervisor, Some(json!({ "team_id": team })))
        .await;
    let position = r.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let _ = app.query(&format!("/v1/cases/{sooner}?position={position}"), &app.token).await;
    let queue: Vec<String> = eventually("the queue", || async {
        let mut ids = Vec::new();
        let mut url = "/v1/my/queue?limit=1".to_owned();
        loop {
            let page: Value = app.query(&url, &app.token).await.json().await.ok()?;
            ids.extend(page["items"].as_array()?.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/v1/my/queue?limit=1&cursor={c}"),
                None => break,
            }
        }
        (ids.len() == 3).then_some(ids)
    })
    .await;
    assert_eq!(queue, vec![sooner, later, undated]);
    assert!(!queue.contains(&elsewhere));
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_count_cases_per_day_and_per_type() {
    let app = TestApp::spawn().await;
    let (case, _) = open(&app, json!({ "title": "Counted", "case_type_id": app.case_type_id })).await;
    open(&app, json!({ "title": "Also counted", "case_type_id": app.case_type_id })).await;
    let r = app
        .command(Method::POST, &format!("/v1/cases/{case}/status"), &app.token, Some(json!({ "status": "resolved" })))
        .await;
    assert!(r.status().is_success());
    let today = chrono::Utc::now().date_naive();
    let series: Value = eventually("today's figures", || async {
        let s: Value = app.query("/v1/dashboard/daily", &app.token).await.json().await.ok()?;
        let last = s["items"].as_array()?.last()?.clone();
        (last["opened"] == json!(2) && last["resolved"] == json!(1)).then_some(s)
    })
    .await;
    assert_eq!(series["items"].as_array().unwrap().len(), 30);
    assert_eq!(series["to"], json!(today));
    let stats: Value = eventually("the statistics view", || async {
        let s: Value = app.query("/v1/dashboard/statistics", &app.token).await.json().await.ok()?;
        (s["items"].as_array()?.len() == 2).then_some(s)
    })
    .await;
    let statuses: HashSet<&str> =
        stats["items"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, HashSet::from(["open", "resolved"]));
    let r = app.query("/v1/dashboard/daily?from=2020-01-01&to=2026-01-01", &app.token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
