//! `taskflow-outbox`: the operator's command for parked outbox rows.
//!
//! ```text
//! taskflow-outbox list [--json]      parked rows, oldest first, with the reason
//! taskflow-outbox retry <id>...      unpark these rows; the relay tries them next
//! taskflow-outbox retry --all        unpark every parked row
//! ```
//!
//! Connects with `TASKFLOW_DATABASE_URL`, like the API.

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;
use taskflow_infra::outbox::{list_parked, retry_parked};

const USAGE: &str = "usage: taskflow-outbox list [--json] | retry <id>... | retry --all";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = taskflow_infra::config::env_or(
        "TASKFLOW_DATABASE_URL",
        taskflow_producer::config::DEFAULT_DATABASE_URL.to_owned(),
    )?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .context("connecting to PostgreSQL (TASKFLOW_DATABASE_URL)")?;
    match args.first().map(String::as_str) {
        Some("list") => {
            let rows = list_parked(&pool).await?;
            if args.iter().any(|a| a == "--json") {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no parked outbox rows");
            } else {
                for r in rows {
                    println!(
                        "{id}\t{topic}\t{key}\t{ty}\tattempts={attempts}\tparked_at={parked}\twaiting_behind={behind}\t{err}",
                        id = r.id,
                        topic = r.topic,
                        key = r.partition_key,
                        ty = r.event_type,
                        attempts = r.attempts,
                        parked = r.parked_at.to_rfc3339(),
                        behind = r.waiting_behind,
                        err = r.last_error.unwrap_or_default(),
                    );
                }
            }
        }
        Some("retry") => {
            let rest = &args[1..];
            let ids: Option<Vec<i64>> = if rest == ["--all"] {
                None
            } else if rest.is_empty() {
                bail!("{USAGE}");
            } else {
                Some(
                    rest.iter()
                        .map(|a| {
                            a.parse::<i64>()
                                .with_context(|| format!("{a:?} is not a row id"))
                        })
                        .collect::<anyhow::Result<_>>()?,
                )
            };
            let n = retry_parked(&pool, ids.as_deref()).await?;
            println!("unparked {n} row(s); the relay publishes them next, in task order");
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}
