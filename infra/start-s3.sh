#!/usr/bin/env bash
# Local S3-compatible server for development without Docker: s3rver (a devDependency) via
# infra/s3-server.mjs, kept under $DATA_DIR/s3.
#
#   infra/start-s3.sh [start|stop|status]      (default: start)
#
# Environment: DATA_DIR (./.data), S3_PORT (9000), S3_ADDRESS (127.0.0.1), S3_BUCKET (cacheblend).
# Runs in the background with a pidfile and log in $DATA_DIR/s3 and creates the bucket. Starting an
# already running server is a no-op. Prints the variables the service needs. s3rver is a test double
# (objects are overwritten in place, Content-MD5 is not checked): use MinIO or S3 for real deployments.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA_DIR="${DATA_DIR:-./.data}"
S3_PORT="${S3_PORT:-9000}"
S3_ADDRESS="${S3_ADDRESS:-127.0.0.1}"
S3_BUCKET="${S3_BUCKET:-cacheblend}"
mkdir -p "$DATA_DIR/s3"
dir="$(cd "$DATA_DIR/s3" && pwd)"
pidfile="$dir/s3-server.pid"
logfile="$dir/s3-server.log"
objects="$dir/objects"

running_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

print_env() {
  echo "KV_STORE_URL=s3://$S3_BUCKET/kv"
  echo "S3_ENDPOINT=http://$S3_ADDRESS:$S3_PORT"
  echo "S3_ACCESS_KEY_ID=S3RVER"
  echo "S3_SECRET_ACCESS_KEY=S3RVER"
  echo "S3_FORCE_PATH_STYLE=true"
}

case "${1:-start}" in
  start)
    if pid="$(running_pid)"; then
      echo "s3-server already running (pid $pid)"
    else
      if [[ ! -d "$here/../node_modules/s3rver" ]]; then
        echo "s3rver is not installed; run npm ci (it is a devDependency)" >&2
        exit 1
      fi
      : >"$logfile"
      # --openssl-legacy-provider: s3rver's list continuation tokens use DES (see s3-server.mjs).
      nohup node --openssl-legacy-provider "$here/s3-server.mjs" \
        --port "$S3_PORT" --address "$S3_ADDRESS" --directory "$objects" --bucket "$S3_BUCKET" \
        >>"$logfile" 2>&1 </dev/null &
      pid=$!
      echo "$pid" >"$pidfile"
      for _ in $(seq 1 100); do
        grep -q '"endpoint"' "$logfile" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if ! grep -q '"endpoint"' "$logfile" 2>/dev/null; then
        echo "s3-server did not start; see $logfile" >&2
        tail -n 20 "$logfile" >&2 || true
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        exit 1
      fi
      echo "s3-server started (pid $pid), objects in $objects"
    fi
    print_env
    ;;
  stop)
    if pid="$(running_pid)"; then
      kill -TERM "$pid"
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      echo "s3-server stopped"
    else
      echo "s3-server not running"
    fi
    ;;
  status)
    if pid="$(running_pid)"; then
      echo "s3-server running (pid $pid) on $S3_ADDRESS:$S3_PORT"
    else
      echo "s3-server not running"
      exit 3
    fi
    ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
