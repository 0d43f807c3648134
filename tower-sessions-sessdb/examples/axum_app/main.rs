//! sessdb behind axum: log in (the session id rotates), a counter, the list of your sessions
//! with a button to end any other one, log out. Sessions survive a restart.
//!
//! ```text
//! cargo run -p tower-sessions-sessdb --example axum_app -- [--addr 127.0.0.1:3000] [--db axum_app.sessdb]
//! ```
//! `AXUM_APP_ADDR` and `AXUM_APP_DB` set the same; the arguments win. While it runs,
//! `sessctl --db axum_app.sessdb list` (or `tui`, or `invalidate --principal alice`) reaches its
//! sessions through the admin socket in the database folder. Stop it with Ctrl-C: the store is
//! flushed on the way out.

mod app;

/// A service picks its allocator: on glibc's malloc, requests that save sessions at the same
/// time wait on malloc's locks (sessdb's docs, "Performance: pick the allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: axum_app [--addr ADDR] [--db PATH]
  --addr ADDR  where to listen (env AXUM_APP_ADDR; default 127.0.0.1:3000)
  --db PATH    the sessdb database folder (env AXUM_APP_DB; default axum_app.sessdb)";

struct Config {
    addr: SocketAddr,
    db: PathBuf,
}

impl Config {
    /// The configuration the arguments and environment give; `None` when they ask for help.
    fn parse(
        mut args: impl Iterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Config>, String> {
        let mut addr = env("AXUM_APP_ADDR").unwrap_or_else(|| "127.0.0.1:3000".to_string());
        let mut db = env("AXUM_APP_DB").unwrap_or_else(|| "axum_app.sessdb".to_string());
        while let Some(arg) = args.next() {
            let slot = match arg.as_str() {
                "--addr" => &mut addr,
                "--db" => &mut db,
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            };
            *slot = args
                .next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        }
        let addr = addr
            .parse()
            .map_err(|e| format!("--addr {addr:?}: {e} (expected IP:PORT)"))?;
        Ok(Some(Config {
            addr,
            db: db.into(),
        }))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_app: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some(config) = Config::parse(std::env::args().skip(1), |k| std::env::var(k).ok())? else {
        // Asked for: on stdout, and a success.
        println!("{USAGE}");
        return Ok(());
    };
    let store = app::open_store(&config.db)?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    eprintln!(
        "axum_app: http://{} (sessions in {}; admin socket {})",
        listener.local_addr()?,
        config.db.display(),
        store
            .admin_socket_path()
            .map_or("off".into(), |p| p.display().to_string()),
    );
    axum::serve(listener, app::app(store))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // The router, and with it the last store handle, is dropped here: the store is flushed.
    Ok(())
}
