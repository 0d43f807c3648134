//! An API client that keeps its logins in named sessions, in the manner of an OpenStack SDK
//! session or a requests-style HTTP session: one session per scope (`user:42/tenant:acme`)
//! holding the token, the service endpoints, cookies and default headers; the token's expiry is
//! the session's absolute deadline; it re-authenticates only when the token expired or the
//! service rejected it, and it is still logged in after the process restarts.
//!
//! No network: the identity service is simulated and counts its logins.
//!
//! Run it: `cargo run -p sessdb --example api_client`

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessdb::{ManualClock, Session, Store};

/// What the identity service hands out on login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Login {
    pub token: String,
    pub endpoints: BTreeMap<String, String>,
    pub cookies: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
}

/// A stand-in for a remote identity service (Keystone, an OAuth server...).
#[derive(Debug, Default)]
pub struct IdentityService {
    logins: AtomicUsize,
    revoked: Mutex<HashSet<String>>,
}

impl IdentityService {
    /// Token lifetime granted by the service.
    pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

    pub fn login(&self, scope: &str) -> Result<Login, std::io::Error> {
        let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let mut endpoints = BTreeMap::new();
        endpoints.insert("compute".into(), "https://compute.example.test/v2.1".into());
        endpoints.insert("image".into(), "https://image.example.test/v2".into());
        let mut cookies = BTreeMap::new();
        cookies.insert("lb".into(), format!("node-{}", n % 3));
        let mut headers = BTreeMap::new();
        headers.insert("X-Auth-Token".into(), format!("tok-{n}-{scope}"));
        headers.insert("User-Agent".into(), "sessdb-example/1".into());
        Ok(Login {
            token: format!("tok-{n}-{scope}"),
            endpoints,
            cookies,
            headers,
        })
    }

    /// Whether the service still accepts `token`.
    pub fn accepts(&self, token: &str) -> bool {
        !self
            .revoked
            .lock()
            .map(|r| r.contains(token))
            .unwrap_or(true)
    }

    pub fn revoke(&self, token: &str) {
        if let Ok(mut r) = self.revoked.lock() {
            r.insert(token.to_string());
        }
    }

    /// How many logins the service has performed.
    pub fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }
}

/// The API client: logins cached in a sessdb store, one named session per scope.
#[derive(Debug)]
pub struct ApiClient {
    store: Store,
    identity: Arc<IdentityService>,
}

impl ApiClient {
    pub fn open(
        path: &Path,
        clock: ManualClock,
        identity: Arc<IdentityService>,
    ) -> sessdb::Result<Self> {
        // Named sessions live until their token expires, however idle.
        let store = Store::builder()
            .clock(clock)
            .idle_timeout(Duration::from_secs(30 * 24 * 3600))
            .durability(sessdb::Durability::Immediate)
            .open(path)?;
        Ok(ApiClient { store, identity })
    }

    /// The session of `scope`: the cached login if the service still accepts its token,
    /// otherwise a fresh login.
    pub fn session(&self, scope: &str) -> sessdb::Result<Session> {
        let identity = &self.identity;
        self.store.get_or_create_validated(
            scope,
            |s| {
                s.get::<String>("token")
                    .ok()
                    .flatten()
                    .is_some_and(|t| identity.accepts(&t))
            },
            |s| {
                let login = identity.login(scope)?;
                s.insert("token", &login.token)?;
                s.insert("endpoints", &login.endpoints)?;
                s.insert("cookies", &login.cookies)?;
                s.insert("headers", &login.headers)?;
                s.set_absolute_deadline(s.created() + IdentityService::TOKEN_TTL);
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            },
        )
    }

    /// Describes the request the client would send: the endpoint and its default headers.
    pub fn request(&self, scope: &str, service: &str, path: &str) -> sessdb::Result<String> {
        let s = self.session(scope)?;
        let endpoints: BTreeMap<String, String> = s.get("endpoints")?.unwrap_or_default();
        let headers: BTreeMap<String, String> = s.get("headers")?.unwrap_or_default();
        let base = endpoints.get(service).cloned().unwrap_or_default();
        let token = headers.get("X-Auth-Token").cloned().unwrap_or_default();
        Ok(format!("GET {base}{path} (X-Auth-Token: {token})"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("api-client.sessdb");
    let clock = ManualClock::at(time::OffsetDateTime::now_utc());
    let identity = Arc::new(IdentityService::default());

    println!("first run: two scopes, three requests each");
    {
        let client = ApiClient::open(&path, clock.clone(), identity.clone())?;
        for scope in ["user:42/tenant:acme", "admin"] {
            for p in ["/servers", "/flavors", "/images"] {
                println!("  {scope}: {}", client.request(scope, "compute", p)?);
            }
        }
        println!("  logins so far: {}", identity.logins());
    }

    println!("second run (the process restarted): still logged in");
    let client = ApiClient::open(&path, clock.clone(), identity.clone())?;
    println!(
        "  {}",
        client.request("user:42/tenant:acme", "image", "/images")?
    );
    println!("  logins so far: {}", identity.logins());

    println!("the service revokes the admin token: one re-login");
    let token: String = client.session("admin")?.get("token")?.unwrap_or_default();
    identity.revoke(&token);
    println!("  {}", client.request("admin", "compute", "/servers")?);
    println!("  logins so far: {}", identity.logins());

    println!("an hour later every token has expired: one re-login per scope on next use");
    clock.advance(IdentityService::TOKEN_TTL);
    println!(
        "  {}",
        client.request("user:42/tenant:acme", "compute", "/servers")?
    );
    println!("  {}", client.request("admin", "compute", "/servers")?);
    println!("  logins so far: {}", identity.logins());
    Ok(())
}
