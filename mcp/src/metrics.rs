//! `taskflow_mcp_tool_calls_total{tool, outcome}`. Both labels are bounded:
//! `tool` is one of [`crate::tools::TOOL_NAMES`] or `unknown`, `outcome` is
//! `ok`, `refused` (the API or the arguments said no: 4xx) or `error` (the
//! API failed or could not be reached: 5xx).

use prometheus::{IntCounterVec, Opts, Registry};
use rmcp::model::CallToolResult;

use crate::tools::TOOL_NAMES;

#[derive(Clone, Debug)]
pub struct McpMetrics {
    calls: IntCounterVec,
}

impl McpMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "taskflow_mcp_tool_calls_total",
                "MCP tool calls by tool and outcome (ok, refused, error)",
            ),
            &["tool", "outcome"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        Ok(Self { calls })
    }

    pub fn record(&self, tool: &str, result: &CallToolResult) {
        let tool = TOOL_NAMES
            .iter()
            .find(|t| **t == tool)
            .copied()
            .unwrap_or("unknown");
        let status = result
            .structured_content
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(serde_json::Value::as_u64);
        let outcome = match (result.is_error, status) {
            (Some(true), Some(s)) if s >= 500 => "error",
            (Some(true), _) => "refused",
            _ => "ok",
        };
        self.calls.with_label_values(&[tool, outcome]).inc();
    }
}
