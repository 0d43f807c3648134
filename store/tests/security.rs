//! Security checks: what a stolen database folder or export reveals, the quality of ids, the
//! permissions of what the store creates, what errors and `Debug` print, and the limits on
//! hostile sizes.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sessdb::{Admin, Error, ListQuery, Session, SessionId, Store, Target, Value, MAX_DEPTH};

/// A value no error message or `Debug` output may show.
const SECRET: &str = "s3cr3t-bearer-of-the-api-0xC0FFEE";

fn open(path: &Path) -> Store {
    Store::open(path).expect("open")
}

/// Finds which of `needles` occur in `hay`: one pass, filtered on the first four bytes.
fn occurrences<'a>(hay: &[u8], needles: &'a [Vec<u8>]) -> HashSet<&'a [u8]> {
    let mut by_prefix: HashMap<[u8; 4], Vec<&'a [u8]>> = HashMap::new();
    for n in needles {
        let key = [n[0], n[1], n[2], n[3]];
        by_prefix.entry(key).or_default().push(n);
    }
    let mut found = HashSet::new();
    for i in 0..hay.len().saturating_sub(3) {
        let key = [hay[i], hay[i + 1], hay[i + 2], hay[i + 3]];
        if let Some(candidates) = by_prefix.get(&key) {
            for n in candidates {
                if hay[i..].starts_with(n) {
                    found.insert(*n);
                }
            }
        }
    }
    found
}

/// Every form an id can take in a file: raw bytes, hyphenated, simple hex, either case.
fn id_forms(id: &SessionId) -> Vec<Vec<u8>> {
    let text = id.to_string();
    let simple = text.replace('-', "");
    vec![
        id.as_bytes().to_vec(),
        text.clone().into_bytes(),
        text.to_uppercase().into_bytes(),
        simple.clone().into_bytes(),
        simple.to_uppercase().into_bytes(),
    ]
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_raw_session_id_in_the_database_folder_or_an_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = open(&path);
    let mut ids = Vec::new();
    for i in 0..300 {
        let mut s = store.create();
        s.set_principal(Some(&format!("user{}", i % 7)))
            .expect("principal");
        s.insert("n", &i).expect("insert");
        s.save().expect("save");
        if i % 3 == 0 {
            ids.push(*s.id());
            s.cycle_id().expect("cycle_id"); // the old id must be gone too
        }
        ids.push(*s.id());
    }
    for name in ["admin", "user:42/tenant:acme"] {
        let s = store
            .get_or_create(name, |s| s.insert("token", "t"))
            .expect("named");
        ids.push(*s.id());
    }
    // A large value goes to sled's blob files: they are scanned too.
    let mut big = store.create();
    big.insert("blob", &"x".repeat(100_000)).expect("insert");
    big.save().expect("save");
    ids.push(*big.id());
    drop(big);
    let mut export = Vec::new();
    store.export(&mut export, true).expect("export");
    store.flush().expect("flush");
    drop(store);

    let needles: Vec<Vec<u8>> = ids.iter().flat_map(id_forms).collect();
    // The control: handles are stored, so the scan must find them.
    let handles: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| id.handle().as_bytes().to_vec())
        .collect();
    let handle_texts: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| id.handle().to_string().into_bytes())
        .collect();

    let mut files = Vec::new();
    files_under(&path, &mut files);
    let mut handles_found = HashSet::new();
    let mut scanned = 0;
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        scanned += bytes.len();
        let found = occurrences(&bytes, &needles);
        assert!(
            found.is_empty(),
            "{} holds {} raw id forms",
            file.display(),
            found.len()
        );
        handles_found.extend(occurrences(&bytes, &handles));
    }
    assert!(scanned > 100_000, "scanned only {scanned} bytes");
    assert!(
        handles_found.len() * 2 > ids.len(),
        "the scan found only {} of {} handles: it would miss ids too",
        handles_found.len(),
        ids.len()
    );
    assert!(
        occurrences(&export, &needles).is_empty(),
        "an export holds a raw id"
    );
    // The export names the current sessions by handle (the rotated-away ones are gone).
    assert!(occurrences(&export, &handle_texts).len() >= 300);
}

