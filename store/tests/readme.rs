//! The README's library example, run: the code between the markers below is the README's, line
//! for line (but the database's path, which is a temporary folder here), so the README cannot
//! drift from what compiles and works.

use std::error::Error;

/// The lines of the README's "The library in 20 lines" example.
fn readme_example() -> Vec<&'static str> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## The library in 20 lines")
        .expect("the README's library section");
    let code = &readme[start..];
    let code = &code[code.find("```rust\n").expect("its code block") + "```rust\n".len()..];
    let code = &code[..code.find("\n```").expect("the block's end")];
    code.lines().collect()
}

/// The lines of this file between the markers, without the test's indentation.
fn this_example() -> Vec<&'static str> {
    let source = include_str!("readme.rs");
    // Built apart, so that these lines are not found as the markers.
    let (begin, end) = (
        concat!("// README ", "begin\n"),
        concat!("    // README ", "end"),
    );
    let start = source.find(begin).expect("the begin marker") + begin.len();
    let end = start + source[start..].find(end).expect("the end marker");
    source[start..end]
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect()
}

#[test]
fn the_readme_library_example_is_this_test() {
    // The one line that differs: the README opens the database in the current folder.
    let ours = this_example()
        .into_iter()
        .map(|line| {
            if line.starts_with("let store = Store::open(") {
                r#"let store = Store::open("sessions.sessdb")?;"#
            } else {
                line
            }
        })
        .collect::<Vec<_>>();
    assert_eq!(readme_example(), ours);
}

#[test]
fn the_readme_library_example_runs() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sessions.sessdb");
    // README begin
    use sessdb::Store;

    let store = Store::open(&path)?;

    // Login: a new session for alice, with typed data.
    let mut session = store.create();
    session.set_principal(Some("alice"))?;
    session.insert("cart", &vec![1, 2, 3])?;
    session.save()?;
    let cookie = session.id().to_string(); // hand this to the client

    // Next request: load it back by id (None if unknown or expired).
    let mut session = store.load(&cookie.parse()?)?.expect("live session");
    let cart: Option<Vec<u32>> = session.get("cart")?;
    session.save()?; // end every request so: it moves the idle deadline, writing only when due

    // Privilege change: rotate the id; the old one stops working at once.
    session.cycle_id()?;

    // "Log alice out everywhere", or everywhere but here (after a password change).
    store.invalidate_principal_except("alice", session.id())?;
    store.invalidate_principal("alice")?;
    // README end
    // What the example's comments say happened.
    assert_eq!(cart, Some(vec![1, 2, 3]));
    assert!(store.load(&cookie.parse()?)?.is_none(), "rotated away");
    assert!(store.load(session.id())?.is_none(), "logged out everywhere");
    assert!(store.sessions_of("alice")?.is_empty());
    Ok(())
}
