//! Every scenario of `murima-bench` runs once, briefly, against a test's own services: a
//! smoke run that judges no figure, so a scenario cannot rot unseen (the lag scenario
//! once failed at warm-up for weeks: its audit probe got 403 and took it for "not yet").

use murima_tests::{binary, settings_env, TestApp, SECRET};

#[tokio::test(flavor = "multi_thread")]
async fn every_benchmark_scenario_runs_to_its_report() {
    let app = TestApp::spawn().await;
    let out = std::env::temp_dir().join(format!("murima-bench-smoke-{}", uuid::Uuid::now_v7().simple()));
    let pg = std::env::var("MURIMA_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let common = [
        "--command-url".to_owned(),
        app.command_url.clone(),
        "--query-url".to_owned(),
        app.query_url.clone(),
        "--secret".to_owned(),
        SECRET.to_owned(),
        "--brokers".to_owned(),
        app.settings.kafka_brokers.clone(),
        "--postgres".to_owned(),
        format!("{pg}/postgres"),
        "--seconds".to_owned(),
        "2".to_owned(),
    ];
    let scenarios: [(&str, &[&str]); 7] = [
        ("commands", &["--clients", "4", "--tenants", "2"]),
        ("lag", &["--rate", "10", "--lag-sample", "4", "--tenants", "2"]),
        ("queries", &["--cases", "40", "--query-tenants", "2", "--query-rate", "10"]),
        ("seed", &["--cases", "20", "--query-tenants", "1"]),
        ("ceilings", &[]),
        ("rebuild", &["--rebuild-events", "400", "--naive-events", "40"]),
        ("login-flood", &["--flooders", "4", "--clients", "2", "--tenants", "1"]),
    ];
    // A run killed mid-rebuild leaves its rebuild unfinished: the scenario abandons it.
    sqlx::query(
        "INSERT INTO projector.rebuilds (id, projection, tenant_id, copies) VALUES ($1, 'redis', $2, '{}'::jsonb)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::now_v7())
    .execute(&app.pool)
    .await
    .unwrap();
    for (scenario, extra) in scenarios {
        let report = out.join(format!("{scenario}.json"));
        let run = tokio::process::Command::new(binary("murima-bench"))
            .args(["--scenario", scenario])
            .args(&common)
            .args(extra)
            .arg("--out")
            .arg(&report)
            .envs(settings_env(&app.settings))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(240), run)
            .await
            .unwrap_or_else(|_| panic!("{scenario}: no end within 240 s"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{scenario} failed ({}):\n{stdout}\n{stderr}", output.status);
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let results = written["results"].as_object().unwrap();
        assert!(!results.is_empty(), "{scenario} reported nothing:\n{stdout}");
        if scenario == "rebuild" {
            assert!(stdout.contains("abandoned an unfinished rebuild of redis"), "{stdout}");
        }
        if scenario == "lag" {
            let lag = written["results"]["lag"]["lag"].as_object().unwrap();
            for store in ["postgres", "mongodb", "elasticsearch", "redis"] {
                assert!(lag.keys().any(|k| k.starts_with(store)), "no {store} figure in {lag:?}\n{stdout}");
            }
        }
    }
    std::fs::remove_dir_all(&out).ok();
}
