//! The email channel: each `ReminderDue` (and each task change whose owner asked for
//! `email` on its kind) is mailed to the task owner's address over SMTP (`lettre`, async on
//! tokio, rustls), with a plain-text and an HTML part rendered from templates (`minijinja`,
//! HTML auto-escaped).
//!
//! # Guarantee: effectively once per reminder and address
//!
//! *Planning:* the notifier plans the mail in the event's own transaction
//! ([`super::store::plan_email`]): one `deliveries` row (channel `email`, target = the
//! address, unique per (channel, target, event id)) whose payload holds the subject and
//! both bodies, rendered there and then. A redelivered event or a restarted notifier finds
//! the row and plans nothing new, so it never becomes a second mail.
//!
//! *Sending:* the sender claims a row with a lease (`leased_until`, the webhook lease:
//! twice the SMTP timeout plus 5 s), sends, and records the attempt, completing the row, in
//! one transaction. A recorded success is final, and a claim re-checks the lease on the row
//! it locks, so no two senders hold a row at once. The one window left is the same as for
//! webhooks: a sender that dies (or loses the database) after the server's final `250` and
//! before that commit leaves the lease to expire, and the row is sent once more. That resend
//! carries the same `Message-ID` (derived from the delivery id), so a receiving client can
//! still drop it. Within that window "exactly once" is impossible for SMTP (there is no
//! transaction spanning the server's acceptance and our database); everywhere else it holds.
//!
//! *Digest:* the claim takes every due email row of one address at once (up to
//! [`EmailSettings::digest_max`]), and those are sent as one mail ("3 reminders", both
//! bodies listing each reminder); its attempt is recorded on each row, and a failed digest
//! reschedules all its rows to one instant so they stay together. A single row sends its
//! own stored mail unchanged; a digest is rendered from the rows' stored reminder data, so
//! the same group sends the same mail (its `Message-ID` derives from the rows' ids).
//!
//! *Failures:* a transient failure (a 4xx reply, a refused connection, a timeout) retries
//! with the webhook backoff and `TASKFLOW_WEBHOOK_MAX_ATTEMPTS`. A permanent 5xx reply
//! (e.g. `550 no such user`) fails the delivery at once: retrying would only repeat the
//! refusal, and a mail server may count it against our reputation.
//!
//! At most `TASKFLOW_WEBHOOK_CONCURRENCY` mails per address are in flight in one process.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use taskflow_infra::config::{env_opt, env_or, ConfigError};
use taskflow_schemas::{Event, EventType, ReminderDue};
use uuid::Uuid;

use super::store::Attempt;

/// The delivery `kind` of a reminder mail.
pub const KIND: &str = "reminder.due";

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("building the SMTP transport: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
    #[error("rendering the {template} template: {source}")]
    Template {
        template: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("the stored email payload is unreadable: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("building the message: {0}")]
    Message(String),
}

/// How the connection to the SMTP server is secured (`TASKFLOW_SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `starttls` (default): plain connect, then STARTTLS, required (no downgrade).
    StartTls,
    /// `tls`: TLS from the first byte (implicit TLS, usually port 465).
    Implicit,
    /// `none`: plaintext; for development and tests only.
    None,
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "starttls" => Ok(Self::StartTls),
            "tls" => Ok(Self::Implicit),
            "none" => Ok(Self::None),
            other => Err(format!("{other:?} is not starttls, tls or none")),
        }
    }
}

/// The SMTP server and sender; every field has a `TASKFLOW_SMTP_*` variable.
#[derive(Clone)]
pub struct EmailSettings {
    /// `TASKFLOW_SMTP_HOST`; unset: the email channel is off.
    pub host: String,
    /// `TASKFLOW_SMTP_PORT` (587).
    pub port: u16,
    /// `TASKFLOW_SMTP_TLS` (`starttls`).
    pub tls: SmtpTls,
    /// `TASKFLOW_SMTP_USERNAME` and `TASKFLOW_SMTP_PASSWORD`: both or neither.
    pub credentials: Option<(String, String)>,
    /// `TASKFLOW_SMTP_FROM`, e.g. `Taskflow <noreply@example.com>`.
    pub from: Mailbox,
    /// `TASKFLOW_SMTP_TIMEOUT_MS` (10000): each SMTP command.
    pub timeout: Duration,
    /// Most reminders in one digest mail (the rest go in the next one).
    pub digest_max: i64,
}

