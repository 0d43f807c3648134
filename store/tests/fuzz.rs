//! Fuzz-style robustness: arbitrary and mutated bytes as stored records (written with sled
//! directly, then read through every reader), as import lines, and as ids, handles and
//! targets. Nothing may panic, every bad input must get a clear error, and no small input may
//! make the store allocate much (a counting allocator measures the peak).
//!
//! This is what CI runs (proptest: stable Rust, no extra tools). A longer campaign:
//! `PROPTEST_CASES=20000 cargo test -p sessdb --release --test fuzz`.
//! The admin socket's decoder and live server are fuzzed in `src/socket` and `tests/socket.rs`.
// The counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde::Serialize;
use sessdb::{
    Admin, Handle, ImportOptions, ListQuery, ManualClock, SessionId, Status, Store, Target,
};

#[path = "common/raw_sled.rs"]
mod raw_sled;

// ---- a per-thread allocation meter ----

/// Counts the bytes live on a thread while it measures, and their peak. Thread-local, so
/// tests running in parallel (and sled's own threads) do not disturb each other's numbers.
struct Meter;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one allocation (or reallocation) on this thread, while measuring.
fn count() {
    let _ = MEASURING.try_with(|on| {
        if on.get() {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
    });
}

fn note(delta: isize) {
    let _ = MEASURING.try_with(|on| {
        if on.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
            count();
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
            count();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
            count();
        }
        p
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Runs `f` and returns its result with the peak of bytes it held at once on this thread.
fn peak_bytes<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    (out, PEAK.with(Cell::get).max(0) as usize)
}

/// Runs `f` and returns its result with the number of allocations it made on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCATIONS.with(|n| n.set(0));
    let (out, _) = peak_bytes(f);
    (out, ALLOCATIONS.with(Cell::get))
}

/// What a small input may cost: a fixed allowance (sled's node reads, JSON buffers) plus a
/// generous factor of the input. An unbounded allocation (a length prefix believed) is
/// gigabytes.
fn allowance(input_len: usize) -> usize {
    4 * 1024 * 1024 + 256 * input_len
}

fn config(default_cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases),
        // Failing inputs are kept as named regression tests in this file.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

// ---- records: the stored form, mirrored to build structurally valid ones ----

/// 2026-01-01T00:00:00Z: the clock of every store here.
const NOW: i64 = 1_767_225_600_000;
/// The latest time a record holds (end of year 9999).
const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// The record head as sessdb writes it (postcard, field order matters; see [`encode`]).
#[derive(Debug, Clone)]
struct Head {
    expires_at: i64,
    /// Format 2's lag of the expiry entry, in 10-second buckets; `None` writes format 1,
    /// which had no such field.
    entry_lag: Option<u16>,
    version: u64,
    created: i64,
    last_access: i64,
    idle_timeout_ms: i64,
    absolute_deadline: i64,
    principal: Option<String>,
    label: Option<String>,
    remote_addr: Option<String>,
    user_agent: Option<String>,
}

/// One token of the data stream (postcard, variant order matters).
#[derive(Debug, Clone, Serialize)]
enum Token {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(u32),
    Map(u32),
}

fn expiry(h: &Head) -> i64 {
    h.last_access
        .saturating_add(h.idle_timeout_ms)
        .clamp(0, MAX_TIME_MS)
        .min(h.absolute_deadline)
}

fn encode(head: &Head, tokens: &[Token]) -> Vec<u8> {
    let rest = (
        head.version,
        head.created,
        head.last_access,
        head.idle_timeout_ms,
        head.absolute_deadline,
        &head.principal,
        &head.label,
        &head.remote_addr,
        &head.user_agent,
    );
    let mut out = match head.entry_lag {
        None => {
            let mut out = vec![1];
            out.extend(postcard::to_allocvec(&(head.expires_at, rest)).expect("encode head"));
            out
        }
        Some(lag) => {
            let mut out = vec![2];
            out.extend(postcard::to_allocvec(&(head.expires_at, lag, rest)).expect("encode head"));
            out
        }
    };
    out.extend(postcard::to_allocvec(tokens).expect("encode tokens"));
    out
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(MAX_TIME_MS),
        Just(MAX_TIME_MS + 1),
        (NOW - 7_200_000..NOW + 7_200_000),
        any::<i64>(),
    ]
}

