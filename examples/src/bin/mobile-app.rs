//! A customer's mobile app: creates a chat callback, waits, chats, ends.
//!
//! cargo run -p examples --bin mobile-app -- --server http://127.0.0.1:8080 --scenario chat-delay

use std::time::Duration;

use clap::Parser;
use examples::mobile_app::{self, Options};

/// Mobile-app simulator for callbackd's GMS Callback API.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Base URL of the callbackd server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Scenario to create the callback in (chat-delay, chat-immediate, ...).
    #[arg(long, default_value = "chat-delay")]
    scenario: String,
    /// `_customer_number`.
    #[arg(long, default_value = "4082652649")]
    customer: String,
    /// `usr_customer_name` (first word: the chat's firstName, the rest: lastName).
    #[arg(long, default_value = "Bob Markel")]
    name: String,
    /// `usr_reason`, also the chat subject.
    #[arg(long, default_value = "billing question")]
    reason: String,
    /// `_device_notification_id`, also sent as the `gms_user` header.
    #[arg(long, default_value = mobile_app::SEED_DEVICE_ID)]
    device_id: String,
    /// The chat's `email`.
    #[arg(long, default_value = "bob.markel@example.com")]
    email: String,
    /// Poll interval in milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Give up (cancelling the service, exiting non-zero) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("mobile-app: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opts = Options {
        scenario: args.scenario,
        customer_number: args.customer,
        customer_name: args.name,
        reason: args.reason,
        device_id: args.device_id,
        email: args.email,
        poll: Duration::from_millis(args.poll_ms.max(10)),
        timeout: Duration::from_secs(args.timeout_secs),
        print: true,
        ..Options::default()
    };
    let summary = mobile_app::run(&args.server, &opts).await?;
    if !summary.ended_connected() {
        anyhow::bail!(
            "service {} ended {} ({}), not COMPLETED (AGENT_CONNECTED)",
            summary.service_id,
            summary.final_state,
            summary.final_reason.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
