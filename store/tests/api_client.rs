//! The api_client example re-authenticates only when a token expired or was rejected, and keeps
//! its logins across a restart.

#[allow(dead_code)]
#[path = "../examples/api_client.rs"]
mod api_client;

use std::sync::Arc;

use api_client::{ApiClient, IdentityService};
use sessdb::ManualClock;

#[test]
fn logins_are_cached_across_restarts_and_renewed_only_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sessdb");
    let clock = ManualClock::at_ms(1_767_225_600_000);
    let identity = Arc::new(IdentityService::default());
    {
        let client = ApiClient::open(&path, clock.clone(), identity.clone()).unwrap();
        for _ in 0..5 {
            client
                .request("user:42/tenant:acme", "compute", "/servers")
                .unwrap();
            client.request("admin", "image", "/images").unwrap();
        }
    }
    assert_eq!(identity.logins(), 2, "one login per scope");

    let client = ApiClient::open(&path, clock.clone(), identity.clone()).unwrap();
    let req = client
        .request("user:42/tenant:acme", "compute", "/servers")
        .unwrap();
    assert_eq!(
        req,
        "GET https://compute.example.test/v2.1/servers (X-Auth-Token: tok-1-user:42/tenant:acme)"
    );
    assert_eq!(identity.logins(), 2, "still logged in after the restart");

    let token: String = client
        .session("admin")
        .unwrap()
        .get("token")
        .unwrap()
        .unwrap();
    identity.revoke(&token);
    client.request("admin", "compute", "/x").unwrap();
    client.request("admin", "compute", "/y").unwrap();
    assert_eq!(identity.logins(), 3, "a rejected token is renewed once");

    clock.advance(IdentityService::TOKEN_TTL - std::time::Duration::from_millis(1));
    client
        .request("user:42/tenant:acme", "compute", "/z")
        .unwrap();
    assert_eq!(
        identity.logins(),
        3,
        "not expired a millisecond before the deadline"
    );
    clock.advance(std::time::Duration::from_millis(1));
    client
        .request("user:42/tenant:acme", "compute", "/z")
        .unwrap();
    assert_eq!(identity.logins(), 4, "renewed when the token expired");
}
