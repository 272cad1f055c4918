use murima_projector::Application;

#[tokio::main]
async fn main() {
    let settings = runtime::config::exit_on_error("projector", runtime::Settings::from_env());
    runtime::telemetry::init("projector");
    let served = async { Application::build(&settings).await?.run_until_stopped().await };
    runtime::config::exit_on_error("projector", served.await)
}
