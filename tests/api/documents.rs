//! Documents: metadata on open cases, soft delete in the relational read model.

use murima_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_attached_to_cases_and_soft_deleted() {
    let app = TestApp::spawn().await;
    let case = app.open_case("Invoice dispute").await["id"].as_str().unwrap().to_owned();
    let body = json!({ "filename": "invoice.pdf", "mime_type": "application/pdf", "size": 48213, "storage_path": "t/c/invoice.pdf" });
    let bad = json!({ "filename": "x", "mime_type": "pdf", "size": -1, "storage_path": "p" });
    let r = app.command(Method::POST, &format!("/v1/cases/{case}/documents"), &app.token, Some(bad)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.command(Method::POST, &format!("/v1/cases/{case}/documents"), &app.token, Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let document = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let r = app.command(Method::DELETE, &format!("/v1/documents/{document}"), &app.token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let r = app.command(Method::DELETE, &format!("/v1/documents/{}", uuid::Uuid::now_v7()), &app.token, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (deleted, size): (bool, i64) =
        app.row_at(&app.tenant_table("documents"), "is_deleted, size", document.parse().unwrap(), 2).await;
    assert!(deleted);
    assert_eq!(size, 48213);
}
