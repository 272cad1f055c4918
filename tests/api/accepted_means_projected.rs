//! The property of the write side (issue 16): whatever the command API accepts, every
//! projection applies. Commands are generated with `proptest` at and beyond every limit of
//! the input contract (maximum lengths in one- to four-byte characters, combining marks,
//! emoji sequences, right-to-left and zero-width characters, control characters, blank
//! and empty optionals) and sent through the HTTP API. Every answer must be a 2xx or a
//! 4xx naming the field; no request may answer 5xx; and afterwards every accepted command
//! must be in all seven projections with nothing parked.
//!
//! Bounded for CI: `MURIMA_PROPERTY_CASES` commands of each kind (default 60).

use murima_tests::{eventually, TestApp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::{Method, StatusCode};
use runtime::auth::Role;
use serde_json::{json, Value};

/// Text that stresses a store: every UTF-8 width, a combining mark, a zero-width joiner
/// sequence, right-to-left text, zero-width and format characters.
#[rustfmt::skip]
const PRINTABLE: &[&str] = &[
    "a", "Z", "7", " ", "-", "é", "ß", "€", "中", "😀", "e\u{301}", "👩\u{200d}👩\u{200d}👧", "שלום", "مرحبا",
    "\u{200b}", "\u{200f}", "\u{202e}", "\u{feff}", "\u{fffd}",
];
/// Control characters: the contract refuses them (prose keeps `\n` and `\t`).
const CONTROL: &[&str] = &["\u{1f}", "\u{1e}", "\u{7}", "\n", "\t", "\u{85}"];

/// A piece of text: mostly printable, sometimes a control character.
fn piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![9 => prop::sample::select(PRINTABLE), 1 => prop::sample::select(CONTROL)]
}

/// A text of `target` characters, repeating a few chosen pieces.
fn text_near(limit: usize) -> impl Strategy<Value = String> {
    let lengths = prop_oneof![
        Just(0usize),
        Just(1),
        Just(limit.saturating_sub(1)),
        Just(limit),
        Just(limit + 1),
        1..=limit.min(300),
    ];
    (lengths, prop::collection::vec(piece(), 1..4)).prop_map(|(target, picks)| {
        let mut out = String::new();
        let mut i = 0;
        while out.chars().count() < target {
            out.push_str(picks[i % picks.len()]);
            i += 1;
        }
        out.chars().take(target).collect()
    })
}

fn optional(limit: usize) -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), text_near(limit).prop_map(Some)]
}

fn case_body(case_type: String) -> impl Strategy<Value = Value> {
    use events::contract;
    (
        text_near(contract::TITLE.max_chars),
        optional(contract::DESCRIPTION.max_chars),
        prop::collection::vec(text_near(contract::TAG.max_chars), 0..4),
        optional(contract::CUSTOM_TEXT.max_chars),
        prop::sample::select(vec!["low", "medium", "high", "urgent"]),
    )
        .prop_map(move |(title, description, tags, customer, priority)| {
            let mut body = json!({ "title": title, "priority": priority, "case_type_id": case_type, "tags": tags });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(c) = customer {
                body["custom_fields"] = json!({ "customer_id": c });
            }
            body
        })
}

fn team_body() -> impl Strategy<Value = Value> {
    use events::contract;
    (text_near(contract::NAME.max_chars), optional(contract::TEAM_DESCRIPTION.max_chars)).prop_map(|(name, d)| {
        let mut body = json!({ "name": name });
        if let Some(d) = d {
            body["description"] = json!(d);
        }
        body
    })
}

fn note_body() -> impl Strategy<Value = Value> {
    use events::contract;
    (text_near(contract::NOTE.max_chars), prop::collection::vec(text_near(contract::TAG.max_chars), 0..3))
        .prop_map(|(content, tags)| json!({ "content": content, "tags": tags, "is_internal": false }))
}