fn text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        ".{0,20}".prop_map(String::from),
        Just(String::new()),
        Just("a\0b".to_string()),
        (1000usize..1100).prop_map(|n| "p".repeat(n)),
        (4090usize..4200).prop_map(|n| "u".repeat(n)),
    ])
}

fn head() -> impl Strategy<Value = Head> {
    (
        any::<u64>(),
        time(),
        time(),
        prop_oneof![
            Just(1_800_000i64),
            Just(0),
            Just(-5),
            Just(i64::MAX),
            any::<i64>()
        ],
        time(),
        (text(), text(), text(), text()),
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(0u16)),
            (0u16..40).prop_map(Some),
            any::<u16>().prop_map(Some)
        ],
    )
        .prop_map(
            |(version, created, last_access, idle, absolute, texts, consistent, entry_lag)| {
                let mut h = Head {
                    expires_at: 0,
                    entry_lag,
                    version,
                    created,
                    last_access,
                    idle_timeout_ms: idle,
                    absolute_deadline: absolute,
                    principal: texts.0,
                    label: texts.1,
                    remote_addr: texts.2,
                    user_agent: texts.3,
                };
                h.expires_at = if consistent { expiry(&h) } else { absolute };
                h
            },
        )
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        Just(Token::Null),
        any::<bool>().prop_map(Token::Bool),
        any::<i64>().prop_map(Token::Int),
        any::<u64>().prop_map(Token::UInt),
        any::<f64>().prop_map(Token::Float),
        ".{0,8}".prop_map(Token::Str),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Token::Bytes),
        prop_oneof![0u32..4, Just(u32::MAX)].prop_map(Token::List),
        prop_oneof![0u32..4, Just(u32::MAX)].prop_map(Token::Map),
    ]
}

/// A data stream: a well-formed map, deep nesting, or a random token sequence.
fn tokens() -> impl Strategy<Value = Vec<Token>> {
    prop_oneof![
        // {"k": <leaf>} and {"a": [..]}.
        token().prop_map(|t| vec![Token::Map(1), Token::Str("k".into()), t]),
        // {"k": [[[...null...]]]} around the depth limit.
        (60usize..70).prop_map(|depth| {
            let mut t = vec![Token::Map(1), Token::Str("k".into())];
            t.extend((0..depth).map(|_| Token::List(1)));
            t.push(Token::Null);
            t
        }),
        prop::collection::vec(token(), 0..12).prop_map(|mut t| {
            t.insert(0, Token::Map(3));
            t
        }),
        prop::collection::vec(token(), 0..12),
    ]
}

/// How to damage a record.
#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, byte: u8 },
}

fn damage(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    match *d {
        Damage::Flip { at, xor } => {
            let i = at % bytes.len();
            bytes[i] ^= xor.max(1);
        }
        Damage::Truncate { at } => bytes.truncate(at % bytes.len()),
        Damage::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
    }
}

fn damages() -> impl Strategy<Value = Vec<Damage>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, xor)| Damage::Flip { at, xor }),
            any::<usize>().prop_map(|at| Damage::Truncate { at }),
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Insert { at, byte }),
        ],
        0..4,
    )
}

/// The session every planted record is stored under.
fn victim() -> SessionId {
    SessionId::named("fuzzed record")
}

/// Writes raw entries with sled, as corruption or another program would.
fn plant(path: &Path, record: &[u8], extra: &[(u8, Vec<u8>, Vec<u8>)]) {
    let db = raw_sled::open_raw_sled(path);
    let trees = [
        db.open_tree("sessions").expect("tree"),
        db.open_tree("expiry").expect("tree"),
        db.open_tree("principals").expect("tree"),
    ];
    trees[0]
        .insert(victim().handle().as_bytes(), record)
        .expect("insert");
    for (tree, k, v) in extra {
        trees[usize::from(*tree) % 3]
            .insert(k.as_slice(), v.as_slice())
            .expect("insert");
    }
    db.flush().expect("flush");
}

