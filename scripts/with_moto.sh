#!/usr/bin/env bash
# Runs a command with moto_server (DynamoDB and KMS emulation) on a free loopback port, exported
# as MOTO_ENDPOINT, and stops the server afterwards whatever the command's outcome. The server
# takes one request at a time (moto_atomic.py), so conditional writes are atomic as on AWS.
set -euo pipefail
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t moto.XXXXXX.log)
python3 "$(dirname "$0")/moto_atomic.py" 127.0.0.1 "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "moto_server failed to start:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.2
done
export MOTO_ENDPOINT="http://127.0.0.1:$port"
"$@"