/// A body, short enough for a failure message.
fn shown(body: &Value) -> String {
    let text = body.to_string();
    let head: String = text.chars().take(300).collect();
    format!("{head}… ({} bytes)", text.len())
}

/// One answer judged: a 2xx (its body), or a refusal (None): a 422 naming a field, or a
/// 413 for a body over the request size limit (several of the longest texts in four-byte
/// characters are). Never a 5xx.
async fn judge(answer: reqwest::Response, body: &Value) -> Option<Value> {
    let status = answer.status();
    let problem: Value = answer.json().await.unwrap_or(Value::Null);
    assert!(!status.is_server_error(), "{status} for {}: {problem}", shown(body));
    if status.is_success() {
        return Some(problem);
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return None;
    }
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "for {}: {problem}", shown(body));
    let fields = problem["errors"].as_array().map_or(0, |e| e.iter().filter(|e| e["field"].is_string()).count());
    assert!(fields > 0, "a refusal must name the field: {problem} for {}", shown(body));
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_command_reaches_every_projection() {
    let cases: usize = std::env::var("MURIMA_PROPERTY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(60);
    let app = TestApp::spawn().await;
    let admin = app.token_for(app.tenant_id, Role::Admin);
    let form = json!({ "fields": [{ "name": "customer_id", "type": "text" }] });
    let case_type = app.create_case_type(app.tenant_id, "Generated", form).await.to_string();
    // A fixed seed: the same commands every run, so a failure can be replayed.
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[16; 32]));
    let started = std::time::Instant::now();
    let (mut accepted, mut refused) = (0, 0);
    let mut opened = Vec::new();

    for _ in 0..cases {
        let body = case_body(case_type.clone()).new_tree(&mut runner).unwrap().current();
        let answer = app.command(Method::POST, "/v1/cases", &app.token, Some(body.clone())).await;
        match judge(answer, &body).await {
            Some(reply) => {
                accepted += 1;
                opened.extend(reply["id"].as_str().map(str::to_owned));
            }
            None => refused += 1,
        }
    }
    for _ in 0..cases {
        let body = team_body().new_tree(&mut runner).unwrap().current();
        let answer = app.command(Method::POST, "/v1/teams", &admin, Some(body.clone())).await;
        match judge(answer, &body).await {
            Some(_) => accepted += 1,
            None => refused += 1,
        }
    }
    let Some(case) = opened.first().cloned() else { panic!("no generated case was accepted") };
    for _ in 0..cases {
        let body = note_body().new_tree(&mut runner).unwrap().current();
        let answer =
            app.command(Method::POST, &format!("/v1/cases/{case}/notes"), &app.token, Some(body.clone())).await;
        match judge(answer, &body).await {
            Some(_) => accepted += 1,
            None => refused += 1,
        }
    }
    println!(
        "{} generated commands: {accepted} accepted, {refused} refused with a field named, in {:?}",
        3 * cases,
        started.elapsed()
    );
    assert!(accepted > 0 && refused > 0, "the generator should hit both sides of the limits");

    // Every accepted command is in every projection, and nothing is parked.
    app.wait_for_all_stores().await;
    let verify = json!({ "tenant_id": app.tenant_id, "grace_seconds": 0 });
    let report: Value = eventually("verify to find every projection complete", || async {
        let report: Value =
            app.admin(Method::POST, "/v1/admin/verify", Some(verify.clone())).await.json().await.ok()?;
        let clean = report["reports"]
            .as_array()?
            .iter()
            .all(|r| r["missing"].as_i64() == Some(0) && r["stale"].as_i64() == Some(0));
        clean.then_some(report)
    })
    .await;
    assert_eq!(report["reports"].as_array().map(Vec::len), Some(7), "{report:#}");
    let parked: Vec<(String, String)> =
        sqlx::query_as("SELECT projection, error FROM projector.parked_events").fetch_all(&app.pool).await.unwrap();
    assert!(parked.is_empty(), "accepted commands were parked: {parked:?}");
}
