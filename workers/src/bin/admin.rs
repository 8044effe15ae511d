//! `taskflow-admin`: the operator's command line (topics, schemas, consumer lag, dead
//! letters, parked outbox rows). The logic is in `taskflow_workers::admin`; this file parses
//! arguments, reads the environment like every other binary, and prints.
//!
//! Exit status: 0 done; 1 done, but the answer is "no" (`schemas check`: incompatible;
//! `dlq replay`: a record failed); 2 an error (or a usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use sqlx::PgPool;
use taskflow_infra::config::KafkaSettings;
use taskflow_schemas::topics;
use taskflow_workers::admin::{
    dlq, lag, outbox, schemas, topics::Layout, AdminError, Broker, Human,
};

/// Operate Taskflow: topics, schemas, consumer lag, dead letters, parked outbox rows.
///
/// Configured like every Taskflow binary: TASKFLOW_KAFKA_* (brokers, security),
/// TASKFLOW_SCHEMA_REGISTRY_URL (+ _USERNAME/_PASSWORD), TASKFLOW_DATABASE_URL.
#[derive(Debug, Parser)]
#[command(name = "taskflow-admin", version)]
struct Cli {
    /// Print JSON for scripts instead of aligned columns.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create (idempotently) and describe Taskflow's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Register Taskflow's schemas; check a schema file against the registry.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Consumer-group lag per partition (committed offset vs high watermark).
    Lag(LagArgs),
    /// Dead letters of a consumer group (taskflow.dlq.<group>): list, show, replay.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Parked outbox rows: list, retry.
    #[command(subcommand)]
    Outbox(OutboxCommand),
}

/// Topic names, as the binaries read them.
#[derive(Debug, Args)]
struct Names {
    /// The task-events topic.
    #[arg(long, env = "TASKFLOW_TOPIC_TASK_EVENTS", default_value = topics::TASK_EVENTS)]
    task_events_topic: String,
    /// The reminders topic.
    #[arg(long, env = "TASKFLOW_TOPIC_REMINDERS", default_value = topics::REMINDERS)]
    reminders_topic: String,
    /// A consumer group (repeatable); default: Taskflow's four groups. Each has the
    /// dead-letter topic taskflow.dlq.<group>.
    #[arg(long = "group")]
    groups: Vec<String>,
}

