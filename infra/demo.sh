#!/usr/bin/env bash
# Quick-start demo: bring the service up on the embedded defaults (Redis started under .data if none
# answers, file KV store, stories260K from models/), ingest a document, wait until its chunk
# caches are precomputed, ask a question in blend and full mode, then keep serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT=${PORT:-8080}
base="http://127.0.0.1:${PORT}"

if [[ -z "${REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1; then
  echo "demo: redis-server is not installed and REDIS_URL is unset." >&2
  echo "      Install it (Debian/Ubuntu: apt-get install -y redis-server) or point REDIS_URL at a Redis." >&2
  exit 1
fi

# Build (incremental), then the service itself, not `npm start`: npm does not pass SIGTERM on, so
# stopping it would orphan the server.
npm run --silent build
mkdir -p .data
node bin/cacheblend.js serve 2>>.data/service.log &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

echo "demo: service logs go to .data/service.log; waiting for ${base}/readyz ..."
for _ in $(seq 1 240); do
  curl -sf "${base}/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "demo: the service exited" >&2; exit 1; }
  sleep 0.5
done
curl -sf "${base}/readyz" >/dev/null || { echo "demo: the service did not become ready" >&2; exit 1; }

post() { curl -sS -X POST "${base}$1" -H 'content-type: application/json' -d "$2"; echo; }

echo "demo: POST /v1/documents (two documents)"
post /v1/documents '{"id": "lily", "text": "Once upon a time, there was a little girl named Lily. She had a red ball and she loved to play with it in the park."}'
post /v1/documents '{"id": "dog", "text": "One day, a big dog came to the park. The dog saw the red ball and wanted to play too."}'

for doc in lily dog; do
  for _ in $(seq 1 120); do
    status=$(curl -sS "${base}/v1/documents/${doc}")
    case "$status" in *'"status":"ready"'*) break ;; *'"status":"failed"'*) echo "$status"; exit 1 ;; esac
    sleep 0.5
  done
  echo "demo: GET /v1/documents/${doc}"
  echo "$status"
done

for mode in blend full; do
  echo "demo: POST /v1/query (mode ${mode})"
  post /v1/query "{\"question\": \"Lily threw the ball and the dog\", \"documents\": [\"lily\", \"dog\"], \"mode\": \"${mode}\", \"maxTokens\": 24}"
done

echo "demo: the service keeps running on ${base} (Ctrl-C to stop)"
wait "$pid"
