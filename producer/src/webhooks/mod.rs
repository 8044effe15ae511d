//! Webhook endpoints: a signed-in user registers URLs that receive their events, signed as
//! the Standard Webhooks specification says (see `taskflow_infra::webhook`). The API manages
//! endpoints and shows the delivery log; the notifier plans and sends the deliveries.

pub mod handlers;
pub mod model;
pub mod store;
