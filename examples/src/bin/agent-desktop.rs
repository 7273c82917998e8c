//! An agent desktop: goes ready, serves chat services, goes not-ready.
//!
//! cargo run -p examples --bin agent-desktop -- --server http://127.0.0.1:8080 --agent alice

use std::time::Duration;

use clap::Parser;
use examples::agent_desktop::{self, Options};

/// Agent-desktop simulator for callbackd's agent API.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Base URL of the callbackd server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Agent id (PUT /api/v1/agents/{id}).
    #[arg(long, default_value = "alice")]
    agent: String,
    /// Display name (default: the agent id).
    #[arg(long, default_value = "")]
    name: String,
    /// Queues the agent serves (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_value = "support")]
    queues: Vec<String>,
    /// How many services the agent may hold at once.
    #[arg(long, default_value_t = 1)]
    max_concurrent: u32,
    /// Stop (going not-ready) after serving this many services.
    #[arg(long, default_value_t = 1)]
    serve: usize,
    /// Complete a chat after replying to this many customer messages.
    #[arg(long, default_value_t = 3)]
    complete_after: usize,
    /// Complete a chat after the customer has been silent this many seconds.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Poll interval in milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Give up (going not-ready, exiting non-zero) after this many seconds; 0 waits forever.
    #[arg(long, default_value_t = 0)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("agent-desktop: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opts = Options {
        agent_id: args.agent,
        name: args.name,
        queues: args.queues,
        max_concurrent: args.max_concurrent,
        serve: args.serve,
        complete_after: args.complete_after,
        idle: Duration::from_secs(args.idle_secs),
        poll: Duration::from_millis(args.poll_ms.max(10)),
        timeout: (args.timeout_secs > 0).then(|| Duration::from_secs(args.timeout_secs)),
        print: true,
    };
    agent_desktop::run(&args.server, &opts).await?;
    Ok(())
}
