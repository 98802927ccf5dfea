#!/usr/bin/env bash
# Stops what infra/start-rgw.sh DIR started (radosgw, then the OSD, then the monitor), by their pidfiles
# under DIR/run. DIR stays (config, logs); the objects were in the OSD's memory and are gone.
#
#   infra/stop-rgw.sh DIR
set -euo pipefail
[[ $# -eq 1 ]] || {
  echo "usage: infra/stop-rgw.sh DIR" >&2
  exit 2
}
dir="$1"
stopped=0
for name in client.rgw osd.0 mon.a; do
  pidfile="$dir/run/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    stopped=$((stopped + 1))
  fi
  rm -f "$pidfile"
done
rm -f "$dir/endpoint"
echo "stop-rgw: stopped $stopped process(es) in $dir"
