//! The webhook routes: thin over [`super::store`]. Managed with the login token only, like
//! personal access tokens: an endpoint's secret is a credential of its own.

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use taskflow_infra::webhook::{self, signing, target};

use super::{
    model::{
        validate_create, validate_rotate, CreatedWebhookEndpoint, DeliveryList, RotatedSecret,
        TestDeliveryQueued, WebhookEndpoint, WebhookEndpointList, MAX_ENDPOINTS,
    },
    store,
};
use crate::{
    app::AppState,
    auth::SessionUser,
    extract::{JsonBody, PathId},
    problem::{ApiError, FieldError, Problem},
};

/// Register a webhook endpoint. The answer holds its signing secret, the only time it is
/// shown. The URL must be https and must not be an internal address (checked again at every
/// delivery); a name that resolves only to internal addresses is refused here already.
#[utoipa::path(
    post, path = "/webhooks", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created; `secret` is shown only in this answer", body = CreatedWebhookEndpoint,
         headers(("Location" = String))),
        (status = 403, description = "Called with a personal access token: webhooks are managed with the login token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user already has the most endpoints allowed (20)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, e.g. a URL that is not https or is internal", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    user: SessionUser,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let new = validate_create(&body.value, state.webhook_policy).map_err(ApiError::Validation)?;
    if let Err(e) = target::check_resolves_publicly(&new.url, state.webhook_policy).await {
        return Err(ApiError::Validation(vec![FieldError::new(
            "url",
            e.to_string(),
        )]));
    }
    if store::count_live(&state.pool, user.user_id).await? >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_ENDPOINTS} webhook endpoints per user; delete one first"
        )));
    }
    let secret = signing::new_secret();
    let endpoint = store::insert(&state.pool, user.user_id, &new, &secret).await?;
    tracing::info!(user_id = %user.user_id, endpoint_id = %endpoint.id, "webhook endpoint created");
    let location = format!("/webhooks/{}", endpoint.id);
    let mut resp = (
        StatusCode::CREATED,
        Json(CreatedWebhookEndpoint { endpoint, secret }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The caller's webhook endpoints, newest first (never their secrets).
#[utoipa::path(
    get, path = "/webhooks", tag = "webhooks",
    responses(
        (status = 200, body = WebhookEndpointList),
        (status = 403, description = "Called with a personal access token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    user: SessionUser,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    Ok(Json(WebhookEndpointList {
        items: store::list(&state.pool, user.user_id).await?,
    }))
}

/// Delete an endpoint; deliveries still pending for it are cancelled.
#[utoipa::path(
    delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Called with a personal access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, deleted, or another user's endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    user: SessionUser,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    if !store::delete(&state.pool, user.user_id, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Turn an endpoint that was disabled after failing continuously back on.
#[utoipa::path(
    post, path = "/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 403, description = "Called with a personal access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, deleted, or another user's endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn enable_endpoint(
    State(state): State<AppState>,
    user: SessionUser,
    PathId(id): PathId,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    store::enable(&state.pool, user.user_id, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Replace the endpoint's secret (body `{}` for the defaults). For `overlap_seconds`
/// (default 86400, at most 604800)
/// every delivery is signed with the new and the previous secret, so the receiver can
/// switch without losing one.
#[utoipa::path(
    post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    request_body = RotateSecretRequest,
    responses(
        (status = 200, description = "Rotated; `secret` is shown only in this answer", body = RotatedSecret),
        (status = 403, description = "Called with a personal access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, deleted, or another user's endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    user: SessionUser,
    PathId(id): PathId,
    body: JsonBody,
) -> Result<Json<RotatedSecret>, ApiError> {
    let overlap = validate_rotate(Some(&body.value)).map_err(ApiError::Validation)?;
    let secret = signing::new_secret();
    let until = store::rotate(&state.pool, user.user_id, id, &secret, overlap)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(user_id = %user.user_id, endpoint_id = %id, "webhook secret rotated");
    Ok(Json(RotatedSecret {
        secret,
        previous_secret_until: until,
    }))
}

/// Send a `webhook.test` event to the endpoint now (with the same retries as any
/// delivery); its attempts show in `GET /webhooks/{id}/deliveries`.
#[utoipa::path(
    post, path = "/webhooks/{id}/test", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 202, description = "Queued", body = TestDeliveryQueued),
        (status = 403, description = "Called with a personal access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, deleted, or another user's endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn send_test(
    State(state): State<AppState>,
    user: SessionUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let delivery_id = store::queue_test(&state.pool, user.user_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestDeliveryQueued {
            delivery_id,
            webhook_id: webhook::message_id(delivery_id),
        }),
    )
        .into_response())
}

/// The endpoint's newest deliveries (at most 100), each with every attempt: status,
/// latency, error.
#[utoipa::path(
    get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, body = DeliveryList),
        (status = 403, description = "Called with a personal access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, deleted, or another user's endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    user: SessionUser,
    PathId(id): PathId,
) -> Result<Json<DeliveryList>, ApiError> {
    store::deliveries(&state.pool, user.user_id, id)
        .await?
        .map(|items| Json(DeliveryList { items }))
        .ok_or(ApiError::NotFound)
}

/// Body of `POST /webhooks` (documentation; the exact schema is in [`crate::openapi`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateWebhookRequest {
    url: String,
    description: Option<String>,
}

/// Body of `POST /webhooks/{id}/rotate-secret` (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RotateSecretRequest {
    overlap_seconds: Option<i64>,
}
