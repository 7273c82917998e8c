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

use engine::testing::ScenarioBuilder;
use runtime::notices::MailConfig;
use tests::smtp::SmtpSink;
use tests::{spawn_app, TestApp};

/// Longest one script may run before it is killed and the test fails.
const LIFETIME: Duration = Duration::from_secs(120);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pages/client")
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pages")
}

/// Runs `script` against `base` (then `args`); panics with its output when
/// it fails; its standard output when it passes.
async fn run(script: &str, base: &str) -> String {
    run_with(script, base, &[]).await
}

async fn run_with(script: &str, base: &str, args: &[&str]) -> String {
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
        .args(args)
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
    stdout.into_owned()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_books_on_the_page_gets_the_mail_and_moves_then_cancels_by_its_link() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .mail(MailConfig {
            smtp_url: sink.url(),
            from: "callbackd <noreply@example.com>".into(),
        })
        .spawn()
        .await;
    let out = run("book.mjs", &app.url("")).await;
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("booked: "))
        .expect("the script names the booking")
        .to_owned();

    // The confirmation e-mail carries the link to change or cancel.
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    let mail = mails
        .iter()
        .find(|m| m.to == ["fatima@example.ae"])
        .expect("the customer's confirmation");
    let text = mail.text_body().expect("a text body");
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Change or cancel: "))
        .unwrap_or_else(|| panic!("no manage link in:\n{text}"))
        .trim()
        .to_owned();
    assert!(link.contains(&format!("/booking/{id}?token=")), "{link}");

    run_with("manage.mjs", &app.url(""), &[&link]).await;

    // The move and the cancel were mailed too, with the same link.
    let mails = sink.wait_for(3, Duration::from_secs(10)).await;
    let subjects: Vec<String> = mails
        .iter()
        .filter(|m| m.to == ["fatima@example.ae"])
        .filter_map(|m| m.subject())
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(
        subjects[1].contains("moved")
            || subjects[1].contains("Moved")
            || subjects[1].contains("rescheduled"),
        "{subjects:?}"
    );
    assert!(
        subjects[2].to_lowercase().contains("cancel"),
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_watches_filters_cancels_two_and_downloads_the_csv() {
    let app = spawn_app().await;
    run("supervisor.mjs", &app.url("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_on_the_sites_own_page_opens_the_callback_page_in_a_panel() {
    // The site is another origin, which callbackd allows to frame its pages.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let site = format!("http://127.0.0.1:{port}");
    let app = TestApp::builder().frame_origins(&[&site]).spawn().await;
    run_with("widget.mjs", &app.url(""), &[&port.to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_becomes_a_video_call_that_really_connects_then_the_survey() {
    let app = spawn_app().await;
    run("video-call.mjs", &app.url("")).await;
}

/// A booked video scenario open around the clock in UTC, 5-minute slots,
/// that enters the queue an hour before its slot (so at once).
fn booked_video() -> ScenarioBuilder {
    ScenarioBuilder::video_call()
        .name("video-booked")
        .key("_target", r#"{ queue = "vbooked", priority = 5 }"#)
        .key("_mandatory_fields", r#"["_customer_number"]"#)
        .table("_texts", r#"created = "Your video appointment is booked""#)
        .video(
            r#"room_ttl = "1h"
waiting_room = { image = "/assets/waiting-room.svg", message = "Your advisor will be with you at your appointment time." }"#,
        )
        .always_open(
            "timezone = \"UTC\"\nslot = \"5m\"\njoin_url = \"{base_url}/video/{service_id}\"",
            2,
            "[_schedule.buffers]\nenter_queue = \"1h\"",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_visitor_waits_in_the_waiting_room_which_moves_to_the_room() {
    let app = TestApp::builder()
        .with_scenario(&booked_video())
        .spawn()
        .await;
    run("waiting.mjs", &app.url("")).await;
}
