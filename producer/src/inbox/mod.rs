//! The inbox: notifications (written by the notifier, e.g. for each `ReminderDue`) with a
//! read state shared by every device. `GET /notifications` (unread first, then newest),
//! `GET /notifications/unread-count`, `POST /notifications/{id}/read`,
//! `POST /notifications/read-all`.
//!
//! A read-state change appends a `NotificationRead` entry to the user's feed in the same
//! transaction (with the unread count after it) and wakes the user's streams after commit,
//! so every other open device updates its badge. A change that changes nothing (already
//! read) writes nothing.

pub mod handlers;
pub mod model;
pub mod store;
