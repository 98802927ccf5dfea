#!/usr/bin/env bash
# Quick-start demo: bring the service up on the embedded defaults (Redis started under .data if none
# answers, file KV store, stories260K from models/), ingest two documents, wait until their chunk caches
# are precomputed, ask a question in blend and full mode, then keep serving until Ctrl-C (which stops the
# service cleanly: workers closed, its Redis stopped, exit 0).
#
#   npm run demo              the tiny default model: blend answers, but is no faster than full (see below)
#   npm run demo -- --large   a 125M-parameter Llama (random weights, written once under $DATA_DIR/models):
#                             four chunks of ~500 tokens, where blend's time to first token is a fraction
#                             of a full prefill's
#   npm run demo -- --s3      chunk caches in a real S3 server: radosgw on a one-node Ceph under
#                             $DATA_DIR/rgw (infra/start-rgw.sh; apt-get install -y radosgw ceph-mon
#                             ceph-osd), bucket `cacheblend`, stopped with the service (with --large too)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT=${PORT:-8080}
DATA_DIR=${DATA_DIR:-.data}
log="${DATA_DIR}/service.log"
base="http://127.0.0.1:${PORT}"
large=false
s3=false
for arg in "$@"; do
  case "$arg" in
    --large) large=true ;;
    --s3) s3=true ;;
    *) echo "usage: npm run demo [-- --large] [--s3]" >&2; exit 2 ;;
  esac
done

if [[ -z "${REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1; then
  echo "demo: redis-server is not installed and REDIS_URL is unset." >&2
  echo "      Install it (Debian/Ubuntu: apt-get install -y redis-server) or point REDIS_URL at a Redis." >&2
  exit 1
fi
# Another server on the port would answer the demo's requests in its place.
if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
  echo "demo: port ${PORT} is taken: another process is listening on 127.0.0.1:${PORT}." >&2
  echo "      Stop it, or choose another port: PORT=8081 npm run demo" >&2
  exit 1
fi

node bin/build.js # compiles dist/ only when a source changed
mkdir -p "${DATA_DIR}"
args=(serve --port "${PORT}" --data-dir "${DATA_DIR}")
if $large; then
  model="${DATA_DIR}/models/llama-125m-random"
  if [[ ! -f "${model}/model.safetensors.index.json" ]]; then
    echo "demo: writing a random 125M-parameter Llama checkpoint to ${model} (once) ..."
    node dist/bench/make-checkpoint.js "${model}" 125M
  fi
  args+=(--model "${model}" --chunk-token-budget 512)
fi

rgw_dir="${DATA_DIR}/rgw"
if $s3; then
  echo "demo: starting radosgw (one-node Ceph) under ${rgw_dir} ..."
  endpoint=$(infra/start-rgw.sh "${rgw_dir}" | tail -n 1) || exit 1
  set -a
  # shellcheck disable=SC1091
  source "${rgw_dir}/credentials.env"
  set +a
  NODE_NO_WARNINGS=1 node --input-type=module -e '
    import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
    const s3 = new S3Client({ endpoint: process.argv[1], region: "us-east-1", forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: "cacheblend" })).catch((err) => {
      if (err.name !== "BucketAlreadyOwnedByYou") throw err;
    });' "${endpoint}"
  export KV_STORE_URL=s3://cacheblend/kv S3_ENDPOINT="${endpoint}" S3_FORCE_PATH_STYLE=true
  export S3_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID}" S3_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY}"
  echo "demo: chunk caches go to ${KV_STORE_URL} at ${endpoint}"
fi
stop_rgw() { if $s3; then infra/stop-rgw.sh "${rgw_dir}" >/dev/null || true; fi; }

# The service runs in a process group of its own (job control on), so Ctrl-C reaches only this script,
# which then stops the service with one SIGTERM and waits for its clean shutdown. Without it the terminal
# would signal both, and the script's own signal would be the service's second: an immediate exit.
set -m
node bin/cacheblend.js "${args[@]}" 2>>"${log}" &
pid=$!
set +m
stop() {
  # Ignore further signals while stopping: `npm run demo` passes the terminal's Ctrl-C on, so it comes twice.
  trap '' INT TERM
  echo
  echo "demo: stopping the service (workers, then its Redis) ..."
  kill -TERM "$pid" 2>/dev/null || true
  local code=0
  wait "$pid" 2>/dev/null || code=$?
  stop_rgw
  if [[ $code -eq 0 ]]; then echo "demo: stopped cleanly"; else echo "demo: the service exited with $code (see ${log})" >&2; fi
  exit "$code"
}
trap stop INT TERM
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null; stop_rgw' EXIT