/// Every reader and writer over the planted database: no panic, errors are clean, and after
/// `repair` the store checks clean. Returns the peak bytes of the reads.
fn exercise(path: &Path, input_len: usize) -> Result<(), TestCaseError> {
    let store = Store::builder()
        .clock(ManualClock::at_ms(NOW))
        .open(path)
        .map_err(|e| TestCaseError::fail(format!("open: {e:#}")))?;
    let id = victim();
    load_agrees_with_show(&store, &id)?;
    let (reads, peak) = peak_bytes(|| -> sessdb::Result<()> {
        let _ = store.load(&id)?;
        match store.show(&Target::Id(id)) {
            Ok(_) | Err(sessdb::Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
        store.stats()?;
        store.check()?;
        store.count_expired()?;
        store.list(&ListQuery {
            status: Status::All,
            ..ListQuery::default()
        })?;
        store.sessions_of("p")?;
        store.export(&mut std::io::sink(), true)?;
        Ok(())
    });
    reads.map_err(|e| TestCaseError::fail(format!("a read failed: {e:#}")))?;
    prop_assert!(
        peak <= allowance(input_len),
        "reading a {input_len}-byte record held {peak} bytes at once"
    );
    // Writes through the normal paths: a loaded session can be changed, saved and rotated.
    if let Some(mut s) = store.load(&id)? {
        s.insert("fuzz", &1)?;
        match s.save() {
            Ok(()) => {
                s.cycle_id()?;
            }
            Err(sessdb::Error::TooLarge { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("save: {e:#}"))),
        }
    }
    store.purge_expired()?;
    let report = store.check()?;
    prop_assert_eq!(report.undecodable.len() as u64, store.stats()?.undecodable);
    let repaired = store.repair()?;
    let after = store.check()?;
    // Repair removes every undecodable record (an unknown record format is damage: a newer
    // record format comes with a newer database format, which this build does not open), with
    // its index entries, and leaves the store clean.
    prop_assert_eq!(repaired.removed_records.len(), report.undecodable.len());
    prop_assert!(after.is_clean(), "after repair: {:?}", after);
    Ok(())
}

/// `load` decodes the head and only checks the data (decoding it on first use); `show` decodes
/// the whole record. They must agree: load refuses exactly the records show finds corrupt or
/// newer (and expired ones), and the data a loaded session decodes later is show's.
fn load_agrees_with_show(store: &Store, id: &SessionId) -> Result<(), TestCaseError> {
    // Show first: load deletes an expired session.
    let shown = store.show(&Target::Id(*id));
    let loaded = store.load(id)?;
    match (&shown, &loaded) {
        (Ok(Some(info)), Some(session)) => prop_assert_eq!(
            format!("{:?}", session.data()),
            format!("{:?}", info.data),
            "a loaded session decoded other data than show"
        ),
        (Ok(Some(info)), None) => prop_assert!(
            info.expires_at.unix_timestamp_nanos() / 1_000_000 <= i128::from(NOW),
            "load refused a live record that show decodes"
        ),
        (Ok(None), None) => {}
        (Ok(None), Some(_)) => prop_assert!(false, "load found a record show did not"),
        (Err(sessdb::Error::Corrupt { .. }), None) => {}
        (Err(e), _) => prop_assert!(false, "show: {e:#}, load: {:?}", loaded.is_some()),
    }
    Ok(())
}

fn extra_entries() -> impl Strategy<Value = Vec<(u8, Vec<u8>, Vec<u8>)>> {
    prop::collection::vec(
        (
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 1..40),
            prop::collection::vec(any::<u8>(), 0..8),
        ),
        0..3,
    )
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn arbitrary_bytes_as_a_record(
        record in prop::collection::vec(any::<u8>(), 0..300),
        extra in extra_entries(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        plant(&path, &record, &extra);
        exercise(&path, record.len())?;
    }

    #[test]
    fn structured_and_damaged_records(
        head in head(),
        tokens in tokens(),
        damage_list in damages(),
        extra in extra_entries(),
    ) {
        let mut record = encode(&head, &tokens);
        for d in &damage_list {
            damage(&mut record, d);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        plant(&path, &record, &extra);
        exercise(&path, record.len())?;
    }
}

/// The mirror above must still be the stored format, or the structured cases above would
/// only exercise the "undecodable" path.
#[test]
fn the_record_mirror_matches_the_stored_format() {
    let mut head = Head {
        expires_at: 0,
        entry_lag: Some(0),
        version: 7,
        created: NOW,
        last_access: NOW,
        idle_timeout_ms: 1_800_000,
        absolute_deadline: NOW + 3_600_000,
        principal: Some("p".into()),
        label: None,
        remote_addr: None,
        user_agent: None,
    };
    head.expires_at = expiry(&head);
    let tokens = [Token::Map(1), Token::Str("k".into()), Token::Int(5)];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    plant(&path, &encode(&head, &tokens), &[]);
    let store = Store::builder()
        .clock(ManualClock::at_ms(NOW))
        .open(&path)
        .expect("open");
    let s = store.load(&victim()).expect("load").expect("decodes");
    assert_eq!(s.version(), 7);
    assert_eq!(s.principal(), Some("p"));
    assert_eq!(s.get::<i64>("k").expect("int"), Some(5));
}

/// Loading decodes the record's head and checks its data without building it: what load
/// allocates does not grow with the data. Reading, setting or removing one key does not grow
/// with it either (that value alone is decoded, the change is spliced in at save); the first
/// read of the whole data decodes it.
#[test]
fn load_allocates_the_same_whatever_the_size_of_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder()
        .clock(ManualClock::at_ms(NOW))
        .open(dir.path().join("db"))
        .expect("open");
    let ids: Vec<SessionId> = [1, 2000]
        .into_iter()
        .map(|keys| {
            let mut s = store.create();
            s.set_principal(Some("alice")).expect("principal");
            for k in 0..keys {
                s.insert(&format!("key{k:05}"), &[k, k + 1])
                    .expect("insert");
            }
            s.save().expect("save");
            *s.id()
        })
        .collect();
    let load = |id: &SessionId| {
        store.load(id).expect("load").expect("live"); // warm sled's cache
        allocations(|| store.load(id).expect("load").expect("live"))
    };
    let (_, small) = load(&ids[0]);
    let (large_session, large) = load(&ids[1]);
    assert!(
        large <= small + 2,
        "load allocated {large} times for 2,000 keys, {small} for one"
    );
    let one_key = |id: &SessionId| {
        let mut s = store.load(id).expect("load").expect("live");
        let (value, get) = allocations(|| s.get::<Vec<u32>>("key00000").expect("get"));
        assert_eq!(value, Some(vec![0, 1]));
        let (_, change) = allocations(|| {
            s.insert("key00000", &[7]).expect("insert");
            s.insert("new", &1).expect("insert");
            assert!(s.remove("key00000").is_some());
        });
        let (_, save) = allocations(|| s.save().expect("save"));
        (get, change, save)
    };
    let (small_get, small_change, small_save) = one_key(&ids[0]);
    let (large_get, large_change, large_save) = one_key(&ids[1]);
    assert!(
        large_get <= small_get + 2 && large_change <= small_change + 2,
        "one key of 2,000: get {large_get}, change {large_change} allocations; \
         of one: {small_get}, {small_change}"
    );
    // The save copies the other 1,999 entries' bytes into one buffer: no allocation each.
    assert!(
        large_save <= small_save + 10,
        "saving one key's change of 2,000 made {large_save} allocations, of one {small_save}"
    );

    let (n, decode) = allocations(|| large_session.data().len());
    assert_eq!(n, 2000);
    assert!(
        decode >= 2000,
        "the first read decoded with {decode} allocations"
    );
    let (_, again) = allocations(|| large_session.data().len());
    assert_eq!(again, 0, "the data is decoded once");
}

// ---- import lines ----

/// A small export with every kind of value, built once: its header and its session lines.
fn template() -> &'static (String, Vec<String>) {
    static TEMPLATE: OnceLock<(String, Vec<String>)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder()
            .clock(ManualClock::at_ms(NOW))
            .open(dir.path().join("db"))
            .expect("open");
        for i in 0..3 {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{i}")))
                .expect("principal");
            s.set_label(Some("label")).expect("label");
            s.set_remote_addr(Some("203.0.113.7")).expect("addr");
            s.insert("cart", &vec![1, 2, 3]).expect("insert");
            s.insert("name", "Zoë \"quoted\" \u{1F600}")
                .expect("insert");
            s.insert_value("bytes", sessdb::Value::Bytes(vec![0, 255, 7]))
                .expect("insert");
            s.insert_value("inf", sessdb::Value::Float(f64::INFINITY))
                .expect("insert");
            s.insert(
                "nested",
                &serde_json::json!({"a": {"b": [null, true, 1.5]}}),
            )
            .expect("insert");
            s.save().expect("save");
        }
        let mut out = Vec::new();
        store.export(&mut out, true).expect("export");
        let text = String::from_utf8(out).expect("utf-8");
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let header = lines.remove(0);
        assert_eq!(lines.pop().as_deref(), Some(END_OF_3));
        (header, lines)
    })
}