// By hand: the password must never reach a log line.
impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .field("digest_max", &self.digest_max)
            .finish()
    }
}

impl EmailSettings {
    /// Plaintext on `host:port`, no credentials: for tests.
    pub fn plaintext(host: &str, port: u16, from: Mailbox) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls: SmtpTls::None,
            credentials: None,
            from,
            timeout: Duration::from_secs(10),
            digest_max: 50,
        }
    }

    /// `None` when `TASKFLOW_SMTP_HOST` is unset (the channel is off).
    pub fn from_env() -> Result<Option<Self>, EmailError> {
        let Some(host) = env_opt::<String>("TASKFLOW_SMTP_HOST")? else {
            return Ok(None);
        };
        let raw_from: String = env_opt("TASKFLOW_SMTP_FROM")?.ok_or(ConfigError::Missing {
            name: "TASKFLOW_SMTP_FROM".to_owned(),
            because: "TASKFLOW_SMTP_HOST is set".to_owned(),
        })?;
        let from = raw_from
            .parse::<Mailbox>()
            .map_err(|e| ConfigError::Invalid {
                name: "TASKFLOW_SMTP_FROM".to_owned(),
                value: raw_from.clone(),
                reason: e.to_string(),
            })?;
        let username: Option<String> = env_opt("TASKFLOW_SMTP_USERNAME")?;
        let password: Option<String> = env_opt("TASKFLOW_SMTP_PASSWORD")?;
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "TASKFLOW_SMTP_PASSWORD".to_owned(),
                    because: "TASKFLOW_SMTP_USERNAME is set".to_owned(),
                }
                .into())
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "TASKFLOW_SMTP_USERNAME".to_owned(),
                    because: "TASKFLOW_SMTP_PASSWORD is set".to_owned(),
                }
                .into())
            }
        };
        Ok(Some(Self {
            host,
            port: env_or("TASKFLOW_SMTP_PORT", 587)?,
            tls: env_or("TASKFLOW_SMTP_TLS", SmtpTls::StartTls)?,
            credentials,
            from,
            timeout: Duration::from_millis(env_or("TASKFLOW_SMTP_TIMEOUT_MS", 10_000u64)?.max(1)),
            digest_max: 50,
        }))
    }

    /// The domain of the `From` address: the right-hand side of every `Message-ID`.
    fn domain(&self) -> &str {
        self.from.email.domain()
    }
}

/// The transport, built once per sender (it pools its connections).
pub fn transport(s: &EmailSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    let tls = match s.tls {
        SmtpTls::StartTls => Tls::Required(TlsParameters::new(s.host.clone())?),
        SmtpTls::Implicit => Tls::Wrapper(TlsParameters::new(s.host.clone())?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        .port(s.port)
        .tls(tls)
        .timeout(Some(s.timeout));
    if let Some((user, password)) = &s.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// One reminder (or task change) as the templates show it (instants already formatted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderItem {
    pub task_id: Uuid,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    /// When the reminder was scheduled for; for a task change, when it happened.
    pub fire_at: DateTime<Utc>,
    /// A task change: what happened (`Created`, `Completed`, ...); `None`: a reminder.
    #[serde(default)]
    pub change: Option<String>,
}

/// A planned mail, stored as the delivery's payload (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// What a digest lists for this reminder.
    pub reminder: ReminderItem,
}

/// A mail to plan, and the earliest instant it may be sent (`None`: now). Quiet hours set
/// `not_before` to the end of the window ([`super::quiet::QuietHours::release_at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEmail {
    pub payload: EmailPayload,
    pub not_before: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct View<'a> {
    title: &'a str,
    due: Option<String>,
    fire: String,
    change: Option<&'a str>,
}