#[test]
fn a_million_random_ids_are_distinct_and_balanced() {
    const N: usize = 1_000_000;
    let mut seen = HashSet::with_capacity(N);
    let mut ones = [0u32; 128];
    for _ in 0..N {
        let v = u128::from_be_bytes(*SessionId::random().as_bytes());
        assert!(seen.insert(v), "duplicate id");
        for (bit, count) in ones.iter_mut().enumerate() {
            *count += ((v >> (127 - bit)) & 1) as u32;
        }
    }
    // UUID v4: bits 48..52 hold the version (0100), bits 64..66 the variant (10).
    let fixed: HashMap<usize, u32> = [(48, 0), (49, 1), (50, 0), (51, 0), (64, 1), (65, 0)]
        .into_iter()
        .collect();
    // Each of the 122 random bits is Binomial(N, 1/2): standard deviation 500. Six of them
    // bound the count; a fair source crosses it with probability about 2e-9 per bit.
    let sd = (N as f64).sqrt() / 2.0;
    let mut random_ones = 0u64;
    for (bit, &count) in ones.iter().enumerate() {
        match fixed.get(&bit) {
            Some(&v) => assert_eq!(count, v * N as u32, "fixed bit {bit}"),
            None => {
                let z = (f64::from(count) - N as f64 / 2.0) / sd;
                assert!(z.abs() < 6.0, "bit {bit}: {count} ones of {N} (z = {z:.1})");
                random_ones += u64::from(count);
            }
        }
    }
    let total = (N * 122) as f64;
    let z = (random_ones as f64 - total / 2.0) / (total.sqrt() / 2.0);
    assert!(z.abs() < 6.0, "all random bits: z = {z:.1}");
}

#[test]
fn the_database_folder_is_created_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Also a folder whose parents are missing.
    for path in [dir.path().join("db"), dir.path().join("a/b/db")] {
        let store = open(&path);
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", path.display());
        drop(store);
    }
}

/// Every text form of an id, and the secret data, that a message must not contain.
fn assert_clean(what: &str, text: &str, id: &SessionId) {
    let id_text = id.to_string();
    for form in [
        id_text.clone(),
        id_text.to_uppercase(),
        id_text.replace('-', ""),
        String::from_utf8_lossy(id.as_bytes()).into_owned(),
    ] {
        assert!(!text.contains(&form), "{what} shows the session id: {text}");
    }
    assert!(!text.contains(SECRET), "{what} shows session data: {text}");
}

fn chain(e: &Error) -> String {
    let mut out = format!("{e} / {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    out
}

fn secret_session(store: &Store) -> Session {
    let mut s = store.create();
    s.insert("token", SECRET).expect("insert");
    s.set_principal(Some("alice")).expect("principal");
    s.save().expect("save");
    s
}

#[test]
fn errors_and_debug_output_show_no_id_and_no_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder()
        .max_session_bytes(4096)
        .open(dir.path().join("db"))
        .expect("open");
    let s = secret_session(&store);
    let id = *s.id();
    assert_clean("Debug of a Session", &format!("{s:?} {s:#?}"), &id);
    assert_clean("Debug of a SessionId", &format!("{id:?} {id:#?}"), &id);
    assert_clean("Debug of the store", &format!("{store:?}"), &id);
    // What an operator's tools see: the keys, not their values.
    let info = store.show(&Target::Id(id)).expect("show").expect("live");
    assert!(format!("{info:?}").contains("\"token\""), "{info:?}");
    assert_clean(
        "Debug of a SessionInfo",
        &format!("{info:?} {info:#?}"),
        &id,
    );
    let page = store.list(&ListQuery::default()).expect("list");
    assert_eq!(page.sessions.len(), 1);
    assert_clean("Debug of a Page", &format!("{page:?}"), &id);

    // Conflict: a stale save.
    let mut stale = store.load(&id).expect("load").expect("live");
    let mut fresh = store.load(&id).expect("load").expect("live");
    fresh.insert("n", &1).expect("insert");
    fresh.save().expect("save");
    stale.insert("n", &2).expect("insert");
    let conflict = stale.save().expect_err("conflict");
    assert!(conflict.is_conflict());
    assert_clean("a conflict", &chain(&conflict), &id);

    // Too large.
    fresh.insert("big", &"y".repeat(10_000)).expect("insert");
    let too_large = fresh.save().expect_err("too large");
    assert!(matches!(too_large, Error::TooLarge { .. }));
    assert_clean("a size error", &chain(&too_large), &id);
    fresh.remove("big");

    // A value that does not fit the asked type: serde's message would quote the value.
    let mismatch = fresh.get::<u64>("token").expect_err("not a number");
    assert!(matches!(mismatch, Error::Value { .. }));
    assert_clean("a type mismatch", &chain(&mismatch), &id);
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    enum Kind {
        A,
        B,
    }
    let variant = fresh.get::<Kind>("token").expect_err("not a variant");
    assert_clean("an unknown variant", &chain(&variant), &id);

    // Not found: a save after the session was invalidated.
    store.invalidate(&id).expect("invalidate");
    fresh.insert("n", &3).expect("insert");
    let gone = fresh.save().expect_err("gone");
    assert!(matches!(gone, Error::NotFound { .. }));
    assert_clean("a not-found error", &chain(&gone), &id);

    // A pasted id with a typo: the message keeps a short prefix only.
    for typo in [format!("{id}x"), format!("{id}").replace('-', "_")] {
        for err in [
            typo.parse::<SessionId>().expect_err("typo"),
            typo.parse::<Target>().expect_err("typo"),
            typo.parse::<sessdb::Handle>().expect_err("typo"),
        ] {
            assert_clean("an id parse error", &chain(&err), &id);
        }
    }
}

