//! The example application end to end: served on a loopback port and driven by a real HTTP
//! client. Login rotates the id, the session survives a restart, "my sessions" ends another
//! session, an operator logs a principal out everywhere through the admin socket, and no
//! session id reaches the disk.

#[path = "../examples/axum_app/app.rs"]
mod app;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sessdb::{Admin, RemoteAdmin, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_sessions::session::Id;
use tower_sessions_sessdb::session_id;

/// The application serving on 127.0.0.1, with its store opened as `main.rs` opens it.
struct Running {
    addr: SocketAddr,
    store: Store,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Running {
    async fn start(db: &Path) -> Running {
        let store = app::open_store(db).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app::app(store.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Running {
            addr,
            store,
            stop,
            server,
        }
    }

    /// Stops serving and drops every store handle: the database is flushed and released.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap();
        drop(self.store);
    }
}

struct Reply {
    status: StatusCode,
    /// The session cookie's new value, if the reply set one ("" when it removes it).
    cookie: Option<String>,
    location: Option<String>,
    body: String,
}

/// A plain HTTP/1 client; no connection pooling, so stopping the server never waits on it.
fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(c) = cookie {
        req = req.header(COOKIE, format!("{}={c}", app::COOKIE_NAME));
    }
    if form.is_some() {
        req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let body = Full::new(Bytes::from(form.unwrap_or("").to_string()));
    let res = client().request(req.body(body).unwrap()).await.unwrap();
    let prefix = format!("{}=", app::COOKIE_NAME);
    let cookie = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .map(|v| v.split(';').next().unwrap_or("").to_string());
    let location = res
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        cookie,
        location,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    request(addr, Method::GET, path, cookie, None).await
}

async fn post(addr: SocketAddr, path: &str, cookie: Option<&str>, form: &str) -> Reply {
    request(addr, Method::POST, path, cookie, Some(form)).await
}

/// Logs in from a browser holding `cookie` (or none); returns the new session cookie.
async fn login(addr: SocketAddr, cookie: Option<&str>, user: &str) -> String {
    let form = format!("username={user}&password={}", app::DEMO_PASSWORD);
    let reply = post(addr, "/login", cookie, &form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location.as_deref(), Some("/"));
    reply.cookie.expect("login sets the session cookie")
}

/// Who the home page says is signed in.
async fn signed_in_as(addr: SocketAddr, cookie: &str) -> Option<String> {
    let body = get(addr, "/", Some(cookie)).await.body;
    let start = body.find("Signed in as <b>")? + "Signed in as <b>".len();
    let end = body[start..].find("</b>")? + start;
    Some(body[start..end].to_string())
}

fn handle_of(cookie: &str) -> sessdb::Handle {
    session_id(&cookie.parse::<Id>().unwrap()).handle()
}

/// Every regular file under `dir` (a socket, if one were left, has no bytes to read).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out
}

/// Whether `needle` occurs in any file under `dir`.
fn folder_contains(dir: &Path, needle: &[u8]) -> bool {
    files_under(dir).iter().any(|f| {
        std::fs::read(f)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    })
}

// One thread, so that `Running::stop` returns only once every connection has let go of the
// store. axum's `serve` finishes when each connection task has dropped its close signal, which
// the task does just before it drops the connection (and with it the router and its store
// handle). On a multi-thread runtime the test could run on while another worker was still
// dropping that last handle, and find the admin socket not yet removed (it failed so twice).
// On one thread the task drops everything before `serve` is polled again.
#[tokio::test(flavor = "current_thread")]
async fn the_example_app_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sessdb");
    let running = Running::start(&db).await;
    let addr = running.addr;