fn view(item: &ReminderItem) -> View<'_> {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    View {
        title: &item.title,
        due: item.due_at.map(fmt),
        fire: fmt(item.fire_at),
        change: item.change.as_deref(),
    }
}

fn render(name: &'static str, ctx: minijinja::Value) -> Result<String, EmailError> {
    let mut env = minijinja::Environment::new();
    // Names ending in `.html` are auto-escaped, `.txt` are not.
    let templates: [(&str, &str); 6] = [
        ("reminder.txt", include_str!("email/reminder.txt")),
        ("reminder.html", include_str!("email/reminder.html")),
        ("change.txt", include_str!("email/change.txt")),
        ("change.html", include_str!("email/change.html")),
        ("digest.txt", include_str!("email/digest.txt")),
        ("digest.html", include_str!("email/digest.html")),
    ];
    let err = |source| EmailError::Template {
        template: name,
        source,
    };
    for (n, src) in templates {
        env.add_template(n, src).map_err(err)?;
    }
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(err)
}

/// A subject is one header line: control characters (a title's newline) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The mail for one reminder. Pure.
pub fn reminder_email(r: &ReminderDue) -> Result<EmailPayload, EmailError> {
    let item = ReminderItem {
        task_id: r.metadata.task_id,
        title: r.title.clone(),
        due_at: r.due_at,
        fire_at: r.fire_at,
        change: None,
    };
    let ctx = minijinja::context! { item => view(&item) };
    Ok(EmailPayload {
        subject: one_line(&format!("Reminder: {}", item.title)),
        text: render("reminder.txt", ctx.clone())?,
        html: render("reminder.html", ctx)?,
        reminder: item,
    })
}

/// The mail for a change to a task (for an owner who asked for `email` on that kind of
/// event); `None` for a `ReminderDue` (see [`reminder_email`]). Pure.
pub fn change_email(event: &Event) -> Result<Option<EmailPayload>, EmailError> {
    let change = match event.event_type() {
        EventType::TaskCreated => "Created",
        EventType::TaskUpdated => "Changed",
        EventType::TaskCompleted => "Completed",
        EventType::TaskReopened => "Reopened",
        EventType::TaskDeleted => "Deleted",
        EventType::ReminderSnoozed => "Reminder snoozed",
        EventType::ReminderDue => return Ok(None),
    };
    let Some(task) = event.snapshot() else {
        return Ok(None);
    };
    let item = ReminderItem {
        task_id: event.metadata().task_id,
        title: task.title.clone(),
        due_at: task.due_at,
        fire_at: event.metadata().occurred_at,
        change: Some(change.to_owned()),
    };
    let ctx = minijinja::context! { item => view(&item) };
    Ok(Some(EmailPayload {
        subject: one_line(&format!("{change}: {}", item.title)),
        text: render("change.txt", ctx.clone())?,
        html: render("change.html", ctx)?,
        reminder: item,
    }))
}

/// Subject, text and HTML of one digest listing `items`. Pure.
pub fn digest(items: &[ReminderItem]) -> Result<(String, String, String), EmailError> {
    let views: Vec<View<'_>> = items.iter().map(view).collect();
    let ctx = minijinja::context! { items => views };
    let what = if items.iter().all(|i| i.change.is_none()) {
        "reminders"
    } else {
        "notifications"
    };
    Ok((
        format!("{} {what}", items.len()),
        render("digest.txt", ctx.clone())?,
        render("digest.html", ctx)?,
    ))
}

/// The `Message-ID` of the mail for `ids` (one delivery, or a digest's): stable across
/// attempts, so a client can deduplicate a resend.
pub fn message_id(ids: &[Uuid], domain: &str) -> String {
    match ids {
        [one] => format!("<{}@{domain}>", one.simple()),
        _ => {
            let mut sorted = ids.to_vec();
            sorted.sort();
            let first = sorted.first().map(|u| u.simple().to_string());
            format!(
                "<digest.{}.{}@{domain}>",
                first.unwrap_or_default(),
                sorted.len()
            )
        }
    }
}

