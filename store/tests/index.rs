//! The principal index: sessions_of, invalidate_principal (and _except), per-principal limits,
//! stale entries.

mod common;

use std::time::Duration;

use common::{fixture, fixture_with};
use sessdb::{Admin, Error, ListQuery, OnPrincipalLimit, Store};

fn login(store: &Store, principal: &str) -> sessdb::SessionId {
    let mut s = store.create();
    s.set_principal(Some(principal)).unwrap();
    s.save().unwrap();
    *s.id()
}

#[test]
fn sessions_of_lists_only_that_principals_live_sessions() {
    let f = fixture();
    let a1 = login(&f.store, "alice");
    let a2 = login(&f.store, "alice");
    login(&f.store, "bob");
    login(&f.store, "alice2"); // shares a prefix with alice, must not be listed as hers
    let mut anon = f.store.create();
    anon.save().unwrap();
    let mut of_alice: Vec<_> = f
        .store
        .sessions_of("alice")
        .unwrap()
        .into_iter()
        .map(|s| s.handle)
        .collect();
    of_alice.sort();
    let mut expected = vec![a1.handle(), a2.handle()];
    expected.sort();
    assert_eq!(of_alice, expected);
    assert!(f.store.sessions_of("nobody").unwrap().is_empty());
    assert_eq!(f.store.stats().unwrap().principals, 3);
}

