//! The MCP server handler: tools (see [`crate::tools`]) and one resource,
//! the user's open tasks. It acts with the token of the user it serves:
//! fixed for the process over stdio, taken from each HTTP request's
//! `Authorization` header over streamable HTTP.

use std::sync::Arc;

use axum::http::{header, request::Parts};
use reqwest::Method;
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, InitializeResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
        ServerConfig, Tool,
    },
    service::RequestContext,
    ErrorData, RoleServer, ServerHandler,
};

use crate::{
    api::{ApiClient, ApiError, ApiRequest},
    metrics::McpMetrics,
    tools,
};

/// The resource listing the user's open tasks.
pub const OPEN_TASKS_URI: &str = "taskflow://tasks/open";

const INSTRUCTIONS: &str = "Taskflow keeps the user's tasks (title, description, due date, \
    priority, tags, recurrence, reminders). Use list_tasks to find tasks (filters and \
    pagination), get_task for one task, create_task/update_task to write, complete_task and \
    reopen_task to change status, delete_task to remove, snooze_reminder to move a reminder \
    to later, list_notifications and mark_notification_read for the inbox (reminders that \
    fired). Timestamps need an offset (RFC 3339). A refused call returns the reason and, for \
    invalid arguments, each field with what is wrong: fix those and retry.";

/// Whose token the server acts with.
#[derive(Clone)]
pub enum TokenSource {
    /// One token for the whole process (stdio).
    Fixed(Arc<str>),
    /// The bearer token of each HTTP request (streamable HTTP).
    PerRequest,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            TokenSource::PerRequest => f.write_str("PerRequest"),
        }
    }
}

/// The bearer token of an `Authorization` header, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Clone, Debug)]
pub struct TaskflowMcp {
    api: ApiClient,
    tokens: TokenSource,
    tools: Arc<Vec<Tool>>,
    metrics: McpMetrics,
}

impl TaskflowMcp {
    pub fn new(
        api: ApiClient,
        tokens: TokenSource,
        metrics: McpMetrics,
    ) -> Result<Self, tools::ToolError> {
        Ok(Self {
            api,
            tokens,
            tools: Arc::new(tools::list()?),
            metrics,
        })
    }

    fn token(&self, ctx: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
        match &self.tokens {
            TokenSource::Fixed(t) => Ok(t.to_string()),
            // The HTTP layer refuses a request without one before it gets
            // here; this is the same check, for the request at hand.
            TokenSource::PerRequest => ctx
                .extensions
                .get::<Parts>()
                .and_then(bearer)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ErrorData::invalid_request("missing Authorization: Bearer <token>", None)
                }),
        }
    }
}

impl ServerHandler for TaskflowMcp {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "taskflow-mcp",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let token = self.token(&context)?;
        let name = request.name.as_ref();
        let result = tools::call(
            &self.api,
            &token,
            name,
            request.arguments.unwrap_or_default(),
        )
        .await;
        self.metrics.record(name, &result);
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![Resource::new(
            OPEN_TASKS_URI,
            "open-tasks",
        )
        .with_title("Open tasks")
        .with_description("The user's open tasks, oldest first (at most 200), as JSON.")
        .with_mime_type("application/json")]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != OPEN_TASKS_URI {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}; try {OPEN_TASKS_URI}", request.uri),
                None,
            ));
        }
        let token = self.token(&context)?;
        let req = ApiRequest::new(Method::GET, "/tasks?status=open&limit=200".to_owned());
        match self.api.send(&token, req).await {
            Ok(answer) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                answer.body.to_string(),
                OPEN_TASKS_URI,
            )
            .with_mime_type("application/json")])
            .into()),
            // Resources have no tool-error channel: a refusal is a protocol
            // error carrying the API's problem as data.
            Err(ApiError::Refused { status, problem }) => Err(ErrorData::invalid_request(
                format!("the API answered {status}"),
                Some(problem),
            )),
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        }
    }
}
