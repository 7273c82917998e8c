#!/usr/bin/env bash
# Runs the README's walkthrough exactly as printed against a fresh callbackd,
# and checks that the flow ended where the README says it does.
set -euo pipefail
cd "$(dirname "$0")/.."
port=8080
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  echo "walkthrough: port $port is taken; the README's walkthrough needs it" >&2
  exit 1
fi
cargo build -q --bin callbackd
target_dir=${CARGO_TARGET_DIR:-target}
log=$(mktemp)
"$target_dir/debug/callbackd" --listen 127.0.0.1:$port > "$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:$port/healthz > /dev/null && break
  sleep 0.1
done
script=$(awk '/<!-- walkthrough:start -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on && !/^```/' README.md)
out=$(bash -euo pipefail -c "$script" 2>&1)
echo "$out"
grep -q '"_action":"get-dialog-user-confirmation-provide_code-false"' <<<"$out"
grep -q '"_action":"StartChat"' <<<"$out"
grep -q '"comet_channel":"/_genesys"' <<<"$out"
grep -q '"MESSAGE_FOR_MOBILE_APP_INTERNAL_USE"' <<<"$out"
grep -q '"_callback_reason":"AGENT_CONNECTED"' <<<"$out"
echo "walkthrough: 1 passed, 0 failed"