#[test]
fn a_type_mismatch_still_says_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    let s = secret_session(&store);
    let msg = s.get::<u64>("token").expect_err("mismatch").to_string();
    assert!(msg.contains("\"token\""), "names the key: {msg}");
    assert!(
        msg.contains("string") && msg.contains("u64"),
        "says why: {msg}"
    );
}

#[test]
fn an_oversized_session_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    // A new session over the default 256 KiB limit.
    let mut s = store.create();
    s.insert("big", &"z".repeat(300 * 1024)).expect("insert");
    let before = store.counters();
    let err = s.save().expect_err("too large");
    match &err {
        Error::TooLarge { size, limit, .. } => {
            assert!(*size > 300 * 1024);
            assert_eq!(*limit, 256 * 1024);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert_eq!(store.counters().writes, before.writes);
    assert!(store.load(s.id()).expect("load").is_none());
    assert!(store.check().expect("check").is_clean());

    // An existing session that grows too large keeps its stored version, and so does a
    // rotation that would carry the oversized data.
    s.remove("big");
    s.save().expect("save");
    let id = *s.id();
    s.insert("big", &"z".repeat(300 * 1024)).expect("insert");
    assert!(matches!(s.save(), Err(Error::TooLarge { .. })));
    assert!(matches!(s.cycle_id(), Err(Error::TooLarge { .. })));
    let stored = store.load(&id).expect("load").expect("still there");
    assert_eq!(stored.version(), 1);
    assert!(stored.get_value("big").is_none());
    assert!(store.check().expect("check").is_clean());
}

#[test]
fn a_one_megabyte_principal_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    let mut s = store.create();
    let err = s
        .set_principal(Some(&"p".repeat(1024 * 1024)))
        .expect_err("too long");
    assert!(matches!(
        err,
        Error::InvalidField {
            field: "principal",
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("principal") && msg.contains("1048576 bytes"),
        "{msg}"
    );
    assert!(msg.len() < 200, "the message is short: {} bytes", msg.len());
    assert_eq!(s.principal(), None);
    // sessions_of and invalidate_principal with such a name find nothing and fail nothing.
    let huge = "p".repeat(1024 * 1024);
    assert!(store.sessions_of(&huge).expect("sessions_of").is_empty());
    assert_eq!(store.invalidate_principal(&huge).expect("invalidate"), 0);
}

#[test]
fn ten_thousand_keys_in_one_session_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    let mut s = store.create();
    for i in 0..10_000 {
        s.insert(&format!("key-{i:05}"), &i).expect("insert");
    }
    s.save().expect("save");
    let id = *s.id();
    let loaded = store.load(&id).expect("load").expect("live");
    assert_eq!(loaded.data().len(), 10_000);
    assert_eq!(loaded.get::<u32>("key-09999").expect("u32"), Some(9_999));
    // The export of it imports back unchanged.
    let mut out = Vec::new();
    store.export(&mut out, false).expect("export");
    let report = store
        .import(&mut out.as_slice(), &Default::default())
        .expect("import");
    assert_eq!((report.unchanged, report.bad.len()), (1, 0));
    assert!(store.check().expect("check").is_clean());
}

fn nested(depth: usize) -> serde_json::Value {
    let mut v = serde_json::json!("leaf");
    for _ in 0..depth {
        v = serde_json::json!([v]);
    }
    v
}

#[test]
fn deeply_nested_values_get_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    let mut s = store.create();
    s.insert("ok", &nested(MAX_DEPTH)).expect("at the limit");
    for depth in [MAX_DEPTH + 1, 100, 1_000] {
        let err = s.insert("deep", &nested(depth)).expect_err("too deep");
        assert!(matches!(err, Error::Value { .. }), "{err:?}");
        assert!(err.to_string().contains("nested deeper than 64"), "{err}");
    }
    // The same through a raw value.
    let mut v = Value::Null;
    for _ in 0..(MAX_DEPTH + 1) {
        v = Value::List(vec![v]);
    }
    assert!(s.insert_value("deep", v).is_err());
    s.save().expect("save");
    let loaded = store.load(s.id()).expect("load").expect("live");
    assert!(loaded.get_value("deep").is_none());
    assert_eq!(
        loaded.get::<serde_json::Value>("ok").expect("json"),
        Some(nested(MAX_DEPTH))
    );

    // A session at the limit survives an export and an import into another store (import once
    // counted the data map itself as a level, and refused it).
    let mut out = Vec::new();
    store.export(&mut out, false).expect("export");
    let other = open(&dir.path().join("other"));
    let report = other
        .import(&mut out.as_slice(), &Default::default())
        .expect("import");
    assert_eq!(
        (report.imported, report.bad.len()),
        (1, 0),
        "{:?}",
        report.bad
    );
    let imported = other.load(s.id()).expect("load").expect("live");
    assert_eq!(imported.data(), loaded.data());
}

