//! `POST /tokens`, `GET /tokens`, `DELETE /tokens/{id}`: a signed-in user
//! (login JWT) manages their personal access tokens.

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::{
    model::{
        validate_create, AccessToken, AccessTokenList, CreatedAccessToken, TokenSecret,
        MAX_LIVE_TOKENS,
    },
    store::{self, TokenStoreError},
};
use crate::{
    app::AppState,
    auth::SessionUser,
    extract::{JsonBody, PathId},
    problem::{ApiError, Problem},
};

impl From<TokenStoreError> for ApiError {
    fn from(e: TokenStoreError) -> Self {
        match e {
            TokenStoreError::Sql(e) => ApiError::from(e),
            corrupt @ TokenStoreError::Corrupt { .. } => ApiError::Internal(corrupt.to_string()),
        }
    }
}

/// Create a personal access token. The answer holds the token itself, the
/// only time it is shown.
#[utoipa::path(
    post, path = "/tokens", tag = "tokens",
    request_body = CreateAccessTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only in this answer", body = CreatedAccessToken,
         headers(("Location" = String))),
        (status = 403, description = "Called with a personal access token: managing tokens needs the login token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user already holds the most live tokens allowed (100); revoke one first", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_token(
    State(state): State<AppState>,
    user: SessionUser,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let new = validate_create(&body.value).map_err(ApiError::Validation)?;
    if store::count_live(&state.pool, user.user_id).await? >= MAX_LIVE_TOKENS {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_LIVE_TOKENS} live tokens per user; revoke one first"
        )));
    }
    let secret = TokenSecret::generate();
    let stored = store::insert(&state.pool, user.user_id, &new, &secret).await?;
    tracing::info!(user_id = %user.user_id, token_id = %stored.id, "personal access token created");
    let listed = AccessToken::from(&stored);
    let body = CreatedAccessToken {
        id: listed.id,
        name: listed.name,
        scopes: listed.scopes,
        created_at: listed.created_at,
        expires_at: listed.expires_at,
        last_used_at: listed.last_used_at,
        token: secret.plain,
    };
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/tokens/{}", stored.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// List the caller's live personal access tokens, newest first (never
/// their secrets).
#[utoipa::path(
    get, path = "/tokens", tag = "tokens",
    responses(
        (status = 200, body = AccessTokenList),
        (status = 403, description = "Called with a personal access token: managing tokens needs the login token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    user: SessionUser,
) -> Result<Json<AccessTokenList>, ApiError> {
    let tokens = store::list_live(&state.pool, user.user_id).await?;
    Ok(Json(AccessTokenList {
        items: tokens.iter().map(AccessToken::from).collect(),
    }))
}

/// Revoke a personal access token: the next request made with it is a 401.
#[utoipa::path(
    delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = uuid::Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Called with a personal access token: managing tokens needs the login token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, already revoked, or another user's token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    user: SessionUser,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    if !store::revoke(&state.pool, user.user_id, id).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(user_id = %user.user_id, token_id = %id, "personal access token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /tokens` (documentation; the exact schema is written in
/// [`crate::openapi`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateAccessTokenRequest {
    name: String,
    scopes: Vec<String>,
    expires_in_days: Option<i64>,
}
