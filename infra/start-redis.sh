#!/usr/bin/env bash
# Local redis-server for development (no Docker), kept under $DATA_DIR/redis.
#
#   infra/start-redis.sh [start|stop|status]      (default: start)
#
# Environment: DATA_DIR (./.data), REDIS_PORT (6379), REDIS_BIND (127.0.0.1).
# Runs daemonized with a pidfile and log in $DATA_DIR/redis, `maxmemory-policy noeviction` (BullMQ needs
# it) and an append-only file so queued jobs survive a restart. Starting an already running server is a
# no-op. Prints the REDIS_URL to use. Needs redis-server (Debian: apt-get install -y redis-server).
set -euo pipefail

DATA_DIR="${DATA_DIR:-./.data}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_BIND="${REDIS_BIND:-127.0.0.1}"
mkdir -p "$DATA_DIR/redis"
dir="$(cd "$DATA_DIR/redis" && pwd)"
pidfile="$dir/redis.pid"
logfile="$dir/redis.log"

running_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ping_redis() {
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(redis-cli -h "$REDIS_BIND" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
  else
    local reply=''
    { exec 3<>"/dev/tcp/$REDIS_BIND/$REDIS_PORT"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 1 reply <&3 || true
    exec 3>&- 3<&-
    [[ "$reply" == +PONG* ]]
  fi
}

case "${1:-start}" in
  start)
    if pid="$(running_pid)"; then
      echo "redis-server already running (pid $pid)"
    else
      if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis-server not found; install it (Debian: apt-get install -y redis-server)" >&2
        exit 1
      fi
      redis-server \
        --daemonize yes \
        --pidfile "$pidfile" \
        --logfile "$logfile" \
        --dir "$dir" \
        --port "$REDIS_PORT" \
        --bind "$REDIS_BIND" \
        --protected-mode yes \
        --maxmemory-policy noeviction \
        --save '' \
        --appendonly yes
      for _ in $(seq 1 100); do
        ping_redis && break
        sleep 0.1
      done
      if ! ping_redis; then
        echo "redis-server did not answer PING on $REDIS_BIND:$REDIS_PORT; see $logfile" >&2
        tail -n 20 "$logfile" >&2 || true
        exit 1
      fi
      echo "redis-server started (pid $(cat "$pidfile")), data in $dir"
    fi
    echo "REDIS_URL=redis://$REDIS_BIND:$REDIS_PORT"
    ;;
  stop)
    if pid="$(running_pid)"; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        echo "redis-server (pid $pid) did not stop within 10 s" >&2
        exit 1
      fi
      echo "redis-server stopped"
    else
      echo "redis-server not running"
    fi
    ;;
  status)
    if pid="$(running_pid)"; then
      echo "redis-server running (pid $pid) on $REDIS_BIND:$REDIS_PORT"
    else
      echo "redis-server not running"
      exit 3
    fi
    ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