/// The end line of the template's export of three sessions.
const END_OF_3: &str = r#"{"end":"sessdb-export","sessions":3}"#;

/// The end line of an export of one session, which the property tests put after the one
/// session line they import, so that an input can be accepted (one without an end line never
/// is).
const END_OF_1: &[u8] = br#"{"end":"sessdb-export","sessions":1}"#;

/// Bytes that matter to JSON and to the export's fields.
const INTERESTING: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\\",
    "\\u0000",
    "null",
    "-1",
    "1e400",
    "0.5",
    "18446744073709551616",
    "9999-12-31T23:59:59.999Z",
    "0000-01-01T00:00:00Z",
    "\n",
    "\u{0}",
    "{\"$base64\":\"!!\"}",
    "{\"$float\":\"x\"}",
];

#[derive(Debug, Clone)]
enum Edit {
    Byte { at: usize, byte: u8 },
    Delete { at: usize, len: u8 },
    Insert { at: usize, what: usize },
    Truncate { at: usize },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Byte { at, byte }),
            (any::<usize>(), any::<u8>()).prop_map(|(at, len)| Edit::Delete { at, len }),
            (any::<usize>(), any::<usize>()).prop_map(|(at, what)| Edit::Insert { at, what }),
            any::<usize>().prop_map(|at| Edit::Truncate { at }),
        ],
        1..4,
    )
}

