//! The demo application's routes and pages. `main.rs` serves them; the end-to-end test
//! (`tests/axum_app.rs`) serves the same router on a loopback port.

use std::fmt::Write as _;
use std::path::Path;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sessdb::{Handle, SessionInfo, Store};
use time::format_description::well_known::Rfc3339;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sessdb::{session_id, SessdbStore};

/// The session key the login writes the user name under; it is also each session's principal.
pub const USER_KEY: &str = "user_id";
/// The session key of the counter page.
pub const COUNTER_KEY: &str = "counter";
/// The session cookie's name.
pub const COOKIE_NAME: &str = "session";
/// The demo's only password (there is no user database).
pub const DEMO_PASSWORD: &str = "demo";

#[derive(Clone)]
struct AppState {
    store: Store,
}

/// Opens the store as the application runs it: a reaper purges expired sessions every minute,
/// and the admin socket (`admin.sock` in the database folder, owner-only) lets
/// `sessctl --db PATH` and `sessctl --db PATH tui` reach the sessions while the application
/// holds the database.
///
/// # Errors
/// As for [`sessdb::Builder::open`].
pub fn open_store(path: &Path) -> sessdb::Result<Store> {
    Store::builder()
        .reap_every(std::time::Duration::from_secs(60))
        .admin_socket_default()
        .open(path)
}

/// The application on `store`: sessions idle for 30 minutes expire.
pub fn app(store: Store) -> Router {
    let sessions =
        SessionManagerLayer::new(SessdbStore::new(store.clone()).with_principal_key(USER_KEY))
            .with_name(COOKIE_NAME)
            // The demo serves plain HTTP on loopback; behind TLS, keep the default (`Secure`).
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/counter", get(counter))
        .route("/sessions", get(my_sessions))
        .route("/sessions/end", post(end_session))
        .route("/sessions/end-others", post(end_other_sessions))
        .route("/logout", post(logout))
        .with_state(AppState { store })
        .layer(sessions)
}

/// Any failure: logged on stderr, shown as a plain 500 (no internals to the client).
struct AppError(String);

impl<E: std::fmt::Display> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        eprintln!("axum_app: {}", self.0);
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    }
}

type Page = Result<Response, AppError>;

async fn user(session: &Session) -> Result<Option<String>, AppError> {
    Ok(session.get::<String>(USER_KEY).await?)
}

/// Runs a synchronous store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> sessdb::Result<T> + Send + 'static,
) -> Result<T, AppError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

async fn home(session: Session) -> Page {
    let body = match user(&session).await? {
        Some(name) => format!(
            "<p>Signed in as <b>{}</b>.</p>\
             <p><a href=\"/counter\">Counter</a> · <a href=\"/sessions\">My sessions</a></p>\
             <form method=\"post\" action=\"/logout\"><button>Log out</button></form>",
            escape(&name)
        ),
        None => format!(
            "<form method=\"post\" action=\"/login\">\
             <label>User <input name=\"username\" autocomplete=\"username\"></label> \
             <label>Password <input name=\"password\" type=\"password\"></label> \
             <button>Log in</button></form>\
             <p>Demo: any user name, password <code>{DEMO_PASSWORD}</code>.</p>\
             <p><a href=\"/counter\">Counter</a></p>"
        ),
    };
    Ok(page("sessdb + axum", &body))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Page {
    let name = form.username.trim();
    let valid_name = !name.is_empty() && name.len() <= 64 && !name.contains('\0');
    if !valid_name || form.password != DEMO_PASSWORD {
        let body = "<p>Wrong user name or password.</p><p><a href=\"/\">Try again</a></p>";
        return Ok((StatusCode::UNAUTHORIZED, page("Log in", body)).into_response());
    }
    // A new id on login: a session id planted in the browser before is worthless after it.
    session.cycle_id().await?;
    session.insert(USER_KEY, name).await?;
    Ok(Redirect::to("/").into_response())
}

async fn counter(session: Session) -> Page {
    let n = session.get::<u64>(COUNTER_KEY).await?.unwrap_or(0) + 1;
    session.insert(COUNTER_KEY, n).await?;
    Ok(page(
        "Counter",
        &format!("<p>count: {n}</p><p><a href=\"/counter\">again</a> · <a href=\"/\">home</a></p>"),
    ))
}

async fn my_sessions(State(state): State<AppState>, session: Session) -> Page {
    let Some(name) = user(&session).await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let current = session.id().map(|id| session_id(&id).handle());
    let store = state.store.clone();
    let principal = name.clone();
    let sessions = blocking(move || store.sessions_of(&principal)).await?;
    let mut rows = String::new();
    for s in &sessions {
        let action = if Some(s.handle) == current {
            "this session".to_string()
        } else {
            format!(
                "<form method=\"post\" action=\"/sessions/end\">\
                 <input type=\"hidden\" name=\"handle\" value=\"{}\"><button>End</button></form>",
                s.handle
            )
        };
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            s.handle.short(),
            time_text(s.created),
            time_text(s.last_access),
            time_text(s.expires_at),
        );
    }
    let body = format!(
        "<p>{} session(s) of <b>{}</b>.</p>\
         <table><tr><th>handle</th><th>created</th><th>last active</th><th>expires</th><th></th></tr>\
         {rows}</table>\
         <form method=\"post\" action=\"/sessions/end-others\"><button>End all other sessions</button></form>\
         <p><a href=\"/\">home</a></p>",
        sessions.len(),
        escape(&name)
    );
    Ok(page("My sessions", &body))
}

#[derive(Deserialize)]
struct End {
    handle: String,
}

async fn end_session(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<End>,
) -> Page {
    let Some(name) = user(&session).await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let Ok(handle) = form.handle.parse::<Handle>() else {
        return Ok((StatusCode::BAD_REQUEST, "not a session handle").into_response());
    };
    let store = state.store.clone();
    // Only the user's own sessions: a handle of someone else's is "not found".
    let ended = blocking(move || {
        let own = store.sessions_of(&name)?;
        if own.iter().any(|s: &SessionInfo| s.handle == handle) {
            store.invalidate_handle(&handle)
        } else {
            Ok(false)
        }
    })
    .await?;
    if !ended {
        return Ok((StatusCode::NOT_FOUND, "no such session of yours").into_response());
    }
    Ok(Redirect::to("/sessions").into_response())
}

/// "Sign out my other devices" (after a password change, say): every session of the user
/// but this one ends, in one step that a login racing it cannot slip through half-done.
async fn end_other_sessions(State(state): State<AppState>, session: Session) -> Page {
    let (Some(name), Some(id)) = (user(&session).await?, session.id()) else {
        return Ok(Redirect::to("/").into_response());
    };
    let store = state.store.clone();
    blocking(move || store.invalidate_principal_except(&name, &session_id(&id))).await?;
    Ok(Redirect::to("/sessions").into_response())
}

async fn logout(session: Session) -> Page {
    session.flush().await?;
    Ok(Redirect::to("/").into_response())
}

fn page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
    .into_response()
}

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
