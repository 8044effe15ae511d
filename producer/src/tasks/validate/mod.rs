//! Validation at the edge: plain functions from raw JSON (or query pairs) to
//! domain values, collecting every field error (not just the first) so one
//! 422 tells the client everything that is wrong. Nothing here touches the
//! database.
//!
//! One module per concern, each with its tests beside it:
//! [`text`] (NUL rule, title, description, tags), [`instant`] (RFC 3339),
//! [`duration`] (ISO-8601 durations), [`recurrence`] (RRULE and zone),
//! [`reminders`], [`snooze`], [`body`] (create/patch bodies and field changes),
//! [`page`] (limit and cursor), [`like`] (LIKE escaping) and [`list`]
//! (the `GET /tasks` query).

pub mod body;
pub mod duration;
pub mod instant;
pub mod like;
pub mod list;
pub mod page;
pub mod recurrence;
pub mod reminders;
pub mod snooze;
pub mod text;

pub use body::{
    apply_patch, check_fields, compute_changes, fields_json, parse_body, validate_create,
    validate_patch, FieldsPatch, PatchError, FIELDS,
};
pub use duration::{format_iso_duration, parse_iso_duration, IsoDuration};
pub use instant::parse_instant;
pub use like::{like_pattern, LikePattern};
pub use list::{parse_list_query, ListQuery, Q_MAX_CHARS};
pub use page::{parse_cursor, parse_limit, Cursor, Limit, DEFAULT_LIMIT, MAX_LIMIT};
pub use recurrence::{check_rrule, parse_recurrence, Rrule, Zone, MAX_EXDATES, RRULE_MAX_CHARS};
pub use reminders::{parse_reminders, MAX_REMINDERS};
pub use snooze::{parse_snooze, Snooze};
pub use text::{
    parse_tags, parse_title, reject_nul, Title, DESCRIPTION_MAX_CHARS, MAX_TAGS, TAG_MAX_CHARS,
    TITLE_MAX_CHARS,
};
