//! The OpenAPI 3.1 document served at `GET /openapi.json`.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{audit, auth, problem, tasks};

#[derive(OpenApi)]
#[openapi(
    info(title = "Taskflow API", description = "Tasks with due dates, recurrence and reminders. Errors are application/problem+json."),
    paths(
        auth::signup,
        auth::login,
        tasks::handlers::create_task,
        tasks::handlers::list_tasks,
        tasks::handlers::get_task,
        tasks::handlers::patch_task,
        tasks::handlers::delete_task,
        tasks::handlers::complete_task,
        tasks::handlers::reopen_task,
        audit::handlers::task_history,
        audit::handlers::list_audit,
    ),
    components(schemas(
        problem::Problem,
        problem::FieldError,
        auth::Credentials,
        auth::UserResponse,
        auth::TokenResponse,
        tasks::model::TaskResponse,
        tasks::model::TaskPage,
        tasks::model::CreateTaskRequest,
        tasks::model::PatchTaskRequest,
        tasks::model::RecurrenceBody,
        tasks::model::ReminderBody,
        audit::model::Change,
        audit::model::AuditEventResponse,
        audit::model::TaskHistory,
        audit::model::AuditPage,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "tasks"), (name = "audit", description = "Task history and activity, read from the audit log"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
