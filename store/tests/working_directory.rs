//! A store opened by a relative path keeps working after the process changes its working
//! directory (a daemon's `chdir("/")`): what it creates or measures in its folder later (an
//! import's temporary file, the size on disk) is found where the store was opened. One test in
//! its own binary, since the working directory belongs to the whole process.

use sessdb::{Admin, ImportOptions, Store};

#[test]
fn a_store_opened_by_a_relative_path_imports_and_measures_after_a_chdir() {
    let opened_in = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    std::env::set_current_dir(opened_in.path()).expect("chdir");
    let store = Store::open("db").expect("open");
    let mut s = store.create();
    s.insert("n", &1).expect("insert");
    s.save().expect("save");
    let mut export = Vec::new();
    store.export(&mut export, true).expect("export");
    store.invalidate_handle(&s.handle()).expect("invalidate");

    std::env::set_current_dir(elsewhere.path()).expect("chdir");
    let report = store
        .import(&mut export.as_slice(), &ImportOptions::default())
        .expect("import after a chdir");
    assert_eq!(report.imported, 1, "{report:?}");
    assert!(store.stats().expect("stats").bytes_on_disk > 0);
    assert!(!elsewhere.path().join("db").exists());
}
