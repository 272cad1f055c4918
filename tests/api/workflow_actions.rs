//! Workflow actions (issue 20): a move along a workflow runs the actions its transition
//! and the stage it enters declare, as events of the same command, and every read model
//! shows them; a workflow that declares an action it cannot run is refused when saved.

use murima_tests::{eventually, TestApp};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

struct Flow {
    case_type: String,
    stages: [Uuid; 3],
    kim: Uuid,
    team: String,
}

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> String {
    let answer = app.command(Method::POST, path, token, Some(body)).await;
    assert_eq!(answer.status(), StatusCode::CREATED, "{path}");
    answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// Moves a case to a stage, as the test's agent.
async fn move_to(app: &TestApp, case: &str, stage: Uuid) -> reqwest::Response {
    app.command(Method::POST, &format!("/v1/cases/{case}/stage"), &app.token, Some(json!({ "stage_id": stage }))).await
}

/// A workflow New → Triage → Done whose move to Triage raises the priority, assigns kim
/// and the team and tags the case, and whose Done restarts the SLA clock.
async fn flow_with_actions(app: &TestApp) -> Flow {
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let kim = app.create_user("kim", "agent").await;
    let team = created(app, &admin, "/v1/teams", json!({ "name": "Tier 2" })).await;
    let stages = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let [new, triage, done] = stages;
    let definition = json!({
        "stages": [{ "id": new, "name": "New" }, { "id": triage, "name": "Triage" }, { "id": done, "name": "Done" }],
        "initial_stage": new,
        "transitions": [{ "from": new, "to": triage }, { "from": triage, "to": done }],
        "sla": [{ "priority": "high", "first_response_minutes": 60, "resolution_minutes": 480 },
                { "priority": "urgent", "first_response_minutes": 15, "resolution_minutes": 120 }],
        "actions": [
            { "when": { "from": new, "to": triage }, "do": { "type": "set_priority", "priority": "urgent" } },
            { "when": { "enters": triage }, "do": { "type": "assign_user", "user_id": kim } },
            { "when": { "enters": triage }, "do": { "type": "assign_team", "team_id": team } },
            { "when": { "enters": triage }, "do": { "type": "add_tags", "tags": ["triaged"] } },
            { "when": { "enters": done }, "do": { "type": "start_sla" } }
        ]
    });
    let workflow = created(app, &admin, "/v1/workflows", json!({ "name": "Acting", "definition": definition })).await;
    let case_type =
        created(app, &admin, "/v1/case-types", json!({ "name": "Incident", "workflow_id": workflow })).await;
    Flow { case_type, stages, kim, team }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transition_with_actions_changes_the_case_in_every_read_model() {
    let app = TestApp::spawn().await;
    let flow = flow_with_actions(&app).await;
    let kim_token = app.login_token("kim").await;
    let open = json!({ "title": "Flooded basement", "priority": "high", "case_type_id": flow.case_type });
    let case = created(&app, &app.token, "/v1/cases", open).await;

    let moved = move_to(&app, &case, flow.stages[1]).await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.unwrap();
    // Opened, workflow started, SLA set (v3); moved, priority, SLA for urgent, assigned,
    // team, tags: one command, v9.
    assert_eq!(moved["version"], 9, "{moved}");
    let position = moved["position"].as_str().unwrap();

    // PostgreSQL: the case screen.
    let seen: Value =
        app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(seen["priority"], "urgent", "{seen}");
    assert_eq!(seen["assigned_to"], json!(flow.kim));
    assert_eq!(seen["assigned_team_id"], json!(flow.team));
    assert!(seen["tags"].as_array().unwrap().contains(&json!("triaged")), "{seen}");
    assert_eq!(seen["current_stage_id"], json!(flow.stages[1]));
    // Elasticsearch: the search document.
    let hits: Value =
        app.query(&format!("/v1/search/cases?q=flooded&position={position}"), &app.token).await.json().await.unwrap();
    let hit = &hits["items"][0];
    assert_eq!((hit["priority"].as_str(), hit["assigned_to"].as_str()), (Some("urgent"), Some(&*flow.kim.to_string())));
    // Redis: the counters and the assignee's notification.
    let counters: Value =
        app.query(&format!("/v1/counters?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(counters["open_cases_by_priority"]["urgent"], 1, "{counters}");
    assert_eq!(counters["open_cases_by_assignee"][flow.kim.to_string()], 1);
    assert_eq!(counters["open_cases_by_team"][&flow.team], 1);
    let told = eventually("kim's assignment notification", || async {
        let list: Value = app.query("/v1/notifications", &kim_token).await.json().await.ok()?;
        (list["items"].as_array()?.len() == 1).then_some(list)
    })
    .await;
    assert_eq!(told["items"][0]["type"], "case_assigned");
    // MongoDB: the audit trail names each change, made by the mover.
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let trail: Value =
        app.query(&format!("/v1/cases/{case}/audit?position={position}"), &supervisor).await.json().await.unwrap();
    let actions: Vec<&str> = trail["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.len(), 9, "{trail}");
    assert!(trail["items"].as_array().unwrap().iter().all(|e| e["user_id"] == json!(app.user_id)));

    // Done restarts the SLA clock from the move.
    let before: Value = seen["sla"].clone();
    let done = move_to(&app, &case, flow.stages[2]).await;
    assert_eq!(done.status(), StatusCode::OK);
    let position = done.json::<Value>().await.unwrap()["position"].as_str().unwrap().to_owned();
    let after: Value =
        app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await.json().await.unwrap();
    assert_ne!(after["sla"]["resolution_due"], before["resolution_due"], "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_declaring_an_action_it_cannot_run_is_refused_naming_it() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let (new, triage) = (Uuid::now_v7(), Uuid::now_v7());
    let with = |action: Value| {
        json!({ "name": format!("W{}", Uuid::now_v7().simple()), "definition": {
            "stages": [{ "id": new, "name": "New" }, { "id": triage, "name": "Triage" }],
            "initial_stage": new, "transitions": [{ "from": new, "to": triage }], "actions": [action] } })
    };
    for (action, field) in [
        (json!({ "when": { "enters": triage }, "do": { "type": "launch_rockets" } }), "definition.actions[0].do.type"),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "assign_user", "user_id": Uuid::now_v7() } }),
            "definition.actions[0].do.user_id",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "assign_team", "team_id": Uuid::now_v7() } }),
            "definition.actions[0].do.team_id",
        ),
        (
            json!({ "when": { "enters": Uuid::now_v7() }, "do": { "type": "add_tags", "tags": ["x"] } }),
            "definition.actions[0].when.enters",
        ),
        (json!({ "when": { "enters": triage }, "do": { "type": "start_sla" } }), "definition.actions[0].do.type"),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "add_tags", "tags": ["bad\u{0}tag"] } }),
            "definition.actions[0].do.tags[0]",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "notify", "message": "x".repeat(501) } }),
            "definition.actions[0].do.message",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "notify", "message": "bell\u{7}" } }),
            "definition.actions[0].do.message",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "notify", "user_id": Uuid::now_v7(), "message": "hi" } }),
            "definition.actions[0].do.user_id",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "create_task", "title": " " } }),
            "definition.actions[0].do.title",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "create_task", "title": "😀".repeat(256) } }),
            "definition.actions[0].do.title",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "create_task", "title": "Call", "description": "x\u{0}" } }),
            "definition.actions[0].do.description",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "create_task", "title": "Call", "due_in_minutes": 0 } }),
            "definition.actions[0].do.due_in_minutes",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "create_task", "title": "Call", "due_in_minutes": 4_294_967_295u32 } }),
            "definition.actions[0].do.due_in_minutes",
        ),
        (
            json!({ "when": { "enters": triage }, "do": { "type": "create_task", "title": "Call", "user_id": Uuid::now_v7() } }),
            "definition.actions[0].do.user_id",
        ),
    ] {
        let answer = app.command(Method::POST, "/v1/workflows", &admin, Some(with(action.clone()))).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{action}");
        let problem: Value = answer.json().await.unwrap();
        let fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{action}: {problem}");
    }
    // Nor may an agent save a workflow at all.
    let agent = app.command(Method::POST, "/v1/workflows", &app.token, Some(with(json!({})))).await;
    assert_eq!(agent.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_whose_action_names_a_locked_user_is_refused_saying_why() {
    let app = TestApp::spawn().await;
    let flow = flow_with_actions(&app).await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let lock = json!({ "status": "locked" });
    let answer = app.command(Method::POST, &format!("/v1/users/{}/status", flow.kim), &admin, Some(lock)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let open = json!({ "title": "Leak", "priority": "high", "case_type_id": flow.case_type });
    let case = created(&app, &app.token, "/v1/cases", open).await;
    let refused = move_to(&app, &case, flow.stages[1]).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("assign_user"), "{problem}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_id = $1")
        .bind(Uuid::parse_str(&case).unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 3, "nothing of the move was recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_can_stop_the_sla_and_notify_a_user_and_the_assignee() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let kim = app.create_user("kim", "agent").await;
    let lee = app.create_user("lee", "agent").await;
    let (new, done) = (Uuid::now_v7(), Uuid::now_v7());
    let definition = json!({
        "stages": [{ "id": new, "name": "New" }, { "id": done, "name": "Parked" }],
        "initial_stage": new, "transitions": [{ "from": new, "to": done }],
        "sla": [{ "priority": "high", "first_response_minutes": 60, "resolution_minutes": 480 }],
        "actions": [
            { "when": { "enters": done }, "do": { "type": "stop_sla" } },
            { "when": { "enters": done }, "do": { "type": "notify", "user_id": kim, "message": "Parked: call the customer" } },
            { "when": { "enters": done }, "do": { "type": "notify", "message": "Your case is parked" } }
        ]
    });
    let workflow = created(&app, &admin, "/v1/workflows", json!({ "name": "Parking", "definition": definition })).await;
    let case_type =
        created(&app, &admin, "/v1/case-types", json!({ "name": "Parkable", "workflow_id": workflow })).await;
    let open = json!({ "title": "Parked car", "priority": "high", "case_type_id": case_type, "assigned_to": lee });
    let case = created(&app, &app.token, "/v1/cases", open).await;

    let moved = move_to(&app, &case, done).await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["version"], 7, "opened, started, SLA set; moved, SLA stopped, two notices: {moved}");
    let position = moved["position"].as_str().unwrap();
    let seen: Value =
        app.query(&format!("/v1/cases/{case}?position={position}"), &app.token).await.json().await.unwrap();
    assert_eq!(seen["sla"]["first_response_due"], Value::Null, "{seen}");
    assert_eq!(seen["sla"]["running"], true, "an open case, but no clock: {seen}");
    for (user, message) in [("kim", "Parked: call the customer"), ("lee", "Your case is parked")] {
        let token = app.login_token(user).await;
        let told = eventually("the workflow's notice", || async {
            let list: Value = app.query("/v1/notifications", &token).await.json().await.ok()?;
            list["items"].as_array()?.iter().find(|n| n["type"] == "workflow_notice").cloned()
        })
        .await;
        assert_eq!(told["subject"]["message"], message, "{user}: {told}");
    }
    // No SLA timer runs for the case any more: the scheduler lets it go.
    let case_id = Uuid::parse_str(&case).unwrap();
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY stream_version")
            .bind(case_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(events[4..], ["CaseSlaStopped", "CaseNotified", "CaseNotified"], "{events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_creates_the_tasks_its_actions_declare_once_each() {
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let kim = app.create_user("kim", "agent").await;
    let lee = app.create_user("lee", "agent").await;
    let (new, review) = (Uuid::now_v7(), Uuid::now_v7());
    let definition = json!({
        "stages": [{ "id": new, "name": "New" }, { "id": review, "name": "Review" }],
        "initial_stage": new, "transitions": [{ "from": new, "to": review }],
        "actions": [
            { "when": { "enters": review }, "do": { "type": "create_task", "title": "  Check the meter ", "user_id": kim,
              "priority": "urgent", "description": "Photograph it", "due_in_minutes": 60 } },
            { "when": { "enters": review }, "do": { "type": "create_task", "title": "Call the customer back" } }
        ]
    });
    let workflow = created(&app, &admin, "/v1/workflows", json!({ "name": "Tasking", "definition": definition })).await;
    let case_type = created(&app, &admin, "/v1/case-types", json!({ "name": "Meter", "workflow_id": workflow })).await;
    let open = json!({ "title": "Meter reading", "priority": "low", "case_type_id": case_type, "assigned_to": lee });
    let case = created(&app, &app.token, "/v1/cases", open).await;
    let case_id = Uuid::parse_str(&case).unwrap();

    let moved = move_to(&app, &case, review).await;
    assert_eq!(moved.status(), StatusCode::OK);
    let requested: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT (envelope #>> '{payload,task_id}')::uuid, envelope #>> '{payload,title}' FROM eventstore.events
         WHERE stream_id = $1 AND event_type = 'CaseTaskRequested' ORDER BY stream_version",
    )
    .bind(case_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(requested.len(), 2, "the move records both requests: {requested:?}");

    // The case screen lists both tasks: kim's as declared, the other the assignee's, of
    // the case's priority; both made on behalf of the mover.
    let tasks = eventually("the requested tasks on the case screen", || async {
        let seen: Value = app.query(&format!("/v1/cases/{case}"), &app.token).await.json().await.ok()?;
        let tasks = seen["tasks"]["items"].as_array()?.clone();
        (tasks.len() == 2).then_some(tasks)
    })
    .await;
    let task = |title: &str| tasks.iter().find(|t| t["title"] == title).cloned().unwrap_or_else(|| panic!("{tasks:?}"));
    let meter = task("Check the meter");
    assert_eq!((&meter["assigned_to"], &meter["priority"]), (&json!(kim), &json!("urgent")), "{meter}");
    assert_eq!(meter["description"], "Photograph it");
    assert!(meter["due_date"].is_string(), "{meter}");
    let call = task("Call the customer back");
    assert_eq!((&call["assigned_to"], &call["priority"]), (&json!(lee), &json!("low")), "{call}");
    assert_eq!(call["created_by"], json!(app.user_id), "{call}");
    assert_eq!(meter["id"], json!(requested[0].0), "the task has the id its request named");
    let kim_token = app.login_token("kim").await;
    eventually("kim told of the task", || async {
        let list: Value = app.query("/v1/notifications", &kim_token).await.json().await.ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|n| n["type"] == "task_assigned" && n["subject"]["title"] == "Check the meter")
            .cloned()
    })
    .await;

    // A scheduler that died after creating a task but before letting go of its request
    // creates nothing more.
    sqlx::query(
        "INSERT INTO eventstore.task_requests (tenant_id, task_id, case_id, requested_by, request)
         SELECT tenant_id, (envelope #>> '{payload,task_id}')::uuid, stream_id, $2, envelope -> 'payload'
         FROM eventstore.events WHERE stream_id = $1 AND event_type = 'CaseTaskRequested'",
    )
    .bind(case_id)
    .bind(app.user_id)
    .execute(&app.pool)
    .await
    .unwrap();
    eventually("the requests handled again", || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM eventstore.task_requests").fetch_one(&app.pool).await.ok()?;
        (left == 0).then_some(())
    })
    .await;
    let ids: Vec<Uuid> = requested.iter().map(|(id, _)| *id).collect();
    let created: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*) FROM eventstore.events WHERE stream_id = ANY($1) GROUP BY stream_id",
    )
    .bind(&ids)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(created.len(), 2, "{created:?}");
    assert!(created.iter().all(|(_, n)| *n == 1), "each task was created once: {created:?}");

    // The case's audit trail names the requests.
    let supervisor = app.token_for(app.tenant_id, Role::Supervisor);
    let trail = eventually("the task requests in the audit trail", || async {
        let trail: Value = app.query(&format!("/v1/cases/{case}/audit"), &supervisor).await.json().await.ok()?;
        let requests: Vec<Value> =
            trail["items"].as_array()?.iter().filter(|e| e["action"] == "task_request").cloned().collect();
        (requests.len() == 2).then_some(requests)
    })
    .await;
    assert!(trail.iter().all(|e| e["user_id"] == json!(app.user_id)), "{trail:?}");
}