#[test]
fn invalidate_principal_logs_a_user_out_everywhere() {
    let f = fixture();
    let ids: Vec<_> = (0..5).map(|_| login(&f.store, "alice")).collect();
    let bob = login(&f.store, "bob");
    assert_eq!(f.store.invalidate_principal("alice").unwrap(), 5);
    for id in &ids {
        assert!(f.store.load(id).unwrap().is_none());
    }
    assert!(f.store.load(&bob).unwrap().is_some());
    assert_eq!(f.store.invalidate_principal("alice").unwrap(), 0);
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn invalidate_principal_counts_the_live_sessions_it_ends_and_removes_the_expired_too() {
    let f = fixture(); // 30 min idle timeout
    let old: Vec<_> = (0..2).map(|_| login(&f.store, "alice")).collect();
    f.advance(20 * 60);
    let recent: Vec<_> = (0..3).map(|_| login(&f.store, "alice")).collect();
    f.advance(15 * 60); // the first two are idle for 35 min now
    assert_eq!(f.store.sessions_of("alice").unwrap().len(), 3);
    // As many as were listed, not the five records.
    assert_eq!(f.store.invalidate_principal("alice").unwrap(), 3);
    for id in old.iter().chain(&recent) {
        assert!(f.store.load(id).unwrap().is_none());
    }
    // The expired ones are gone as well: nothing of alice's is left for a purge.
    let all = Admin::list(
        &f.store,
        &ListQuery {
            principal: Some("alice".into()),
            status: sessdb::Status::All,
            ..ListQuery::default()
        },
    )
    .unwrap();
    assert!(all.sessions.is_empty(), "{:?}", all.sessions);
    assert_eq!(f.store.stats().unwrap().expired, 0);
    // Only expired sessions left: none ended.
    login(&f.store, "alice");
    f.advance(31 * 60);
    assert_eq!(f.store.invalidate_principal("alice").unwrap(), 0);
    assert_eq!(f.store.stats().unwrap().expired, 0);
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn invalidate_principal_except_keeps_one_session_and_ends_the_others() {
    let f = fixture(); // 30 min idle timeout
    let old = login(&f.store, "alice");
    f.advance(20 * 60);
    let others: Vec<_> = (0..3).map(|_| login(&f.store, "alice")).collect();
    let this = login(&f.store, "alice");
    let bob = login(&f.store, "bob");
    f.advance(15 * 60); // `old` is idle for 35 min now
    assert_eq!(f.store.sessions_of("alice").unwrap().len(), 4);

    // The three others are live (counted), `old` expired (removed, not counted).
    assert_eq!(
        f.store.invalidate_principal_except("alice", &this).unwrap(),
        3
    );
    for id in others.iter().chain([&old]) {
        assert!(f.store.load(id).unwrap().is_none());
    }
    let kept = f.store.load(&this).unwrap().expect("kept");
    assert_eq!(kept.principal(), Some("alice"));
    let left: Vec<_> = f
        .store
        .sessions_of("alice")
        .unwrap()
        .iter()
        .map(|s| s.handle)
        .collect();
    assert_eq!(left, [this.handle()]);
    assert!(f.store.load(&bob).unwrap().is_some());
    assert_eq!(
        f.store.stats().unwrap().expired,
        0,
        "alice's expired one is gone too"
    );
    assert_eq!(
        f.store.invalidate_principal_except("alice", &this).unwrap(),
        0
    );
    assert!(f.store.load(&this).unwrap().is_some());
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn invalidate_principal_except_another_principals_session_ends_them_all_and_keeps_it() {
    let f = fixture();
    let alice: Vec<_> = (0..2).map(|_| login(&f.store, "alice")).collect();
    let bob = login(&f.store, "bob");
    let unknown = f.store.create();
    assert_eq!(
        f.store
            .invalidate_principal_except("bob", unknown.id())
            .unwrap(),
        1
    );
    assert!(f.store.load(&bob).unwrap().is_none());
    let bob = login(&f.store, "bob");
    assert_eq!(
        f.store.invalidate_principal_except("alice", &bob).unwrap(),
        2
    );
    for id in &alice {
        assert!(f.store.load(id).unwrap().is_none());
    }
    assert!(f.store.load(&bob).unwrap().is_some());
    assert_eq!(
        f.store.invalidate_principal_except("a\0b", &bob).unwrap(),
        0
    );
    assert!(f.store.check().unwrap().is_clean());
}

/// `keep` is an id: rotated by another request just before, the session under its new id is
/// one of the others, and `load(keep)` says it is gone. A named session is not kept by its
/// computable id, which reaches nothing anywhere.
#[test]
fn invalidate_principal_except_keeps_by_id_only() {
    let f = fixture();
    let this = login(&f.store, "alice");
    let other = login(&f.store, "alice");
    let mut s = f.store.load(&this).unwrap().unwrap();
    s.cycle_id().unwrap();
    let rotated = *s.id();
    assert_eq!(
        f.store.invalidate_principal_except("alice", &this).unwrap(),
        2
    );
    for id in [&this, &rotated, &other] {
        assert!(f.store.load(id).unwrap().is_none());
    }

    let named = f
        .store
        .get_or_create("api-client", |s| s.set_principal(Some("alice")))
        .unwrap();
    let forged = sessdb::SessionId::named("api-client");
    assert_eq!(named.id(), &forged);
    let web = login(&f.store, "alice");
    assert_eq!(
        f.store
            .invalidate_principal_except("alice", &forged)
            .unwrap(),
        2
    );
    assert!(f.store.load(&web).unwrap().is_none());
    assert!(f.store.load_named("api-client").unwrap().is_none());
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn changing_the_principal_moves_the_index_entry() {
    let f = fixture();
    let id = login(&f.store, "alice");
    let mut s = f.store.load(&id).unwrap().unwrap();
    s.set_principal(Some("bob")).unwrap();
    s.save().unwrap();
    assert!(f.store.sessions_of("alice").unwrap().is_empty());
    assert_eq!(f.store.sessions_of("bob").unwrap().len(), 1);
    s.set_principal(None).unwrap();
    s.save().unwrap();
    assert!(f.store.sessions_of("bob").unwrap().is_empty());
    assert!(f.store.check().unwrap().is_clean());
    assert_eq!(f.store.invalidate_principal("bob").unwrap(), 0);
    assert!(f.store.load(&id).unwrap().is_some());
}

#[test]
fn limit_evicts_the_least_recently_used_session() {
    let f =
        fixture_with(Store::builder().max_sessions_per_principal(3, OnPrincipalLimit::EvictOldest));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(login(&f.store, "alice"));
        f.advance(10);
    }
    // Use the first session again, so the second is now the least recently used.
    let mut first = f.store.load(&ids[0]).unwrap().unwrap();
    first.insert("seen", &true).unwrap();
    first.save().unwrap();
    f.advance(10);
    let fourth = login(&f.store, "alice");
    assert_eq!(f.store.sessions_of("alice").unwrap().len(), 3);
    assert!(
        f.store.load(&ids[1]).unwrap().is_none(),
        "LRU session evicted"
    );
    for id in [ids[0], ids[2], fourth] {
        assert!(f.store.load(&id).unwrap().is_some());
    }
    // Other principals are not affected.
    login(&f.store, "bob");
    assert_eq!(f.store.sessions_of("alice").unwrap().len(), 3);
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn limit_can_refuse_the_new_login_instead() {
    let f = fixture_with(Store::builder().max_sessions_per_principal(2, OnPrincipalLimit::Refuse));
    login(&f.store, "alice");
    login(&f.store, "alice");
    let mut third = f.store.create();
    third.set_principal(Some("alice")).unwrap();
    let err = third.save().unwrap_err();
    assert!(
        matches!(err, Error::PrincipalLimit { limit: 2, .. }),
        "{err}"
    );
    assert!(f.store.load(third.id()).unwrap().is_none());
    assert_eq!(f.store.sessions_of("alice").unwrap().len(), 2);
    // Expired sessions do not count.
    f.advance(31 * 60);
    third.save().unwrap();
    assert_eq!(f.store.sessions_of("alice").unwrap().len(), 1);
}

/// A principal no session can have matches nothing and is not scanned: `a\0` as a prefix
/// reaches into the entries of `a` whose handle starts with a zero byte, which an unchecked
/// invalidation took for stale leftovers and removed, leaving `a`'s session out of its index.
#[test]
fn a_principal_with_a_nul_matches_nothing_and_touches_no_other_principal() {
    let f = fixture();
    // A session of "a" whose handle starts with 0x00 (one in 256 ids).
    let handle = loop {
        let h = login(&f.store, "a").handle();
        if h.as_bytes()[0] == 0 {
            break h;
        }
        f.store.invalidate_handle(&h).unwrap();
    };
    for bad in ["a\0", "", "a\0\0"] {
        assert_eq!(f.store.invalidate_principal(bad).unwrap(), 0, "{bad:?}");
        assert!(f.store.sessions_of(bad).unwrap().is_empty(), "{bad:?}");
        let q = ListQuery {
            principal: Some(bad.into()),
            ..ListQuery::default()
        };
        assert!(
            Admin::list(&f.store, &q).unwrap().sessions.is_empty(),
            "{bad:?}"
        );
    }
    assert!(f.store.check().unwrap().is_clean());
    let of_a = f.store.sessions_of("a").unwrap();
    assert_eq!(of_a.len(), 1);
    assert_eq!(of_a[0].handle, handle);
    assert_eq!(f.store.invalidate_principal("a").unwrap(), 1);
}

#[test]
fn list_by_principal_pages_with_a_cursor() {
    let f = fixture();
    for _ in 0..25 {
        login(&f.store, "carol");
    }
    let mut seen = std::collections::HashSet::new();
    let mut q = ListQuery {
        principal: Some("carol".into()),
        limit: 10,
        ..ListQuery::default()
    };
    let mut pages = 0;
    loop {
        let page = f.store.list(&q).unwrap();
        pages += 1;
        for s in &page.sessions {
            assert!(seen.insert(s.handle), "no session twice");
            assert_eq!(s.principal.as_deref(), Some("carol"));
        }
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(pages, 3);
}

#[test]
fn list_filters_label_search_and_expiring_within() {
    let f = fixture();
    let mut a = f.store.create();
    a.set_principal(Some("dave")).unwrap();
    a.set_label(Some("mobile")).unwrap();
    a.set_idle_timeout(Duration::from_secs(120));
    a.save().unwrap();
    let mut b = f.store.create();
    b.set_principal(Some("erin")).unwrap();
    b.set_label(Some("web")).unwrap();
    b.save().unwrap();
    let list = |q: ListQuery| f.store.list(&q).unwrap().sessions;
    let by_label = list(ListQuery {
        label: Some("mobile".into()),
        ..Default::default()
    });
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].handle, a.handle());
    let by_search = list(ListQuery {
        search: Some("er".into()),
        ..Default::default()
    });
    assert_eq!(by_search.len(), 1);
    assert_eq!(by_search[0].handle, b.handle());
    let prefix = b.handle().to_string()[..6].to_string();
    assert!(list(ListQuery {
        search: Some(prefix),
        ..Default::default()
    })
    .iter()
    .any(|s| s.handle == b.handle()));
    let soon = list(ListQuery {
        expiring_within: Some(Duration::from_secs(300)),
        ..Default::default()
    });
    assert_eq!(soon.len(), 1);
    assert_eq!(soon[0].handle, a.handle());
}

#[test]
fn scan_budget_bounds_a_selective_listing() {
    let f = fixture();
    for _ in 0..50 {
        login(&f.store, "many");
    }
    let needle = login(&f.store, "zed");
    let mut q = ListQuery {
        search: Some("zed".into()),
        scan_budget: 10,
        ..ListQuery::default()
    };
    let mut found = Vec::new();
    let mut pages = 0;
    loop {
        let page = f.store.list(&q).unwrap();
        pages += 1;
        found.extend(page.sessions.into_iter().map(|s| s.handle));
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    assert_eq!(found, vec![needle.handle()]);
    assert!(pages >= 5, "the budget split the scan into pages ({pages})");
}

/// Every page of `q` (forward or backward, as `q` says), its sessions in order, and how many
/// pages there were.
fn all_pages(store: &Store, mut q: ListQuery) -> (Vec<sessdb::Handle>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list(&q).unwrap();
        pages += 1;
        seen.extend(page.sessions.iter().map(|s| s.handle));
        match page.next {
            Some(c) => q.after = Some(c),
            None => return (seen, pages),
        }
    }
}

#[test]
fn reverse_listing_pages_from_the_end_in_the_opposite_order() {
    let f = fixture();
    for i in 0..30 {
        let mut s = f.store.create();
        s.set_principal(Some(if i % 3 == 0 { "ann" } else { "ben" }))
            .unwrap();
        if i % 5 == 0 {
            s.set_idle_timeout(Duration::from_secs(120));
        }
        s.save().unwrap();
        f.advance(11); // a new expiry bucket for each
    }
    f.advance(60); // the first few short ones have expired
    let queries = [
        ListQuery::default(),
        ListQuery {
            principal: Some("ann".into()),
            ..ListQuery::default()
        },
        ListQuery {
            status: sessdb::Status::Expired,
            ..ListQuery::default()
        },
        ListQuery {
            status: sessdb::Status::All,
            ..ListQuery::default()
        },
        ListQuery {
            expiring_within: Some(Duration::from_secs(600)),
            ..ListQuery::default()
        },
    ];
    for q in queries {
        let q = ListQuery { limit: 4, ..q };
        let (forward, forward_pages) = all_pages(&f.store, q.clone());
        let (mut backward, pages) = all_pages(
            &f.store,
            ListQuery {
                reverse: true,
                ..q.clone()
            },
        );
        assert!(!forward.is_empty(), "{q:?}");
        assert_eq!(pages, forward_pages, "{q:?}");
        backward.reverse();
        assert_eq!(backward, forward, "{q:?}");
    }
    // The first page backward is the end of the listing, latest expiry last.
    let last = f
        .store
        .list(&ListQuery {
            limit: 3,
            reverse: true,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(last.sessions.len(), 3);
    assert!(last.sessions[0].expires_at > last.sessions[1].expires_at);
    assert!(last.next.is_some());
}

#[test]
fn a_cursor_continues_in_either_direction() {
    let f = fixture();
    for _ in 0..12 {
        login(&f.store, "fay");
        f.advance(11);
    }
    let (all, _) = all_pages(&f.store, ListQuery::default());
    assert_eq!(all.len(), 12);
    let first = f
        .store
        .list(&ListQuery {
            limit: 5,
            ..ListQuery::default()
        })
        .unwrap();
    // Backward from where a forward page stopped: what came before its last session.
    let back = f
        .store
        .list(&ListQuery {
            after: first.next.clone(),
            reverse: true,
            ..ListQuery::default()
        })
        .unwrap();
    let handles: Vec<_> = back.sessions.iter().map(|s| s.handle).collect();
    assert_eq!(handles, [all[3], all[2], all[1], all[0]]);
    assert!(back.next.is_none());
    // Forward from where a backward page stopped: what came after its last session.
    let end = f
        .store
        .list(&ListQuery {
            limit: 5,
            reverse: true,
            ..ListQuery::default()
        })
        .unwrap();
    let on = f
        .store
        .list(&ListQuery {
            after: end.next,
            ..ListQuery::default()
        })
        .unwrap();
    let handles: Vec<_> = on.sessions.iter().map(|s| s.handle).collect();
    assert_eq!(handles, all[8..]);
}

#[test]
fn reverse_listing_keeps_to_the_scan_budget() {
    let f = fixture();
    let needle = login(&f.store, "zed"); // expires first: the last one a backward scan meets
    f.advance(11);
    for _ in 0..50 {
        login(&f.store, "many");
    }
    let (found, pages) = all_pages(
        &f.store,
        ListQuery {
            search: Some("zed".into()),
            scan_budget: 10,
            reverse: true,
            ..ListQuery::default()
        },
    );
    assert_eq!(found, vec![needle.handle()]);
    assert!(pages >= 5, "the budget split the scan into pages ({pages})");
}

#[test]
fn stats_count_the_records_not_crash_leftovers_in_the_indexes() {
    let f = fixture();
    let ann = login(&f.store, "ann");
    login(&f.store, "ben");
    let short = {
        let mut s = f.store.create();
        s.set_principal(Some("ben")).unwrap();
        s.set_idle_timeout(Duration::from_secs(60));
        s.save().unwrap();
        *s.id()
    };
    f.advance(120);
    let path = f.path();
    let clock = f.clock.clone();
    drop(f.store);
    {
        // What a crash between the writes of a save or a removal leaves behind.
        let db = common::open_raw_sled(&path);
        let expiry = db.open_tree("expiry").unwrap();
        let principals = db.open_tree("principals").unwrap();
        let mut far = [0xffu8; 24];
        far[8..].copy_from_slice(short.handle().as_bytes());
        expiry.insert(far, &[]).unwrap(); // a second, future entry of the expired session
        let mut gone = [0x7fu8; 24];
        gone[8..].copy_from_slice(&[9; 16]);
        expiry.insert(gone, &[]).unwrap(); // an entry whose record is gone
        let mut pk = b"zoe\0".to_vec();
        pk.extend_from_slice(&[9; 16]);
        principals.insert(pk, &[]).unwrap(); // a principal whose session is gone
        let mut pk = b"cat\0".to_vec();
        pk.extend_from_slice(ann.handle().as_bytes());
        principals.insert(pk, &[]).unwrap(); // ann's session under an old principal
        db.flush().unwrap();
    }
    let store = Store::builder().clock(clock).open(&path).unwrap();
    let report = store.check().unwrap();
    assert!(!report.has_problems());
    assert_eq!((report.stale_expiry, report.stale_principal), (2, 2));
    let stats = store.stats().unwrap();
    assert_eq!(
        (
            stats.live,
            stats.expired,
            stats.undecodable,
            stats.principals
        ),
        (2, 1, 0, 2)
    );
}

/// The limit applies to logins only (`Builder::max_sessions_per_principal`): a principal left
/// over it (the limit lowered since, or an import) keeps its sessions, and a request that
/// saves one of them without changing its principal neither fails nor logs the others out.
#[test]
fn a_save_that_keeps_the_principal_meets_no_limit() {
    for policy in [OnPrincipalLimit::Refuse, OnPrincipalLimit::EvictOldest] {
        let f = fixture();
        let ids: Vec<_> = (0..3)
            .map(|_| {
                f.advance(10);
                login(&f.store, "alice")
            })
            .collect();
        let f = f.reopen(Store::builder().max_sessions_per_principal(2, policy));
        f.advance(10);
        let mut s = f.store.load(&ids[2]).unwrap().unwrap();
        s.insert("cart", &3).unwrap();
        s.save().unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        drop(s);
        for id in &ids {
            assert!(f.store.load(id).unwrap().is_some(), "{policy:?}");
        }
        assert_eq!(f.store.sessions_of("alice").unwrap().len(), 3, "{policy:?}");
    }
}
