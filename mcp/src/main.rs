//! `taskflow-mcp`: the MCP server over stdio (default) or streamable HTTP,
//! chosen by `TASKFLOW_MCP_TRANSPORT`.

use anyhow::Context;
use rmcp::ServiceExt;
use taskflow_mcp::{
    api::ApiClient,
    http::{self, McpHttp},
    metrics::McpMetrics,
    Settings, TaskflowMcp, TokenSource, Transport,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Over stdio, stdout is the protocol stream: logs go to stderr, always.
    taskflow_infra::telemetry::init_tracing_stderr();
    let settings = Settings::from_env().context("reading TASKFLOW_MCP_* settings")?;
    let api = ApiClient::new(&settings.api_url, settings.api_timeout)
        .context("building the API client")?;
    let registry = prometheus::Registry::new();
    let metrics = McpMetrics::register(&registry).context("registering metrics")?;
    let shutdown = taskflow_infra::shutdown::on_signal();
    match settings.transport {
        Transport::Stdio => {
            let token = settings
                .token
                .clone()
                .context("TASKFLOW_MCP_TOKEN is required over stdio")?;
            let handler = TaskflowMcp::new(api, TokenSource::Fixed(token), metrics)
                .context("building the tools")?;
            tracing::info!(api = %settings.api_url, "serving MCP over stdio");
            let running = handler
                .serve(rmcp::transport::stdio())
                .await
                .context("starting the MCP session over stdio")?;
            // Ends when the client closes stdin, or on SIGTERM/SIGINT.
            let cancel = running.cancellation_token();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                cancel.cancel();
            });
            running.waiting().await.context("MCP session over stdio")?;
        }
        Transport::Http => {
            let handler = TaskflowMcp::new(api, TokenSource::PerRequest, metrics)
                .context("building the tools")?;
            let router = http::router(
                handler,
                settings.allowed_hosts.clone(),
                shutdown.child_token(),
            );
            let server = McpHttp::bind(settings.http_addr, router).await?;
            tracing::info!(
                port = server.port(),
                api = %settings.api_url,
                "serving MCP over streamable HTTP at /mcp"
            );
            let admin_listener = tokio::net::TcpListener::bind(settings.admin_addr)
                .await
                .with_context(|| format!("binding the admin server on {}", settings.admin_addr))?;
            let admin = tokio::spawn(taskflow_infra::admin::serve(
                admin_listener,
                registry,
                taskflow_infra::admin::always_ready(),
                shutdown.clone(),
            ));
            server.run_until(shutdown).await?;
            admin.await.context("admin server task")??;
        }
    }
    Ok(())
}
