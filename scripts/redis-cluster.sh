#!/usr/bin/env bash
# A three-master Redis Cluster (no replicas) on loopback, for trying
# `callbackd --store redis+cluster://…` by hand. Throw-away: nothing is
# persisted, and the nodes listen on 127.0.0.1 only.
#
#   scripts/redis-cluster.sh [start] [DIR]   start the nodes, create the cluster,
#                                            print the --store URL
#   scripts/redis-cluster.sh stop [DIR]      shut the nodes down
#
# DIR (or $REDIS_CLUSTER_DIR; default /tmp/callbackd-redis-cluster) holds one
# subdirectory per node: its nodes.conf, log and pid file.
# $REDIS_CLUSTER_PORTS (default "7000 7001 7002") picks the client ports. Each
# node also listens on port + 10000 (the cluster bus), so keep ports <= 55535.
# $REDIS_SERVER / $REDIS_CLI override the binaries (redis 7 or later).
#
# redis-store/src/testing.rs (`RedisCluster`) starts the same cluster for
# the tests; keep the two in step.
set -euo pipefail

cmd=start
case "${1:-}" in start | stop) cmd=$1; shift ;; esac
dir=${1:-${REDIS_CLUSTER_DIR:-/tmp/callbackd-redis-cluster}}
read -r -a ports <<<"${REDIS_CLUSTER_PORTS:-7000 7001 7002}"
server=${REDIS_SERVER:-/usr/bin/redis-server}
cli=${REDIS_CLI:-redis-cli}

if [[ $cmd == stop ]]; then
    for p in "${ports[@]}"; do
        # NOSAVE: the data is throw-away. A node that is already gone is fine.
        "$cli" -p "$p" shutdown nosave 2>/dev/null && echo "stopped 127.0.0.1:$p" || true
    done
    exit 0
fi

addrs=()
for p in "${ports[@]}"; do
    (( p <= 55535 )) || { echo "port $p: its bus port $((p + 10000)) is out of range" >&2; exit 1; }
    # Never start over a running node: that would delete its nodes.conf.
    if "$cli" -p "$p" ping >/dev/null 2>&1; then
        echo "127.0.0.1:$p already answers; run '$0 stop' first" >&2
        exit 1
    fi
    addrs+=("127.0.0.1:$p")
    # A stale nodes.conf would make the node rejoin an old cluster, which
    # `--cluster create` refuses; start from an empty directory instead.
    rm -rf "$dir/$p"
    mkdir -p "$dir/$p"
    # --save "" --appendonly no: nothing on disk but nodes.conf.
    # --cluster-node-timeout: a short failure detection for a local cluster.
    "$server" --port "$p" --bind 127.0.0.1 --protected-mode no \
        --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 5000 \
        --dir "$dir/$p" --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log"
done

# --cluster create connects to each node, so wait until they answer.
for p in "${ports[@]}"; do
    for _ in $(seq 100); do
        "$cli" -p "$p" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
done

# Splits the 16384 slots evenly over the masters (0-5460, 5461-10922,
# 10923-16383 for three) and joins them; --cluster-yes skips the prompt.
if ! "$cli" --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
    >"$dir/create.log" 2>&1; then
    cat "$dir/create.log" >&2
    exit 1
fi

# `create` returns once the nodes agree on the configuration; a node only
# serves requests once it sees every slot covered (cluster_state:ok).
for p in "${ports[@]}"; do
    for i in $(seq 200); do
        [[ $("$cli" -p "$p" cluster info) == *cluster_state:ok* ]] && break
        (( i < 200 )) || { echo "127.0.0.1:$p: cluster_state not ok after 20 s" >&2; exit 1; }
        sleep 0.1
    done
done

# Any node serves as a seed: the client learns the others from it.
echo "redis+cluster://$(IFS=,; echo "${addrs[*]}")?namespace=callbackd"