/// A named session's id is computable from its name, so a client that sends it as its token
/// must not reach the session: not through `load`, `update` or `invalidate`. By name it is
/// reached, and a cookie session with the same label, or an id that is version 5 by chance,
/// loads as before.
#[test]
fn a_named_session_is_not_reached_through_its_computable_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    store
        .get_or_create("admin", |s| s.insert("token", "upstream-secret"))
        .expect("named");
    let forged = SessionId::named("admin");

    assert!(store.load(&forged).expect("load").is_none());
    let ran = store
        .update(&forged, |s| s.insert("token", "attacker"))
        .expect("update");
    assert!(ran.is_none(), "update ran on a named session");
    assert!(!store.invalidate(&forged).expect("invalidate"));

    let named = store
        .load_named("admin")
        .expect("load_named")
        .expect("stored");
    assert_eq!(
        named.get::<String>("token").expect("token").as_deref(),
        Some("upstream-secret")
    );
    assert_eq!(named.id(), &forged);
    assert!(store.load_named("nobody").expect("load_named").is_none());

    // Its label is its name, which finds it.
    let mut named = named;
    let err = named.set_label(Some("other")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid label: a named session's label is its name"
    );
    named.set_label(Some("admin")).expect("the same label");

    // An ordinary session labelled like a named one, and one whose random id is version 5,
    // are ordinary sessions.
    let mut web = store.create();
    web.set_label(Some("admin")).expect("label");
    web.save().expect("save");
    assert!(store.load(web.id()).expect("load").is_some());
    let mut bytes = *SessionId::random().as_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    let v5 = SessionId::from_bytes(bytes);
    let mut s = store.create_with_id(v5);
    s.set_label(Some("admin")).expect("label");
    s.save().expect("save");
    assert!(store.load(&v5).expect("load").is_some());
    assert!(store.invalidate(&v5).expect("invalidate"));

    assert!(store.invalidate_named("admin").expect("invalidate_named"));
    assert!(store.load_named("admin").expect("load_named").is_none());
    assert!(!store.invalidate_named("admin").expect("invalidate_named"));
}

/// An `init` cannot leave a record under the name's id with another label (which a client
/// could reach by that id): relabelling after a `cycle_id` is refused. A record under the name's
/// id with another label (one relabelled before sessdb refused that, or made with
/// `create_with_id`) is replaced by `get_or_create`, not left in the way.
#[test]
fn a_named_sessions_id_never_holds_a_session_with_another_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("db"));
    let id = SessionId::named("billing-api");

    let err = store
        .get_or_create("billing-api", |s| {
            s.cycle_id()?;
            s.set_label(Some("other"))?;
            s.insert("token", "secret")
        })
        .unwrap_err();
    assert!(matches!(err, Error::Init { .. }), "{err}");
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("init gave the session another label; a named session's label is its name".into())
    );
    assert!(store.load(&id).expect("load").is_none());
    assert_eq!(store.stats().expect("stats").live, 0);

    let mut planted = store.create_with_id(id);
    planted.set_label(Some("not the name")).expect("label");
    planted.insert("token", "planted").expect("insert");
    planted.save().expect("save");
    assert!(
        store.load(&id).expect("load").is_some(),
        "not a named session"
    );
    let named = store
        .get_or_create("billing-api", |s| s.insert("token", "fresh"))
        .expect("replaces what is in the way");
    assert_eq!(
        named.get::<String>("token").expect("token").as_deref(),
        Some("fresh")
    );
    assert!(store.load(&id).expect("load").is_none());
    assert_eq!(store.stats().expect("stats").live, 1);
}
