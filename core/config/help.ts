/**
 * One line of help per configuration variable, and its default as a reader sees it: `cacheblend <service
 * command> --help` lists them beside the flags generated from the schema (docs/configuration.md has the
 * full table). test/unit/cli.test.ts checks that every variable has one.
 */
export const CONFIG_HELP: Readonly<Record<string, { default: string; help: string }>> = Object.freeze({
  PORT: { default: '8080', help: 'API port' },
  HOST: { default: '127.0.0.1', help: 'API bind address (0.0.0.0 in containers)' },
  DATA_DIR: { default: './.data', help: 'local state: file store, disk cache, embedded Redis' },
  REDIS_URL: {
    default: 'redis://127.0.0.1:6379',
    help: 'unset + nothing answering: npm start runs redis-server',
  },
  KV_STORE_URL: {
    default: 'file://$DATA_DIR/kv',
    help: 'file:///dir, s3://bucket[/prefix], memory:// (tests)',
  },
  S3_ENDPOINT: { default: 'AWS', help: 'e.g. http://127.0.0.1:9000 for MinIO' },
  S3_REGION: { default: 'us-east-1', help: 'S3 region' },
  S3_ACCESS_KEY_ID: { default: 'SDK default chain', help: 'S3 credentials: set both or neither' },
  S3_SECRET_ACCESS_KEY: { default: 'SDK default chain', help: '(never logged)' },
  S3_FORCE_PATH_STYLE: { default: 'true', help: 'MinIO and s3rver need path-style' },
  MODEL: { default: 'stories260K', help: 'model folder path, or a name looked up in the model path' },
  CACHEBLEND_MODEL_PATH: {
    default: '<repo>/models:$DATA_DIR/models',
    help: ':-separated folders searched for MODEL',
  },
  CACHEBLEND_MODEL_CACHE: {
    default: 'the Hugging Face cache',
    help: 'Hub cache models are found in and downloaded into',
  },
  HF_HUB_CACHE: { default: '$HF_HOME/hub', help: 'the Hugging Face cache, as huggingface_hub reads it' },
  HF_HOME: { default: '~/.cache/huggingface', help: "Hugging Face's home folder (the cache is its hub/)" },
  CACHEBLEND_ALLOW_DOWNLOAD: {
    default: 'false',
    help: 'true/1: download a MODEL found nowhere from the Hub',
  },
  CACHEBLEND_WEIGHT_CACHE: {
    default: '<checkpoint>/.cacheblend',
    help: 'where a checkpoint of 256 MiB or more keeps its fingerprint and quantized weights between starts (read-only checkpoints: ~/.cache/cacheblend/weights); off',
  },
  HF_ENDPOINT: { default: 'https://huggingface.co', help: 'Hub base URL (a mirror)' },
  HF_TOKEN: { default: '(none)', help: 'Hub token for gated repositories (never logged)' },
  EXECUTION_PROVIDER: { default: 'cpu', help: 'cpu, webgpu, cuda' },
  GPU_INDEX: {
    default: '(none)',
    help: "the GPU this process computes on, in PCI order (nvidia-smi's index); see docs/gpu.md",
  },
  KV_DTYPE: {
    default: 'float16',
    help: "stored caches (the CLI's --kv-dtype): float16, float32, int8; bytes a token and layer 4HD, 8HD, 2H(D+2) (H KV heads, D head dim)",
  },
  LRU_BYTES: { default: '268435456', help: 'in-process LRU of chunk caches per blend worker (0: off)' },
  GPU_TIER_BYTES: {
    default: 'auto',
    help: "chunk caches kept in GPU memory (webgpu; 0: off); auto: the card's free memory after the model, less a reserve for runs",
  },
  DEVICE_DTYPE: { default: 'float16', help: 'webgpu compute precision: float16, float32 (docs/gpu.md)' },
  WEIGHTS: {
    default: 'auto',
    help: "linear layers' weights: fp32, fp16, q4 (4-bit), q8 (8-bit); auto: fp32 on the CPU, DEVICE_DTYPE's on the GPU (docs/model-scale.md)",
  },
  DEVICE_DECODE_BURST: {
    default: '8',
    help: 'webgpu: greedy tokens decoded per GPU run, argmax on the GPU (1: off)',
  },
  DISK_CACHE_DIR: {
    default: '$DATA_DIR/disk-cache',
    help: 'local disk tier of a blend worker (one per worker)',
  },
  DISK_CACHE_BYTES: {
    default: '2147483648',
    help: 'bound of the disk tier, least recently used evicted (0: off)',
  },
  CHUNK_TOKEN_BUDGET: { default: '256', help: 'max tokens per chunk when splitting text' },
  QUERY_TIMEOUT_MS: {
    default: '60000',
    help: 'how long POST /v1/query waits before answering 504 (and cancelling)',
  },
  MAX_BODY_BYTES: { default: '1048576', help: 'larger bodies get 413' },
  QUEUE_PREFIX: { default: 'cacheblend', help: 'prefix of every Redis key (BullMQ and bookkeeping)' },
  BLEND_CONCURRENCY: { default: '1', help: 'blend jobs per worker' },
  BLEND_MIN_RATIO: { default: '0.15', help: 'r_min of ratio: "auto", in [0, 1]' },
  CALIBRATION_GATE: {
    default: 'report',
    help: 'full: blend requests run in full mode for a model cacheblend calibrate flagged',
  },
  PRECOMPUTE_CONCURRENCY: { default: '2', help: 'precompute jobs per worker' },
  PRECOMPUTE_ATTEMPTS: { default: '12', help: 'tries per chunk; backoff 1 s doubling to 60 s (~6 min)' },
  JOB_LOCK_MS: { default: '30000', help: 'a job whose worker died runs again after about this long' },
  RECONCILE_INTERVAL_MS: {
    default: '30000',
    help: 'reconciler period: lost chunks re-enqueued, failed retried (0: off)',
  },
  JOBS_KEEP_COMPLETED: {
    default: '10000',
    help: 'completed jobs each queue keeps for /jobs and ?async=1 results (0: none)',
  },
  JOBS_KEEP_COMPLETED_S: { default: '3600', help: '… for at most this many seconds' },
  JOBS_KEEP_FAILED: { default: '10000', help: 'failed jobs each queue keeps, with their error (0: none)' },
  JOBS_KEEP_FAILED_S: { default: '604800', help: '… for at most this many seconds (a week)' },
  QUERY_QUEUE_LIMIT: { default: '64', help: 'queries waiting for a blend worker beyond which 429' },
  MAX_QUERY_CHUNKS: {
    default: '20000',
    help: 'chunks the documents a query names may hold in all; more: 413',
  },
  RATE_LIMIT_PER_MINUTE: {
    default: '0',
    help: 'requests per API key (per address when open) per minute; 0: off',
  },
  API_KEYS: { default: '(none: open)', help: 'tenant:key,…: Bearer authentication, one tenant per key' },
  METRICS_TOKEN: { default: '(none)', help: "Bearer token for the API's /metrics (needed with API_KEYS)" },
  SHARE_CHUNK_CACHE: { default: 'false', help: 'tenants share chunk caches (no per-tenant salt)' },
  REDIS_CLUSTER_NODES: {
    default: '(none)',
    help: 'host:port,…: run on Redis Cluster (REDIS_URL lends credentials)',
  },
  REDIS_REQUIRE_DURABLE: {
    default: 'true',
    help: 'refuse a Redis without persistence or noeviction; false: warn',
  },
  LOG_LEVEL: { default: 'info', help: 'JSON lines on stderr: trace … error, silent' },
  METRICS_PORT: { default: '(none)', help: 'serve /metrics and /healthz on this port too (any process)' },
  REDIS_SERVER_BIN: { default: 'redis-server', help: 'binary the embedded Redis is started from' },
});
