//! The benchmark's sessions and timeline: realistic content (principal, label, remote address,
//! user agent, ~300 B of nested data), the same for every engine, and the moments at which each
//! workload runs on the store's clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Sessions are created over this window of (simulated) time, oldest first.
pub const CREATION_SPAN_MS: i64 = 10 * 60 * 1000;
/// The idle timeout of ordinary sessions (sessdb's default).
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// The idle timeout of the sessions that the purge workload finds expired.
pub const VICTIM_IDLE_MS: i64 = 5 * 60 * 1000;
/// The absolute lifetime (sessdb's default).
pub const ABSOLUTE_MS: i64 = 24 * 3600 * 1000;
/// The access order of the untimed warm-up pass that precedes every engine's timed load pass
/// (`live_order(1)`): another random sample of the same size.
pub const WARM_UP_SALT: u64 = 6;
/// The note of every engine's load-hit row.
pub const WARM_UP_NOTE: &str =
    "fresh process right after populate; untimed warm-up pass over another sample";

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
];

/// What the benchmark does to a store of `n` sessions, and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub n: usize,
    pub seed: u64,
    /// When the first session is created (ms since the epoch); the real time at the start.
    pub t0: i64,
    /// Every `victim_stride`-th session has a short idle timeout and is expired at purge time.
    pub victim_stride: usize,
    /// Operations of the load and save workloads.
    pub sample: usize,
    /// Durable saves with one saver, and per thread with eight.
    pub durable_one: usize,
    pub durable_per_thread: usize,
}

/// The sessions' content, as an application would set it.
#[derive(Debug, Clone)]
pub struct Content {
    pub principal: String,
    pub label: Option<String>,
    pub remote_addr: String,
    pub user_agent: &'static str,
    pub data: Map<String, Value>,
}

/// What the peers store: the same fields in one postcard blob (raw sled, SQLite, Redis).
#[derive(Debug, Serialize)]
struct PeerRecord<'a> {
    expires_at: i64,
    version: u64,
    created: i64,
    last_access: i64,
    idle_timeout_ms: i64,
    absolute_deadline: i64,
    principal: &'a str,
    label: Option<&'a str>,
    remote_addr: &'a str,
    user_agent: &'a str,
    /// The data as JSON, which is what peers' session layers store.
    data: &'a [u8],
}

impl Plan {
    /// The plan of the examples in `bench/examples`: a fixed seed and start, one session in
    /// `victim_stride` expiring before purge, and no timed samples of their own.
    #[allow(dead_code)] // used by the examples, which include this file by path
    pub fn for_examples(n: usize, victim_stride: usize) -> Plan {
        Plan {
            n,
            seed: 42,
            t0: 1_780_000_000_000,
            victim_stride,
            sample: 1,
            durable_one: 1,
            durable_per_thread: 1,
        }
    }

    pub fn is_victim(&self, i: usize) -> bool {
        i % self.victim_stride == 0
    }

    pub fn victims(&self) -> usize {
        self.n.div_ceil(self.victim_stride)
    }

    pub fn created(&self, i: usize) -> i64 {
        self.t0 + (i as i64) * CREATION_SPAN_MS / (self.n.max(1) as i64)
    }

    pub fn idle_ms(&self, i: usize) -> i64 {
        if self.is_victim(i) {
            VICTIM_IDLE_MS
        } else {
            IDLE_MS
        }
    }

    pub fn idle(&self, i: usize) -> Duration {
        Duration::from_millis(self.idle_ms(i) as u64)
    }

    /// The load and save workloads (and the unmodified save, 20 s later).
    pub fn t_work(&self) -> i64 {
        self.t0 + CREATION_SPAN_MS + 10_000
    }

    pub fn t_unmodified(&self) -> i64 {
        self.t_work() + 20_000
    }

    /// Every victim is expired (created by t0 + span, idle 5 min), no other session is.
    pub fn t_purge(&self) -> i64 {
        self.t0 + CREATION_SPAN_MS + VICTIM_IDLE_MS + 60_000
    }

    pub fn t_after(&self) -> i64 {
        self.t_purge() + 10_000
    }

