//! Where the store lives: `RedisConfig`, parsed from `--store`.
//!
//! Kept apart from the store so that the URL grammar (which query
//! parameters are ours, which go on to the redis crate) can be read and
//! tested without a Redis.

use std::time::Duration;

/// Longest a store call may take before it counts as Redis being unavailable.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`{0}` is not a Redis URL (redis://HOST:PORT/DB or redis+cluster://HOST:PORT,HOST:PORT,...)")]
    BadUrl(String),
    #[error("the namespace `{0}` may hold only letters, digits, `-`, `_` and `.`")]
    BadNamespace(String),
    #[error("cannot reach Redis at {url}: {why}")]
    Unreachable { url: String, why: String },
}

/// Where the store lives, parsed from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Connection URLs without our own query parameters: one for a single
    /// server, the seed nodes for a cluster.
    pub nodes: Vec<String>,
    pub cluster: bool,
    /// Every key starts with `{namespace}:`; several deployments can share a Redis.
    pub namespace: String,
    pub op_timeout: Duration,
}

impl RedisConfig {
    /// `redis://HOST:PORT/DB[?namespace=NAME]` or
    /// `redis+cluster://HOST:PORT,HOST:PORT,...[?namespace=NAME]`.
    pub fn parse(text: &str) -> Result<RedisConfig, ConfigError> {
        let bad = || ConfigError::BadUrl(text.to_owned());
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        let cluster = match scheme {
            "redis" | "rediss" => false,
            "redis+cluster" | "rediss+cluster" => true,
            _ => return Err(bad()),
        };
        let (hosts, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let mut namespace = "callbackd".to_owned();
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("namespace", v)) => namespace = v.to_owned(),
                _ if pair.is_empty() => {}
                _ => kept.push(pair),
            }
        }
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::BadNamespace(namespace));
        }
        let node_scheme = scheme.trim_end_matches("+cluster");
        let suffix = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let nodes: Vec<String> = if cluster {
            hosts
                .split(',')
                .map(|h| format!("{node_scheme}://{}{suffix}", h.trim_end_matches('/')))
                .collect()
        } else {
            vec![format!("{node_scheme}://{hosts}{suffix}")]
        };
        for n in &nodes {
            url::Url::parse(n).map_err(|_| bad())?;
            if n.len() <= node_scheme.len() + 3 {
                return Err(bad());
            }
        }
        Ok(RedisConfig {
            nodes,
            cluster,
            namespace,
            op_timeout: DEFAULT_OP_TIMEOUT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_config(text: &str, expected: Result<(&[&str], bool, &str), &str>) {
        let got = RedisConfig::parse(text);
        match (got, expected) {
            (Ok(c), Ok((nodes, cluster, ns))) => {
                assert_eq!(c.nodes, nodes, "{text}");
                assert_eq!((c.cluster, c.namespace.as_str()), (cluster, ns), "{text}");
            }
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{text}: {e}"),
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn store_urls() {
        check_config(
            "redis://127.0.0.1:6379/0",
            Ok((&["redis://127.0.0.1:6379/0"], false, "callbackd")),
        );
        check_config(
            "redis://h:1/2?namespace=prod-1",
            Ok((&["redis://h:1/2"], false, "prod-1")),
        );
        check_config(
            "redis+cluster://a:7000,b:7001/?namespace=x",
            Ok((&["redis://a:7000", "redis://b:7001"], true, "x")),
        );
        check_config("redis://h:1?namespace=a{b}", Err("namespace"));
        check_config("redis://h:1?namespace=", Err("namespace"));
        check_config("memcached://h:1", Err("not a Redis URL"));
        check_config("127.0.0.1:6379", Err("not a Redis URL"));
        check_config("redis://", Err("not a Redis URL"));
    }
}