fn apply_edits(line: &str, edits: &[Edit]) -> Vec<u8> {
    let mut b = line.as_bytes().to_vec();
    for e in edits {
        let n = b.len().max(1);
        match *e {
            Edit::Byte { at, byte } => {
                if !b.is_empty() {
                    b[at % n] = byte;
                }
            }
            Edit::Delete { at, len } => {
                let start = (at % n).min(b.len());
                let end = (start + usize::from(len % 16)).min(b.len());
                b.drain(start..end);
            }
            Edit::Insert { at, what } => {
                let s = INTERESTING[what % INTERESTING.len()].as_bytes();
                let at = at % (b.len() + 1);
                b.splice(at..at, s.iter().copied());
            }
            Edit::Truncate { at } => b.truncate(at % n),
        }
    }
    b
}

fn import_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder()
        .clock(ManualClock::at_ms(NOW))
        .open(dir.path().join("db"))
        .expect("open");
    (dir, store)
}

/// Imports `input` and checks the contract: no panic; bad lines reported by number (of a line
/// of the input, or the one after its last, where a missing end line would be) with a reason
/// and nothing written; an accepted input leaves a consistent store and imports again
/// as unchanged.
fn check_import(store: &Store, input: &[u8], lines: u64) -> Result<(), TestCaseError> {
    let before = store.counters();
    let (report, peak) = peak_bytes(|| store.import(&mut &input[..], &ImportOptions::default()));
    let report = report.map_err(|e| TestCaseError::fail(format!("import: {e:#}")))?;
    prop_assert!(
        peak <= allowance(input.len()),
        "importing {} bytes held {peak} bytes at once",
        input.len()
    );
    if report.bad.is_empty() {
        prop_assert!(store.check()?.is_clean());
        let again = store.import(&mut &input[..], &ImportOptions::default())?;
        prop_assert!(again.bad.is_empty());
        prop_assert!(!again.written, "a second import wrote: {:?}", again);
        prop_assert_eq!(again.imported + again.replaced, 0);
    } else {
        prop_assert!(!report.written);
        prop_assert_eq!(store.counters().writes, before.writes, "a bad import wrote");
        for bad in &report.bad {
            // One past the last line: where an end line is missing.
            prop_assert!(bad.line >= 1 && bad.line <= lines + 1, "{:?}", bad);
            prop_assert!(!bad.reason.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_as_import_input(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (_dir, store) = import_store();
        let lines = bytes.split(|&b| b == b'\n').count() as u64;
        check_import(&store, &bytes, lines)?;
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header(bytes in prop::collection::vec(any::<u8>(), 0..400), v1 in any::<bool>()) {
        let (_dir, store) = import_store();
        // Version 1 has no end line, so the bytes alone decide whether the input is accepted.
        let header = if v1 {
            template().0.replace(r#""version":2"#, r#""version":1"#)
        } else {
            template().0.clone()
        };
        let mut input = header.into_bytes();
        input.push(b'\n');
        input.extend(&bytes);
        let lines = input.split(|&b| b == b'\n').count() as u64;
        check_import(&store, &input, lines)?;
    }

    #[test]
    fn mutated_export_lines(which in 0usize..3, edits in edits(), header_edits in prop::option::weighted(0.1, edits())) {
        let (_dir, store) = import_store();
        let (header, lines) = template();
        let header = match &header_edits {
            Some(e) => apply_edits(header, e),
            None => header.clone().into_bytes(),
        };
        let mut input = header;
        input.push(b'\n');
        input.extend(apply_edits(&lines[which % lines.len()], &edits));
        input.push(b'\n');
        input.extend(END_OF_1);
        input.push(b'\n');
        let lines = input.split(|&b| b == b'\n').count() as u64;
        check_import(&store, &input, lines)?;
    }
}

// ---- ids, handles, targets ----

/// Whether an error message quotes all of `text`. The message quotes its input shortened to
/// 8 characters and an ellipsis, in Rust's debug form, so that is the form to look for.
/// Compared raw, a 9-character input ending in two backslashes was "found" in its own
/// 8-character prefix, whose one trailing backslash the debug form doubles. A 9-character
/// input whose last character is the ellipsis reads the same as its shortened form: the
/// message then shows the bound, not the input (proptest found one).
fn echoes(msg: &str, text: &str) -> bool {
    let shortened: String = text.chars().take(8).chain(['…']).collect();
    if text == shortened {
        return false;
    }
    let quoted = format!("{text:?}");
    msg.contains(&quoted[1..quoted.len() - 1])
}

#[test]
fn an_input_that_ends_as_its_shortened_form_is_not_an_echo() {
    let text = "®   0a\u{bbe}a…";
    assert_eq!(text.chars().count(), 9);
    let msg = text.parse::<SessionId>().unwrap_err().to_string();
    assert!(!echoes(&msg, text), "{msg}");
    // One more character is an input the message must not show whole.
    let longer = format!("{text}x");
    let msg = longer.parse::<SessionId>().unwrap_err().to_string();
    assert!(!echoes(&msg, &longer), "{msg}");
    assert!(echoes(&format!("{longer:?}"), &longer));
}

#[test]
fn a_prefix_escaped_into_the_whole_input_is_not_an_echo() {
    let text = "0123456\\\\"; // 7 characters and two backslashes
    assert_eq!(text.chars().count(), 9);
    let msg = text.parse::<SessionId>().unwrap_err().to_string();
    assert!(msg.contains(&text[..text.len() - 1]), "{msg}");
    assert!(!echoes(&msg, text), "{msg}");
    assert!(echoes(&format!("{text:?}"), text));
}

/// Checks one text against all three parsers.
fn check_parsers(text: &str) -> Result<(), TestCaseError> {
    let long = text.chars().count() > 8;
    match text.parse::<SessionId>() {
        Ok(id) => prop_assert_eq!(id.to_string().parse::<SessionId>()?, id),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !(long && echoes(&msg, text)),
                "error echoes the input: {msg}"
            );
        }
    }
    match text.parse::<Handle>() {
        Ok(h) => prop_assert_eq!(h.to_string(), text.trim().to_ascii_lowercase()),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !(long && echoes(&msg, text)),
                "error echoes the input: {msg}"
            );
        }
    }
    match text.parse::<Target>() {
        Ok(Target::Handle(h)) => prop_assert_eq!(Ok(h), text.parse::<Handle>().map_err(|_| ())),
        // A UUID, or a tower-sessions cookie's 22 characters of base64url.
        Ok(Target::Id(id)) => prop_assert!(
            text.parse::<SessionId>().ok() == Some(id)
                || base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    text.trim()
                )
                .ok()
                .as_deref()
                    == Some(id.as_bytes().as_slice())
        ),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !(long && echoes(&msg, text)),
                "error echoes the input: {msg}"
            );
            prop_assert!(text.parse::<SessionId>().is_err() && text.parse::<Handle>().is_err());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn arbitrary_text_as_id_handle_or_target(text in any::<String>()) {
        check_parsers(&text)?;
    }

    #[test]
    fn near_valid_ids_and_handles(
        text in prop_oneof![
            "[0-9a-fA-F-]{30,40}",
            "[ \t]{0,2}[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[ \t\n]{0,2}",
            "urn:uuid:[0-9a-f-]{36}",
            "\\{[0-9a-f-]{36}\\}",
            "[0-9a-fA-F]{31,33}",
            "[0-9a-f]{30}[^0-9a-f]{1,2}",
            // A tower-sessions cookie's id (the last character carries 2 bits), and near misses.
            "[ ]{0,1}[A-Za-z0-9_-]{21}[AQgw][ ]{0,1}",
            "[A-Za-z0-9_+/=-]{20,24}",
        ]
    ) {
        check_parsers(&text)?;
    }

    #[test]
    fn every_id_and_handle_roundtrips_through_text(bytes in any::<[u8; 16]>()) {
        let h = Handle::from_slice(&bytes).expect("16 bytes");
        prop_assert_eq!(h.to_string().parse::<Handle>()?, h);
        prop_assert_eq!(h.to_string().parse::<Target>()?, Target::Handle(h));
        let id: SessionId = uuid_text(&bytes).parse()?;
        prop_assert_eq!(id.as_bytes(), &bytes);
        prop_assert_eq!(id.to_string().parse::<Target>()?, Target::Id(id));
    }
}

