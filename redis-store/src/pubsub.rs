//! Pub/sub on the namespace's channels: the wake channel behind
//! [`RedisStore::timer_wakeups`], and [`RedisStore::publish`] /
//! [`RedisStore::messages`] for other crates' channels (http-front relays
//! push deliveries on `push`; the channel name is its own). A publish
//! answers how many listeners heard it, and a [`Subscription`] says when it
//! is up, so the relay can tell whether any other node listens.
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
use tokio::sync::watch;
use tracing::{info, warn};

use crate::RedisStore;

impl RedisStore {
    /// Listens on the namespace's wake channel (a write on any node armed a
    /// timer that is now the earliest, due within `WAKE_HORIZON`) and pings the returned receiver, so every node's timer loop
    /// looks again. Reconnects by itself; ends when the sender side is gone.
    pub fn timer_wakeups(&self) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        let on_lost = tx.clone();
        self.listen(
            self.keys.wake(),
            move |_| tx.send(()).is_ok(),
            || {},
            move || {
                // Timers armed while we were away must be looked at.
                on_lost.send(()).is_ok()
            },
        );
        rx
    }

    /// Publishes `messages` on the namespace's channel `name`, in order, in
    /// one round trip (a pipeline). Answers how many listeners the most
    /// heard of them reached, or None on a cluster, where a PUBLISH counts
    /// only the listeners of the server that took it.
    pub async fn publish(
        &self,
        name: &str,
        messages: Vec<Vec<u8>>,
    ) -> Result<Option<usize>, StoreError> {
        if messages.is_empty() {
            return Ok(Some(0));
        }
        let channel = self.keys.channel(name);
        let mut pipe = redis::pipe();
        for message in messages {
            pipe.publish(&channel, message);
        }
        let heard: Vec<usize> = self
            .call(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        Ok((!self.config.cluster).then(|| heard.into_iter().max().unwrap_or(0)))
    }

    /// What is published on the namespace's channel `name`, as it comes.
    /// At most `buffer` messages wait; past that, newer ones are dropped
    /// (pub/sub is at most once anyway). Reconnects by itself.
    pub fn messages(&self, name: &str, buffer: usize) -> Subscription {
        let (tx, rx) = tokio::sync::mpsc::channel(buffer.max(1));
        let (up, listening) = watch::channel(false);
        let down = up.clone();
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
            move || {
                let _ = up.send(true);
            },
            move || {
                let _ = down.send(false);
                !closed.is_closed()
            },
        );
        Subscription {
            messages: rx,
            listening,
        }
    }

    /// Subscribes to `channel`, calls `on_subscribed` once subscribed and
    /// `on_message` with each payload until it answers false; after a lost
    /// connection calls `on_lost` (false ends it too) and subscribes again.
    fn listen(
        &self,
        channel: String,
        mut on_message: impl FnMut(Vec<u8>) -> bool + Send + 'static,
        mut on_subscribed: impl FnMut() + Send + 'static,
        mut on_lost: impl FnMut() -> bool + Send + 'static,
    ) {
        let nodes = self.config.nodes.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            // On a cluster any node will do (a PUBLISH reaches every node), so
            // each reconnect tries the next one in case this one is down.
            for node in nodes.iter().cycle() {
                match subscribe(node, &channel, &mut on_message, &mut on_subscribed).await {
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
    on_subscribed: &mut (impl FnMut() + Send),
) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let client = redis::Client::open(node)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    info!(channel, "Listening on pub/sub.");
    on_subscribed();
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

/// A channel's messages, and whether the subscription is up.
pub struct Subscription {
    pub messages: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// True while subscribed; set to true again on every new subscription.
    pub listening: watch::Receiver<bool>,
}
