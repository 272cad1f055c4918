use murima_projector::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = runtime::Settings::from_env()?;
    runtime::telemetry::init("projector");
    Application::build(&settings).await?.run_until_stopped().await
}