impl Names {
    fn layout(&self) -> Layout {
        let mut layout = Layout {
            task_events: self.task_events_topic.clone(),
            reminders: self.reminders_topic.clone(),
            ..Layout::default()
        };
        if !self.groups.is_empty() {
            layout.groups = self.groups.clone();
        }
        layout
    }
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every topic with its partitions and retention; an existing topic gets its
    /// retention set again.
    Create {
        #[command(flatten)]
        names: Names,
        #[arg(long, default_value_t = 6)]
        task_events_partitions: i32,
        #[arg(long, default_value_t = 6)]
        reminders_partitions: i32,
        #[arg(long, default_value_t = 1)]
        dlq_partitions: i32,
        /// Replicas per partition (use 3 on a three-broker cluster).
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
    },
    /// Partitions, leaders, replicas, watermarks and retention configs.
    Describe {
        #[command(flatten)]
        names: Names,
        /// Topics to describe; default: every Taskflow topic.
        topics: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Set the global compatibility to BACKWARD_TRANSITIVE and register every subject
    /// Taskflow writes.
    Register {
        #[command(flatten)]
        names: Names,
    },
    /// Ask the registry whether a schema file is compatible with a subject; exit 1 if not.
    Check {
        /// An .avsc file; references to EventMetadata/TaskSnapshot are expanded.
        file: PathBuf,
        /// The registry subject, e.g. taskflow.task-events-com.taskflow.events.TaskCreated.
        #[arg(long)]
        subject: String,
        /// Shared record files to expand references with (default: the compiled-in ones).
        #[arg(long = "shared")]
        shared: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct LagArgs {
    #[command(flatten)]
    names: Names,
    /// Only these topics (repeatable); default: the topics the group consumes.
    #[arg(long = "topic")]
    topics: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        group: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start at this offset.
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// The DLQ topic, when not taskflow.dlq.<group>.
        #[arg(long)]
        topic: Option<String>,
    },
    /// One dead letter in full: OFFSET, or PARTITION:OFFSET.
    Show {
        group: String,
        position: String,
        #[arg(long)]
        topic: Option<String>,
    },
    /// Produce dead letters back to their source topic, each once.
    Replay {
        group: String,
        /// OFFSET or PARTITION:OFFSET (repeatable).
        #[arg(
            long = "offset",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        offsets: Vec<String>,
        /// Every dead letter not replayed yet.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Parked rows, oldest first, with the reason.
    List,
    /// Unpark rows; the relay sends them next, in task order.
    Retry {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("taskflow-admin: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("taskflow-admin: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print<R: Serialize + Human>(json: bool, report: &R) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

fn broker() -> anyhow::Result<Broker> {
    Ok(Broker::new(KafkaSettings::from_env("taskflow-admin")?)?)
}

/// `TASKFLOW_DATABASE_*` as the other binaries read it; never migrates (the API does).
async fn pool() -> anyhow::Result<PgPool> {
    let mut settings = taskflow_infra::db::DatabaseSettings::from_env(2)?;
    settings.migrate = false;
    Ok(taskflow_infra::db::connect(&settings, &taskflow_workers::audit::MIGRATOR).await?)
}

fn dlq_topic(group: &str, topic: Option<String>) -> String {
    topic.unwrap_or_else(|| topics::dlq(group))
}

fn read(path: &Path) -> Result<String, AdminError> {
    std::fs::read_to_string(path).map_err(|source| AdminError::Io {
        path: path.display().to_string(),
        source,
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    taskflow_infra::telemetry::init_tracing_stderr();
    let json = cli.json;
    match cli.command {
        Command::Topics(TopicsCommand::Create {
            names,
            task_events_partitions,
            reminders_partitions,
            dlq_partitions,
            replication_factor,
        }) => {
            let layout = Layout {
                task_events_partitions,
                reminders_partitions,
                dlq_partitions,
                ..names.layout()
            };
            let report = taskflow_workers::admin::topics::create(
                &broker()?,
                &layout.specs(),
                replication_factor,
            )
            .await?;
            print(json, &report)?;
        }
        Command::Topics(TopicsCommand::Describe { names, topics }) => {
            let topics = if topics.is_empty() {
                names.layout().specs().into_iter().map(|s| s.name).collect()
            } else {
                topics
            };
            let report = taskflow_workers::admin::topics::describe(&broker()?, &topics).await?;
            print(json, &report)?;
        }
        Command::Schemas(SchemasCommand::Register { names }) => {
            let registry = schemas::Registry::from_env()?;
            let report = schemas::register(&registry, &names.layout()).await?;
            print(json, &report)?;
        }
        Command::Schemas(SchemasCommand::Check {
            file,
            subject,
            shared,
        }) => {
            let shared = shared
                .iter()
                .map(|p| read(p))
                .collect::<Result<Vec<_>, _>>()?;
            let schema = schemas::prepare(&read(&file)?, &shared)
                .with_context(|| format!("preparing {}", file.display()))?;
            let registry = schemas::Registry::from_env()?;
            let report = schemas::check(&registry, &subject, &schema).await?;
            print(json, &report)?;
            if !report.compatible {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Lag(args) => {
            let layout = args.names.layout();
            let report = lag::lag(&broker()?, &layout, &layout.groups, &args.topics)?;
            print(json, &report)?;
        }
        Command::Dlq(DlqCommand::List {
            group,
            limit,
            from,
            topic,
        }) => {
            let db = pool().await;
            let db = db
                .as_ref()
                .map_err(|e| format!("database unavailable: {e:#}"));
            let report = dlq::list(&broker()?, db, &dlq_topic(&group, topic), from, limit).await?;
            print(json, &report)?;
        }
        Command::Dlq(DlqCommand::Show {
            group,
            position,
            topic,
        }) => {
            let position = dlq::parse_position(&position)?;
            let db = pool().await;
            let db = db
                .as_ref()
                .map_err(|e| format!("database unavailable: {e:#}"));
            let report = dlq::show(&broker()?, db, &dlq_topic(&group, topic), position).await?;
            print(json, &report)?;
        }
        Command::Dlq(DlqCommand::Replay {
            group,
            offsets,
            all,
            topic,
        }) => {
            let selection = if all {
                dlq::Selection::All
            } else {
                dlq::Selection::Positions(
                    offsets
                        .iter()
                        .map(|o| dlq::parse_position(o))
                        .collect::<Result<_, _>>()?,
                )
            };
            let db = pool().await?;
            let report =
                dlq::replay(&broker()?, &db, &dlq_topic(&group, topic), &selection).await?;
            print(json, &report)?;
            if report.failed > 0 {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Outbox(OutboxCommand::List) => {
            let report = outbox::list(&pool().await?).await?;
            print(json, &report)?;
        }
        Command::Outbox(OutboxCommand::Retry { ids, all }) => {
            let ids = (!all).then_some(ids);
            let report = outbox::retry(&pool().await?, ids.as_deref()).await?;
            print(json, &report)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn replay_needs_offsets_or_all_but_not_both() {
        assert!(Cli::try_parse_from(["taskflow-admin", "dlq", "replay", "g"]).is_err());
        assert!(Cli::try_parse_from([
            "taskflow-admin",
            "dlq",
            "replay",
            "g",
            "--all",
            "--offset",
            "1"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "taskflow-admin",
            "dlq",
            "replay",
            "g",
            "--offset",
            "1",
            "--offset",
            "0:2"
        ])
        .is_ok());
        assert!(Cli::try_parse_from(["taskflow-admin", "outbox", "retry"]).is_err());
        assert!(
            Cli::try_parse_from(["taskflow-admin", "--json", "outbox", "retry", "--all"]).is_ok()
        );
    }
}
