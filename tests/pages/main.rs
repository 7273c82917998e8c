//! The pages in a real browser: Debian's Chromium driven by `playwright-core`
//! (npm, pointed at the system binary, so nothing is downloaded), with
//! axe-core checking each step. Each test starts callbackd in-process on
//! 127.0.0.1:0 and runs one script of `tests/pages/client/` against it; the
//! script prints a line per step and exits non-zero on the first failure,
//! or if any page logged a JavaScript error or got an unexpected failed
//! request. The screenshots land in `docs/pages/`, where the README shows
//! them.
//!
//! Needs `chromium` on the PATH (or `CHROMIUM`) and the npm packages:
//! `npm ci --prefix tests/pages/client` (scripts/test does both).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tests::spawn_app;

/// Longest one script may run before it is killed and the test fails.
const LIFETIME: Duration = Duration::from_secs(120);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pages/client")
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pages")
}

/// Runs `script` against `base`; panics with its output when it fails.
async fn run(script: &str, base: &str) {
    let dir = client_dir();
    for package in ["playwright-core", "axe-core"] {
        let path = dir.join("node_modules").join(package).join("package.json");
        assert!(
            path.is_file(),
            "{} is missing: run `npm ci --prefix tests/pages/client` (scripts/test does it)",
            path.display()
        );
    }
    let child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .arg(base)
        .arg(screenshots_dir())
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIFETIME, child)
        .await
        .unwrap_or_else(|_| panic!("{script} ran past {LIFETIME:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().last() == Some("ok"),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_asks_for_a_chat_waits_is_told_the_agent_is_ready_and_chats() {
    let app = spawn_app().await;
    run("callback-chat.mjs", &app.url("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_console_takes_offers_and_chats_with_the_customer_page() {
    let app = spawn_app().await;
    run("chat-console.mjs", &app.url("")).await;
}