/// Hyphenated text of 16 bytes, as a UUID parser reads it.
fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Found by `structured_and_damaged_records`: a record whose head decodes but whose data does
/// not was counted by `stats` as a live session, though `load` never returns it and `check`
/// reports it undecodable.
#[test]
fn stats_counts_a_record_with_damaged_data_as_undecodable() {
    let mut head = Head {
        expires_at: 0,
        entry_lag: None,
        version: 1,
        created: NOW,
        last_access: NOW,
        idle_timeout_ms: 1_800_000,
        absolute_deadline: MAX_TIME_MS,
        principal: None,
        label: None,
        remote_addr: None,
        user_agent: None,
    };
    head.expires_at = expiry(&head);
    let mut record = encode(
        &head,
        &[Token::Map(1), Token::Str("k".into()), Token::Map(0)],
    );
    let last = record.len() - 1;
    record[last] ^= 0xff; // the inner map's length: the data no longer decodes
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    plant(&path, &record, &[]);
    let store = Store::builder()
        .clock(ManualClock::at_ms(NOW))
        .open(&path)
        .expect("open");
    assert!(store.load(&victim()).expect("load").is_none());
    assert_eq!(store.check().expect("check").undecodable.len(), 1);
    let stats = store.stats().expect("stats");
    assert_eq!((stats.live, stats.expired, stats.undecodable), (0, 0, 1));
}

/// A value built in code, nested far deeper than JSON or the encoding allow (20,000 levels):
/// refused with `Error::Value`, where measuring its depth used to overflow the stack, which
/// aborts the process. On a thread with a main thread's 8 MiB of stack, as in the report.
#[test]
fn a_value_nested_far_too_deep_is_refused_without_overflowing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db")).unwrap();
    let deep = || {
        let mut v = sessdb::Value::Int(1);
        for _ in 0..20_000 {
            v = sessdb::Value::List(vec![v]);
        }
        v
    };
    let refused = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let mut s = store.create();
            let inserted = s.insert_value("deep", deep());
            let replaced = s.replace_data(std::collections::BTreeMap::from([(
                "deep".to_string(),
                deep(),
            )]));
            [inserted, replaced].map(|r| matches!(r, Err(sessdb::Error::Value { .. })))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(refused, [true, true]);
}
