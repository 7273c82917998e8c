//! One connection type for a single Redis server or a Redis Cluster.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::RedisConfig;

/// Cheap to clone: both variants multiplex over shared connections.
#[derive(Clone)]
pub enum Conn {
    /// Reconnects by itself after a lost connection.
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub async fn open(config: &RedisConfig) -> RedisResult<Conn> {
        let timeout = config.op_timeout;
        if config.cluster {
            let client = redis::cluster::ClusterClient::builder(config.nodes.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(config.nodes[0].as_str())?;
            // No response timeout of redis-rs's own: every call through
            // the store is already bounded by the operation timeout
            // (`RedisStore::call`), and a second timer per call cost about
            // 1,000 instructions (arming, polling and dropping it). A call
            // that times out drops its answer either way; a dropped
            // connection is still seen and reconnected.
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(None)
                .set_number_of_retries(2)
                .set_max_delay(std::time::Duration::from_millis(500));
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, manager).await?,
            ))
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
