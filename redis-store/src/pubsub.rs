//! Pub/sub on the namespace's channels: the wake channel behind
//! [`RedisStore::timer_wakeups`], and [`RedisStore::publish`] /
//! [`RedisStore::messages`] for other crates' channels (http-front relays
//! push deliveries on `push`; the channel name is its own).
//!
//! Pub/sub is at most once: a message published while a subscription is
//! down is lost. So each listener reconnects by itself and says when it
//! lost the connection, and its user decides what that means (the timer
//! loop looks again; the push relay has the outbox behind it).
//!
//! A subscription needs a connection of its own (a subscribed connection
//! can run nothing else), so a listener opens one to a node of the
//! configuration instead of using the store's shared `conn::Conn`;
//! publishing is an ordinary command and goes through [`RedisStore::call`].

use std::time::Duration;

use engine::store::StoreError;
use redis::AsyncCommands;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::RedisStore;

impl RedisStore {
    /// Listens on the namespace's wake channel (a write armed a timer, on any
    /// node) and pings the returned receiver, so every node's timer loop
    /// looks again. Reconnects by itself; ends when the sender side is gone.
    pub fn timer_wakeups(&self) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        let on_lost = tx.clone();
        self.listen(
            self.keys.wake(),
            move |_| tx.send(()).is_ok(),
            move || {
                // Timers armed while we were away must be looked at.
                on_lost.send(()).is_ok()
            },
        );
        rx
    }

    /// Publishes `message` on the namespace's channel `name`, to every node
    /// that listens with [`RedisStore::messages`].
    pub async fn publish(&self, name: &str, message: Vec<u8>) -> Result<(), StoreError> {
        let channel = self.keys.channel(name);
        self.call(|mut c| async move { c.publish::<_, _, ()>(channel, message).await })
            .await
    }

    /// Publishes `messages` on the namespace's channel `name`, in order, in
    /// one round trip (a pipeline).
    pub async fn publish_many(&self, name: &str, messages: Vec<Vec<u8>>) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let channel = self.keys.channel(name);
        let mut pipe = redis::pipe();
        for message in messages {
            pipe.publish(&channel, message).ignore();
        }
        self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    /// What is published on the namespace's channel `name`, as it comes.
    /// At most `buffer` messages wait; past that, newer ones are dropped
    /// (pub/sub is at most once anyway). Reconnects by itself.
    pub fn messages(&self, name: &str, buffer: usize) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = tokio::sync::mpsc::channel(buffer.max(1));
        let closed = tx.clone();
        self.listen(
            self.keys.channel(name),
            move |payload| match tx.try_send(payload) {
                Ok(()) => true,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    warn!("Pub/sub backlog full; a message was dropped.");
                    true
                }
                Err(_) => false,
            },
            move || !closed.is_closed(),
        );
        rx
    }

    /// Subscribes to `channel` and calls `on_message` with each payload
    /// until it answers false; after a lost connection calls `on_lost` (false
    /// ends it too) and subscribes again.
    fn listen(
        &self,
        channel: String,
        mut on_message: impl FnMut(Vec<u8>) -> bool + Send + 'static,
        mut on_lost: impl FnMut() -> bool + Send + 'static,
    ) {
        let nodes = self.config.nodes.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            // On a cluster any node will do (a PUBLISH reaches every node), so
            // each reconnect tries the next one in case this one is down.
            for node in nodes.iter().cycle() {
                match subscribe(node, &channel, &mut on_message).await {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(channel, error = %e, "Pub/sub channel lost; reconnecting.");
                        if !on_lost() {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }
}

async fn subscribe(
    node: &str,
    channel: &str,
    on_message: &mut (impl FnMut(Vec<u8>) -> bool + Send),
) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let client = redis::Client::open(node)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    info!(channel, "Listening on pub/sub.");
    let mut messages = pubsub.on_message();
    while let Some(m) = messages.next().await {
        if !on_message(m.get_payload_bytes().to_vec()) {
            return Ok(());
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "subscription closed",
    )))
}