/// Builds the mail for the deliveries `ids` (one address, payloads in order).
pub fn build(
    settings: &EmailSettings,
    to: &str,
    ids: &[Uuid],
    payloads: &[EmailPayload],
) -> Result<Message, EmailError> {
    let to: Mailbox = to
        .parse()
        .map_err(|e| EmailError::Message(format!("recipient {to:?}: {e}")))?;
    let (subject, text, html) = match payloads {
        [one] => (one.subject.clone(), one.text.clone(), one.html.clone()),
        many => {
            let items: Vec<ReminderItem> = many.iter().map(|p| p.reminder.clone()).collect();
            digest(&items)?
        }
    };
    Message::builder()
        .from(settings.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id(ids, settings.domain())))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| EmailError::Message(e.to_string()))
}

/// One attempt's result, and whether the failure is permanent (a 5xx reply, or a mail that
/// cannot be built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAttempt {
    pub attempt: Attempt,
    pub permanent: bool,
}

/// Sends one mail (single or digest). Never fails: every problem is an unsuccessful attempt.
pub async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    settings: &EmailSettings,
    to: &str,
    ids: &[Uuid],
    payloads: &[EmailPayload],
) -> MailAttempt {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let built = build(settings, to, ids, payloads);
    let latency = |t0: Instant| i32::try_from(t0.elapsed().as_millis()).unwrap_or(i32::MAX);
    let message = match built {
        Ok(m) => m,
        Err(e) => {
            return MailAttempt {
                attempt: Attempt {
                    started_at,
                    latency_ms: latency(t0),
                    status: None,
                    error: Some(e.to_string()),
                    succeeded: false,
                },
                permanent: true,
            }
        }
    };
    match transport.send(message).await {
        Ok(resp) => {
            let ok = resp.is_positive();
            MailAttempt {
                attempt: Attempt {
                    started_at,
                    latency_ms: latency(t0),
                    status: Some(i32::from(u16::from(resp.code()))),
                    error: (!ok).then(|| format!("SMTP {}", resp.code())),
                    succeeded: ok,
                },
                permanent: false,
            }
        }
        Err(e) => MailAttempt {
            attempt: Attempt {
                started_at,
                latency_ms: latency(t0),
                status: e.status().map(|c| i32::from(u16::from(c))),
                error: Some(error_chain(&e)),
                succeeded: false,
            },
            permanent: e.is_permanent(),
        },
    }
}

