use murima_query_api::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = runtime::Settings::from_env()?;
    runtime::telemetry::init("query-api");
    Application::build(&settings).await?.run_until_stopped().await
}
