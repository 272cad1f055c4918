use murima_query_api::Application;

#[tokio::main]
async fn main() {
    let settings = runtime::config::exit_on_error("query-api", runtime::Settings::from_env());
    runtime::telemetry::init("query-api");
    let served = async { Application::build(&settings).await?.run_until_stopped().await };
    runtime::config::exit_on_error("query-api", served.await)
}