/// An error with its causes (lettre's own message leaves out the server's text).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use taskflow_schemas::{examples, Event, EventType};

    fn reminder(title: &str) -> ReminderDue {
        match examples::example(EventType::ReminderDue) {
            Event::ReminderDue(mut r) => {
                r.title = title.to_owned();
                r
            }
            _ => unreachable!(),
        }
    }

    fn settings() -> EmailSettings {
        EmailSettings::plaintext(
            "127.0.0.1",
            2525,
            "Taskflow <noreply@example.com>".parse().unwrap(),
        )
    }

    #[test]
    fn a_reminder_renders_both_bodies_and_escapes_the_html_one() {
        let p = reminder_email(&reminder("Pay <b>rent</b> & \"bills\"")).unwrap();
        assert_eq!(p.subject, "Reminder: Pay <b>rent</b> & \"bills\"");
        assert!(
            p.text.contains("Reminder: Pay <b>rent</b> & \"bills\""),
            "{}",
            p.text
        );
        assert!(
            p.html
                .contains("Pay &lt;b&gt;rent&lt;&#x2f;b&gt; &amp; &quot;bills&quot;")
                || p.html
                    .contains("Pay &lt;b&gt;rent&lt;/b&gt; &amp; &quot;bills&quot;"),
            "{}",
            p.html
        );
        assert!(!p.html.contains("<b>rent"), "{}", p.html);
        assert!(p.text.contains("Scheduled for "), "{}", p.text);
    }

    #[test]
    fn a_title_cannot_inject_a_header() {
        let p = reminder_email(&reminder("a\r\nBcc: evil@example.com")).unwrap();
        assert!(!p.subject.contains('\n') && !p.subject.contains('\r'));
    }

    #[test]
    fn a_digest_lists_every_reminder() {
        let a = reminder_email(&reminder("Water the plants")).unwrap();
        let b = reminder_email(&reminder("Call <mum>")).unwrap();
        let c = reminder_email(&reminder("Buy milk")).unwrap();
        let (subject, text, html) =
            digest(&[a.reminder.clone(), b.reminder.clone(), c.reminder.clone()]).unwrap();
        assert_eq!(subject, "3 reminders");
        for t in ["Water the plants", "Call <mum>", "Buy milk"] {
            assert!(text.contains(&format!("- {t}")), "{text}");
        }
        assert!(html.contains("Call &lt;mum&gt;"), "{html}");
        assert_eq!(html.matches("<li>").count(), 3, "{html}");
    }

    #[test]
    fn a_task_change_is_mailed_with_what_happened_and_a_digest_says_notifications() {
        let created = examples::example(EventType::TaskCreated);
        let mail = change_email(&created).unwrap().expect("a mail");
        let title = &created.snapshot().unwrap().title;
        assert_eq!(mail.subject, format!("Created: {title}"));
        assert!(
            mail.text.starts_with(&format!("Created: {title}")),
            "{}",
            mail.text
        );
        assert!(mail.html.contains("Created: <strong>"), "{}", mail.html);
        assert_eq!(mail.reminder.change.as_deref(), Some("Created"));
        assert!(change_email(&examples::example(EventType::ReminderDue))
            .unwrap()
            .is_none());
        let due = reminder_email(&reminder("Call mum")).unwrap();
        let (subject, text, html) = digest(&[due.reminder, mail.reminder]).unwrap();
        assert_eq!(subject, "2 notifications");
        assert!(text.starts_with("2 notifications:"), "{text}");
        assert!(text.contains("- Call mum"), "{text}");
        assert!(text.contains(&format!("- Created: {title}")), "{text}");
        assert!(html.contains("<li>Created: <strong>"), "{html}");
    }

    #[test]
    fn message_ids_are_stable_and_derived_from_the_deliveries() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            message_id(&[a], "example.com"),
            format!("<{}@example.com>", a.simple())
        );
        assert_eq!(
            message_id(&[a, b], "example.com"),
            message_id(&[b, a], "example.com")
        );
        assert_ne!(message_id(&[a, b], "x"), message_id(&[a], "x"));
    }

    #[test]
    fn the_built_message_has_both_parts_and_the_headers() {
        let p = reminder_email(&reminder("Water the plants")).unwrap();
        let id = Uuid::now_v7();
        let m = build(&settings(), "alice@example.test", &[id], &[p]).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(
            raw.contains("From: Taskflow <noreply@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("To: alice@example.test"), "{raw}");
        assert!(raw.contains("Subject: Reminder: Water the plants"), "{raw}");
        assert!(
            raw.contains(&format!("Message-ID: <{}@example.com>", id.simple())),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(build(&settings(), "not an address", &[id], &[]).is_err());
    }

    #[test]
    fn tls_modes_parse_and_others_are_refused() {
        assert_eq!("starttls".parse::<SmtpTls>(), Ok(SmtpTls::StartTls));
        assert_eq!("TLS".parse::<SmtpTls>(), Ok(SmtpTls::Implicit));
        assert_eq!("none".parse::<SmtpTls>(), Ok(SmtpTls::None));
        assert!("ssl".parse::<SmtpTls>().is_err());
    }

    #[test]
    fn the_password_is_never_in_debug_output() {
        let mut s = settings();
        s.credentials = Some(("user".to_owned(), "hunter2-secret".to_owned()));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user"), "{shown}");
    }
}