echo "demo: service logs go to ${log}; waiting for ${base}/readyz ..."
ready=false
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "demo: the service exited before it was ready; the end of ${log}:" >&2
    tail -n 5 "${log}" >&2
    exit 1
  fi
  if curl -sf "${base}/readyz" >/dev/null 2>&1; then ready=true; break; fi
  sleep 0.5
done
$ready || { echo "demo: the service did not become ready" >&2; exit 1; }

post() { curl -sS -X POST "${base}$1" -H 'content-type: application/json' -d "$2"; }
# The named fields of a JSON reply on stdin, numbers rounded: `ttftMs 618, contextTokens 2000`.
field() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const show = (v) => (typeof v === "number" ? String(Math.round(v)) : JSON.stringify(v));
    console.log(process.argv.slice(1).map((k) => `${k} ${show(r[k])}`).join(", "));' "$@"
}
until_ready() {
  for _ in $(seq 1 240); do
    status=$(curl -sS "${base}/v1/documents/$1")
    case "$status" in *'"status":"ready"'*) return 0 ;; *'"status":"failed"'*) echo "$status"; exit 1 ;; esac
    sleep 0.5
  done
  echo "demo: $1 not ready after 2 minutes" >&2
  exit 1
}

tiny_demo() {
  echo "demo: POST /v1/documents (two documents)"
  post /v1/documents '{"id": "lily", "text": "Once upon a time, there was a little girl named Lily. She had a red ball and she loved to play with it in the park."}'
  echo
  post /v1/documents '{"id": "dog", "text": "One day, a big dog came to the park. The dog saw the red ball and wanted to play too."}'
  echo
  for doc in lily dog; do
    until_ready "$doc"
    echo "demo: GET /v1/documents/${doc}"
    echo "$status"
  done
  for mode in blend full; do
    echo "demo: POST /v1/query (mode ${mode})"
    post /v1/query "{\"question\": \"Lily threw the ball and the dog\", \"documents\": [\"lily\", \"dog\"], \"mode\": \"${mode}\", \"maxTokens\": 24}"
    echo
  done
  cat <<'EOF'
demo: On this 260K-parameter model blend is no faster than full (compare ttftMs): a whole prefill of
      69 context tokens is a few milliseconds of onnxruntime launch costs, not compute, and blend launches
      more runs (the check layer, the selection, the selective layers). Blending saves compute, so it pays
      where compute dominates: `npm run demo -- --large` shows a 125M model over ~2,000 context tokens.
EOF
}

large_demo() {
  # Four chunks of ~500 tokens in cbqa-3M's vocabulary (the checkpoint carries its tokenizer).
  local chunks
  chunks=$(node -e '
    const chunk = (c) => Array.from({ length: 125 }, (_, i) => `O${(c * 125 + i) % 150} is ${["red", "green", "blue", "pink"][i % 4]} .`).join(" ");
    console.log(JSON.stringify([0, 1, 2, 3].map(chunk)));')
  echo "demo: POST /v1/documents (one document, four chunks of ~500 tokens)"
  post /v1/documents "{\"id\": \"facts\", \"chunks\": ${chunks}}"
  echo
  until_ready facts
  echo "demo: each mode twice (the first run of a shape warms onnxruntime up); the second is shown:"
  for mode in full blend; do
    post /v1/query "{\"question\": \"<q> color of O7 ? <a>\", \"documents\": [\"facts\"], \"mode\": \"${mode}\", \"maxTokens\": 1}" >/dev/null
    echo -n "  ${mode}: "
    post /v1/query "{\"question\": \"<q> color of O7 ? <a>\", \"documents\": [\"facts\"], \"mode\": \"${mode}\", \"maxTokens\": 1}" |
      field ttftMs contextTokens recomputedTokens
  done
  cat <<'EOF'
demo: With 12 layers of dimension 768 over ~2,000 context tokens the prefill is compute: blend recomputes
      15% of the context tokens above the check layer and reads the rest from the stored chunk caches, so
      its time to first token is a fraction of full's. (Random weights: the answers mean nothing.)
EOF
}

if $large; then large_demo; else tiny_demo; fi

echo "demo: the service keeps running on ${base} (Ctrl-C to stop)"
wait "$pid" || true
