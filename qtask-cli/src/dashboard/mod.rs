//! `qtask dashboard`: a web page over the operators' calls, a small JSON API under
//! /api, and Prometheus series under /metrics.
//!
//! Loopback by default. Any other address needs a token or basic-auth credentials.
//! Every request is checked by [`guard::check`]: credentials when configured, the Host
//! header on loopback (against DNS rebinding), and for write actions (POST) a same-origin
//! Origin header and the page's CSRF token header, which a cross-site page cannot send.

mod counts;
mod guard;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use qtask_core::admin::{parse_status, TaskFilter};
use qtask_core::store::redact;
use qtask_core::{Client, Error, Result};
use serde::Deserialize;
use serde_json::json;

use crate::args::DashboardArgs;
use guard::Guard;

const PAGE: &str = include_str!("page.html");

#[derive(Clone)]
struct App {
    client: Client,
    guard: Arc<Guard>,
    metrics: Arc<metrics::Exporter>,
    counts: Arc<counts::Cache>,
}

/// Serves until Ctrl-C (or SIGTERM). Refuses to start on a non-loopback address
/// without credentials (exit code 2).
pub async fn serve(client: Client, args: DashboardArgs) -> Result<u8> {
    let guard = Arc::new(Guard::new(&args)?);
    let exporter = Arc::new(metrics::Exporter::install()?);
    let counts = Arc::new(counts::Cache::default());
    counts.spawn_refresher(client.clone());
    let app = App {
        client,
        guard: guard.clone(),
        metrics: exporter,
        counts,
    };
    let router = Router::new()
        .route("/", get(page))
        .route("/login", get(guard::login))
        .route("/metrics", get(metrics_text))
        .route("/api/overview", get(overview))
        .route("/api/tasks", get(list_tasks))
        .route("/api/tasks/{id}", get(get_task))
        .route("/api/tasks/{id}/{action}", post(task_action))
        .route("/api/queues/{queue}/{action}", post(queue_action))
        .layer(middleware::from_fn_with_state(guard.clone(), guard::check))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot listen on {}: {e}", args.listen)))?;
    let bound: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listening address: {e}")))?;
    guard.set_bound(bound);
    // Scripts (and the browser test) read this line to find the port.
    crate::output::line(format!("qtask dashboard listening on http://{bound}"));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| Error::Internal(format!("dashboard server: {e}")))?;
    Ok(0)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// An engine error as an HTTP answer; the message never holds a password (URLs are redacted).
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::InvalidState(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

async fn page(State(app): State<App>) -> Response {
    let html = PAGE.replace("{{CSRF}}", app.guard.csrf());
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(html),
    )
        .into_response()
}

async fn overview(State(app): State<App>) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let c = &app.client;
    let counts = app.counts.get(c).await?;
    let config = c.config();
    app.metrics.observe_request("overview", started);
    Ok(Json(json!({
        "namespace": config.namespace,
        "db": redact(&config.db),
        "queue": redact(&config.queue),
        "table": c.store().table(),
        "queues": counts.queues,
        "rates": counts.rates,
        "stats": counts.stats,
        "counted_at": counts.taken_at,
        "counting_ms": counts.took_ms,
    })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    queue: Option<String>,
    name: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list_tasks(
    State(app): State<App>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let empty_is_none = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let filter = TaskFilter {
        status: empty_is_none(q.status).as_deref().map(parse_status).transpose()?,
        queue: empty_is_none(q.queue),
        name: empty_is_none(q.name),
        ..TaskFilter::default()
    };
    let page = app
        .client
        .list_tasks(&filter, q.before, q.limit.unwrap_or(50))
        .await?;
    app.metrics.observe_request("tasks", started);
    Ok(Json(json!(page)))
}

async fn get_task(State(app): State<App>, Path(id): Path<i64>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!(app.client.get(id).await?)))
}

async fn task_action(
    State(app): State<App>,
    Path((id, action)): Path<(i64, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    match action.as_str() {
        "retry" => app.client.retry(id).await?,
        "cancel" => app.client.cancel(id).await?,
        other => return Err(Error::InvalidArgument(format!("unknown task action {other:?}")).into()),
    }
    app.counts.mark_stale();
    app.metrics.count_action(&action);
    tracing::info!(task_id = id, action = %action, "qtask dashboard: task action");
    Ok(Json(json!(app.client.get(id).await?)))
}

async fn queue_action(
    State(app): State<App>,
    Path((queue, action)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    match action.as_str() {
        "pause" => app.client.pause_queue(&queue).await?,
        "resume" => app.client.resume_queue(&queue).await?,
        other => return Err(Error::InvalidArgument(format!("unknown queue action {other:?}")).into()),
    }
    app.counts.mark_stale();
    app.metrics.count_action(&action);
    Ok(Json(json!({ "queue": queue, "paused": action == "pause" })))
}

async fn metrics_text(State(app): State<App>) -> ApiResult<Response> {
    let counts = app.counts.get(&app.client).await?;
    let text = app.metrics.render(&counts);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}