    /// The indices of the non-victim sessions in a seeded random order.
    pub fn live_order(&self, salt: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.n).filter(|&i| !self.is_victim(i)).collect();
        fastrand::Rng::with_seed(self.seed ^ salt).shuffle(&mut order);
        order
    }

    /// The 16-byte key a peer stores session `i` under (random, like sessdb's hashed ids).
    pub fn peer_key(&self, i: usize) -> [u8; 16] {
        let v = fastrand::Rng::with_seed(self.seed.wrapping_mul(31) ^ (i as u64)).u128(..);
        v.to_be_bytes()
    }

    pub fn content(&self, i: usize) -> Content {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ 0x5e55 ^ ((i as u64) << 8));
        let users = (self.n / 4).max(1);
        let csrf: String = std::iter::repeat_with(|| rng.alphanumeric())
            .take(43)
            .collect();
        let cart: Vec<Value> = (0..i % 3 + 1)
            .map(|k| json!({"sku": format!("SKU-{:05}", (i * 7 + k * 13) % 100_000), "qty": k + 1, "price_cents": 499 + (i + k) % 5000}))
            .collect();
        let mut data = Map::new();
        data.insert("csrf".into(), json!(csrf));
        data.insert("cart".into(), json!(cart));
        data.insert(
            "prefs".into(),
            json!({"theme": if i % 2 == 0 { "dark" } else { "light" }, "lang": "en-GB", "tz": "Europe/Berlin"}),
        );
        data.insert("roles".into(), json!(["reader", "editor"]));
        data.insert(
            "last_page".into(),
            json!(format!("/orders/{i}?tab=details")),
        );
        data.insert("visits".into(), json!(i % 100));
        data.insert("flash".into(), Value::Null);
        Content {
            principal: format!("user{}@example.com", i % users),
            label: (i % 20 == 0).then(|| format!("api-client/{i}")),
            remote_addr: if i % 5 == 0 {
                format!("2001:db8::{:x}", i % 65_536)
            } else {
                format!("203.0.{}.{}", (i / 256) % 256, i % 256)
            },
            user_agent: USER_AGENTS[i % USER_AGENTS.len()],
            data,
        }
    }

    /// Session `i`'s content after the save workloads' modification of `round`.
    pub fn modified(&self, i: usize, round: u64) -> Content {
        let mut c = self.content(i);
        self.modify(&mut c, i, round);
        c
    }

    /// The modification the save workloads make: one more visit, another page.
    pub fn modify(&self, content: &mut Content, i: usize, round: u64) {
        for (key, value) in self.modification(content.data.get("visits"), i, round) {
            content.data.insert(key.into(), value);
        }
    }

    /// The values [`Plan::modify`] sets, given the current visit count: for data held in
    /// another map type (the tower-sessions rows' `Record::data`).
    pub fn modification(
        &self,
        visits: Option<&Value>,
        i: usize,
        round: u64,
    ) -> [(&'static str, Value); 2] {
        let visits = visits.and_then(Value::as_u64).unwrap_or(0);
        [
            ("visits", json!(visits + 1)),
            (
                "last_page",
                json!(format!("/orders/{i}?tab=items&page={round}")),
            ),
        ]
    }

    /// The blob a peer stores for session `i` last accessed at `at`.
    pub fn peer_value(&self, i: usize, content: &Content, at: i64, version: u64) -> Vec<u8> {
        let data = serde_json::to_vec(&content.data).unwrap_or_default();
        let created = self.created(i);
        let record = PeerRecord {
            expires_at: self.expires_at(i, at),
            version,
            created,
            last_access: at,
            idle_timeout_ms: self.idle_ms(i),
            absolute_deadline: created + ABSOLUTE_MS,
            principal: &content.principal,
            label: content.label.as_deref(),
            remote_addr: &content.remote_addr,
            user_agent: content.user_agent,
            data: &data,
        };
        postcard::to_allocvec(&record).unwrap_or_default()
    }

    pub fn expires_at(&self, i: usize, last_access: i64) -> i64 {
        (last_access + self.idle_ms(i)).min(self.created(i) + ABSOLUTE_MS)
    }

    /// Session `i` created in a sessdb store as an application would set it, not yet saved
    /// (the caller times the save).
    pub fn sessdb_session(
        &self,
        store: &sessdb::Store,
        i: usize,
        c: &Content,
    ) -> sessdb::Result<sessdb::Session> {
        let mut s = store.create();
        s.set_principal(Some(&c.principal))?;
        s.set_label(c.label.as_deref())?;
        s.set_remote_addr(Some(&c.remote_addr))?;
        s.set_user_agent(Some(c.user_agent))?;
        s.set_idle_timeout(self.idle(i));
        for (k, v) in &c.data {
            s.insert(k, v)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            n: 1000,
            seed: 7,
            t0: 1_700_000_000_000,
            victim_stride: 10,
            sample: 100,
            durable_one: 10,
            durable_per_thread: 10,
        }
    }

    #[test]
    fn victims_expire_before_purge_and_others_after() {
        let p = plan();
        assert_eq!(p.victims(), 100);
        for i in 0..p.n {
            let exp = p.expires_at(i, p.created(i));
            assert_eq!(exp <= p.t_purge(), p.is_victim(i), "session {i}");
        }
    }

    #[test]
    fn content_is_about_300_bytes_of_data_and_deterministic() {
        let p = plan();
        let len = |i| serde_json::to_vec(&p.content(i).data).unwrap().len();
        let avg = (0..100).map(len).sum::<usize>() / 100;
        assert!((250..=400).contains(&avg), "{avg}");
        assert_eq!(p.content(3).data, p.content(3).data);
        assert_ne!(p.peer_key(1), p.peer_key(2));
    }
}
