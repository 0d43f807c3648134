//! End-to-end tests live in tests/; this library holds what several of them share.

pub mod power;
pub mod writer;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `sessctl` binary of this workspace, built first if a lone `cargo test -p sessdb-e2e`
/// did not build it (the e2e package cannot depend on a binary of another package).
///
/// # Panics
/// When the test binary is not in `target/<profile>/deps` or the build fails.
pub fn sessctl_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    // target/<profile>/deps/<test> → target/<profile>/sessctl
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("sessctl{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "sessctl", "--bin", "sessctl"]);
        if profile_dir.file_name() == Some(OsStr::new("release")) {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p sessctl failed");
    }
    bin
}

/// `sessctl --db DB args…` as a command, with the tool's own environment variables cleared.
pub fn sessctl(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(sessctl_bin());
    cmd.env_remove("SESSCTL_DB")
        .env_remove("SESSCTL_SOCKET")
        .env_remove("SESSCTL_TIMEOUT")
        .env_remove("NO_COLOR")
        .arg("--db")
        .arg(db)
        .args(args);
    cmd
}