    // Anonymous: the login form, no cookie until the session holds something.
    let home = get(addr, "/", None).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("action=\"/login\""), "{}", home.body);
    assert_eq!(home.cookie, None);

    // An anonymous counter session, then login: the id rotates, the data stays.
    let counted = get(addr, "/counter", None).await;
    assert!(counted.body.contains("count: 1"), "{}", counted.body);
    let anonymous = counted.cookie.unwrap();
    let wrong = post(
        addr,
        "/login",
        Some(&anonymous),
        "username=alice&password=nope",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let alice = login(addr, Some(&anonymous), "alice").await;
    assert_ne!(alice, anonymous, "login rotates the session id");
    assert_eq!(signed_in_as(addr, &alice).await.as_deref(), Some("alice"));
    assert_eq!(
        signed_in_as(addr, &anonymous).await,
        None,
        "the old id is dead"
    );
    let counted = get(addr, "/counter", Some(&alice)).await;
    assert!(counted.body.contains("count: 2"), "{}", counted.body);

    // A second browser of alice's, and bob.
    let alice_phone = login(addr, None, "alice").await;
    let bob = login(addr, None, "bob").await;
    let mine = get(addr, "/sessions", Some(&alice)).await.body;
    assert!(mine.contains("2 session(s) of <b>alice</b>"), "{mine}");
    assert!(mine.contains(&format!("value=\"{}\"", handle_of(&alice_phone))));
    assert!(!mine.contains(&format!("value=\"{}\"", handle_of(&alice))));
    assert!(
        !mine.contains(&handle_of(&bob).short()),
        "only alice's sessions"
    );

    // Bob cannot end alice's sessions; alice ends her phone's.
    let form = format!("handle={}", handle_of(&alice_phone));
    let refused = post(addr, "/sessions/end", Some(&bob), &form).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(
        signed_in_as(addr, &alice_phone).await.as_deref(),
        Some("alice")
    );
    let ended = post(addr, "/sessions/end", Some(&alice), &form).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in_as(addr, &alice_phone).await, None);
    let mine = get(addr, "/sessions", Some(&alice)).await.body;
    assert!(mine.contains("1 session(s) of <b>alice</b>"), "{mine}");

    // Two more browsers of alice's; from the first she ends all the others.
    let laptop = login(addr, None, "alice").await;
    let tablet = login(addr, None, "alice").await;
    let mine = get(addr, "/sessions", Some(&alice)).await.body;
    assert!(mine.contains("3 session(s) of <b>alice</b>"), "{mine}");
    assert!(mine.contains("action=\"/sessions/end-others\""), "{mine}");
    let ended = post(addr, "/sessions/end-others", Some(&alice), "").await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in_as(addr, &laptop).await, None);
    assert_eq!(signed_in_as(addr, &tablet).await, None);
    assert_eq!(signed_in_as(addr, &alice).await.as_deref(), Some("alice"));
    assert_eq!(signed_in_as(addr, &bob).await.as_deref(), Some("bob"));

    // Restart: sessions and their data survive.
    running.stop().await;
    let running = Running::start(&db).await;
    let addr = running.addr;
    assert_eq!(signed_in_as(addr, &alice).await.as_deref(), Some("alice"));
    assert_eq!(signed_in_as(addr, &bob).await.as_deref(), Some("bob"));
    let counted = get(addr, "/counter", Some(&alice)).await;
    assert!(counted.body.contains("count: 3"), "{}", counted.body);

    // The operator logs alice out everywhere: what `sessctl --db DB invalidate --principal
    // alice` does while the application holds the database, through its admin socket.
    let socket = RemoteAdmin::default_socket(&db);
    assert_eq!(running.store.admin_socket_path(), Some(socket.as_path()));
    let removed = tokio::task::spawn_blocking(move || {
        let admin = RemoteAdmin::connect(&socket)?;
        let listed = admin.stats()?.live;
        admin.invalidate_principal("alice").map(|n| (listed, n))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        removed,
        (2, 1),
        "alice's and bob's sessions live; alice's one removed"
    );
    assert_eq!(signed_in_as(addr, &alice).await, None);
    assert_eq!(signed_in_as(addr, &bob).await.as_deref(), Some("bob"));

    // Bob logs out: the cookie is removed and the session is gone.
    let out = post(addr, "/logout", Some(&bob), "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.cookie.as_deref(), Some(""));
    assert_eq!(signed_in_as(addr, &bob).await, None);

    // A live session to look for on disk, then everything flushed and released.
    let carol = login(addr, None, "carol").await;
    let carol_handle = handle_of(&carol);
    running.stop().await;
    assert!(!RemoteAdmin::default_socket(&db).exists(), "socket removed");

    // No session id reaches the disk: not as cookie text, not as raw bytes, not as a UUID.
    // The scan does read the data (it finds the principal and the storage handle).
    assert!(folder_contains(&db, b"carol"));
    assert!(folder_contains(&db, carol_handle.as_bytes()));
    for cookie in [&anonymous, &alice, &alice_phone, &bob, &carol] {
        let id = cookie.parse::<Id>().unwrap();
        assert!(
            !folder_contains(&db, cookie.as_bytes()),
            "cookie text on disk"
        );
        assert!(!folder_contains(&db, &id.0.to_le_bytes()), "raw id on disk");
        let uuid = session_id(&id).to_string();
        assert!(!folder_contains(&db, uuid.as_bytes()), "id as UUID on disk");
    }
}
