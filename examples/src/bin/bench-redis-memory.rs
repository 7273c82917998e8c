//! How much Redis memory one waiting service takes, everything included:
//! the record, its index entry, its place in the customer/state/scenario
//! sets, its queue member, its timers and its deadline.
//!
//! ```text
//! cargo run --release -p examples --bin bench-redis-memory -- --services 20000
//! ```
//!
//! Starts a redis-server of its own on a free port (or uses `--redis URL`),
//! writes N services as the shell does (the seed's chat-delay create, with the
//! seed's user data), and divides the growth of `used_memory` by N.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use engine::machine;
use engine::scenario::Scenarios;
use engine::store::Store;
use redis_store::testing::RedisServer;
use redis_store::{RedisConfig, RedisStore};
use runtime::clock::{Clock, SystemClock};

#[derive(Parser)]
struct Args {
    /// How many waiting services to write.
    #[arg(long, default_value_t = 20_000)]
    services: usize,
    /// An existing Redis (`redis://HOST:PORT/DB`); a fresh namespace is used.
    #[arg(long)]
    redis: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server;
    let (url, plain) = match &args.redis {
        Some(url) => (
            format!("{url}?namespace=bench-{}", uuid::Uuid::new_v4().simple()),
            url.clone(),
        ),
        None => {
            server = RedisServer::spawn_local("bench");
            (server.url.clone(), server.plain_url.clone())
        }
    };
    let scenarios = Scenarios::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios"
    )))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let scenario = scenarios.get("chat-delay").context("chat-delay")?.clone();
    let clock = Arc::new(SystemClock);
    let store = RedisStore::connect(RedisConfig::parse(&url)?, clock.clone()).await?;
    let mut raw = redis::Client::open(plain.as_str())?
        .get_multiplexed_async_connection()
        .await?;

    let used = |info: String| -> anyhow::Result<i64> {
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .context("used_memory")?
            .trim()
            .parse()
            .context("used_memory number")
    };
    let before = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut raw)
            .await?,
    )?;
    let mut record_bytes = 0;
    for i in 0..args.services {
        let new = examples::bench::seed_service(
            format!("408{:07}", i),
            "b16416334828b1d26ef14f329628b55b5a8c631d8928a371a5584722dd7fb673".to_owned(),
        );
        let applied = machine::create(new, &scenario, clock.now());
        record_bytes = applied.record.encode().len();
        store.put(&applied.record, None).await?;
    }
    let after = used(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut raw)
            .await?,
    )?;
    let per = (after - before) as f64 / args.services as f64;
    println!(
        "{} waiting services: used_memory grew {} bytes, {:.0} bytes per service (record JSON {} bytes)",
        args.services,
        after - before,
        per,
        record_bytes
    );
    Ok(())
}
