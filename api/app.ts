/**
 * The HTTP API (Express). JSON in and out; every error is `{"error": {"code", "message"}}` (plus `field`
 * for a bad request field, `jobId` for a query that timed out), never a stack trace.
 */
import { randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Job, type Queue, type QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { BLEND_MODES } from '../core/blend/index.js';
import type { Config } from '../core/config/index.js';
import { CacheBlendError, NotFoundError, UnavailableError, errorMessage } from '../core/errors.js';
import {
  BLEND_JOB,
  decodeFailure,
  type BlendJobData,
  type BlendJobResult,
  type BlendProgress,
} from '../core/queue/contracts.js';
import { pingRedis, redisCall, withTimeout } from '../core/queue/redis.js';
import type { DocumentService, ModelIdentity } from '../core/documents/documents.js';
import { documentIdSchema } from '../core/documents/manifest.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { metrics } from '../core/ops/metrics.js';
import type { ObjectStore } from '../core/storage/types.js';

export interface ApiDeps {
  config: Config;
  redis: Redis;
  store: ObjectStore;
  docs: DocumentService;
  blendQueue: Queue;
  blendEvents: QueueEvents;
  /** The model's tokenizer and fingerprint once loaded; null while loading or after a failed load. */
  model(): ModelIdentity | null;
  /** Why the model is not loaded (null while loading normally). */
  modelError(): string | null;
  log?: Logger;
}

/** An error already shaped for HTTP. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const STATUS: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  KV_MISMATCH: 409,
  UNAVAILABLE: 503,
  STORAGE: 503,
  TIMEOUT: 504,
  CONFIG: 500,
};

const DocumentBody = z
  .object({
    id: documentIdSchema.optional(),
    text: z.string().min(1, 'must not be empty').optional(),
    chunks: z
      .array(z.string().min(1, 'must not be empty'))
      .min(1, 'must hold at least one chunk')
      .max(10_000, 'must hold at most 10000 chunks')
      .optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

const QueryBody = z
  .object({
    question: z.string().min(1, 'must not be empty').max(100_000, 'is too long'),
    documents: z
      .array(documentIdSchema)
      .min(1, 'must name at least one document')
      .max(100, 'must name at most 100'),
    mode: z
      .enum(BLEND_MODES as [string, ...string[]], { error: `must be one of ${BLEND_MODES.join(', ')}` })
      .default('blend'),
    ratio: z.number().min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').optional(),
    maxTokens: z.number().int('must be an integer').min(0).max(4096).default(32),
    temperature: z.number().min(0, 'must be >= 0').max(10).default(0),
    seed: z
      .number()
      .int('must be an integer')
      .min(0)
      .max(2 ** 32 - 1)
      .default(0),
    stream: z.boolean().default(false),
  })
  .strict();

function parseBody<T extends z.ZodTypeAny>(schema: T, body: unknown): z.infer<T> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(
      400,
      'INVALID_ARGUMENT',
      'body: must be a JSON object (send Content-Type: application/json)',
      {
        field: 'body',
      },
    );
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const keys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : [];
  const field = keys.length ? keys[0] : issue.path.map(String).join('.') || 'body';
  const message = keys.length
    ? 'is not a known field'
    : /received undefined$/.test(issue.message)
      ? 'is required'
      : issue.message;
  throw new HttpError(400, 'INVALID_ARGUMENT', `${field}: ${message}`, { field });
}

function parseId(raw: string, what = 'id'): string {
  const r = documentIdSchema.safeParse(raw);
  if (!r.success)
    throw new HttpError(400, 'INVALID_ARGUMENT', `${what}: ${r.error.issues[0].message}`, { field: what });
  return r.data;
}

/** Errors from the validation in the documents service name their field first (`field: message`). */
function fieldOf(message: string): string | undefined {
  return /^([A-Za-z][\w.]*): /.exec(message)?.[1];
}

export function createApp(deps: ApiDeps): express.Express {
  const { config, docs } = deps;
  const log = deps.log ?? silentLogger;
  const m = metrics();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((req, res, next) => {
    const t0 = performance.now();
    res.on('finish', () => {
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
      m.httpDuration.observe(
        { method: req.method, route, status: String(res.statusCode) },
        (performance.now() - t0) / 1000,
      );
    });
    next();
  });
  app.use(express.json({ limit: config.maxBodyBytes }));

  const requireModel = (): ModelIdentity => {
    const model = deps.model();
    if (model) return model;
    throw new UnavailableError(`model not loaded${deps.modelError() ? `: ${deps.modelError()}` : ' yet'}`);
  };

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, string> = {};
    await Promise.all([
      pingRedis(deps.redis, 2_000).then(
        () => (checks.redis = 'ok'),
        (err) => (checks.redis = errorMessage(err)),
      ),
      withTimeout(deps.store.ping(), 3_000, 'object store ping').then(
        () => (checks.store = 'ok'),
        (err) => (checks.store = errorMessage(err)),
      ),
    ]);
    checks.model = deps.model() ? 'ok' : `not loaded${deps.modelError() ? `: ${deps.modelError()}` : ' yet'}`;
    const failing = Object.entries(checks).filter(([, v]) => v !== 'ok');
    if (failing.length === 0) {
      res.json({ status: 'ready', checks });
      return;
    }
    res.status(503).json({
      error: {
        code: 'UNAVAILABLE',
        message: `not ready: ${failing.map(([k, v]) => `${k}: ${v}`).join('; ')}`,
        checks,
      },
    });
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', m.registry.contentType);
    res.send(await m.registry.metrics());
  });

  app.post('/v1/documents', async (req, res) => {
    const body = parseBody(DocumentBody, req.body);
    const model = requireModel();
    const r = await docs.ingest(body, model, config.chunkTokenBudget);
    res.status(202).json({ id: r.id, chunks: r.chunks, enqueued: r.enqueued.length });
  });

  app.get('/v1/documents/:id', async (req, res) => {
    const id = parseId(req.params.id);
    const status = await docs.status(id);
    if (!status) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json(status);
  });

  app.delete('/v1/documents/:id', async (req, res) => {
    const id = parseId(req.params.id);
    const r = await docs.remove(id);
    if (!r) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json({ id, deleted: true, chunksDeleted: r.chunksDeleted });
  });

  app.post('/v1/query', async (req, res) => {
    const t0 = performance.now();
    const body = parseBody(QueryBody, req.body);
    const model = requireModel();
    const chunks = await docs.chunkRefs(body.documents);
    const jobId = randomUUID();
    const data: BlendJobData = {
      question: body.question,
      chunks,
      documents: body.documents,
      fingerprint: model.fingerprint,
      mode: body.mode as BlendJobData['mode'],
      ...(body.ratio !== undefined && { ratio: body.ratio }),
      maxTokens: body.maxTokens,
      temperature: body.temperature,
      seed: body.seed,
      stream: body.stream && req.query.async === undefined,
    };
    const add = () =>
      redisCall(
        () =>
          deps.blendQueue.add(BLEND_JOB, data, {
            jobId,
            attempts: 1,
            removeOnComplete: { age: 3_600, count: 10_000 },
            removeOnFail: { age: 3_600, count: 10_000 },
          }),
        'Redis (blend queue)',
      );
    if (req.query.async === '1' || req.query.async === 'true') {
      await add();
      res.status(202).json({ jobId });
      return;
    }
    if (data.stream) {
      await streamQuery(req, res, jobId, add, t0);
      return;
    }
    const job = await add();
    const result = await waitForJob(job, jobId);
    res.json(present(result, jobId, t0));
  });

  app.get('/v1/jobs/:id', async (req, res) => {
    const id = req.params.id;
    if (!/^[A-Za-z0-9-]{1,64}$/.test(id))
      throw new HttpError(400, 'INVALID_ARGUMENT', 'id: not a job id', { field: 'id' });
    const job = await redisCall(() => Job.fromId<BlendJobData, BlendJobResult>(deps.blendQueue, id));
    if (!job) throw new NotFoundError(`job ${JSON.stringify(id)} not found`);
    const state = await redisCall(() => job.getState());
    const out: Record<string, unknown> = { jobId: id, state };
    if (state === 'completed' && job.returnvalue) {
      const total = (job.finishedOn ?? Date.now()) - job.timestamp;
      out.result = { ...job.returnvalue, timings: { ...job.returnvalue.timings, totalMs: total } };
    }
    if (state === 'failed') out.error = decodeFailure(job.failedReason);
    res.json(out);
  });

  /** Wait for a blend job, bounded by QUERY_TIMEOUT_MS (504 with the job id on timeout). */
  async function waitForJob(job: Job<BlendJobData, BlendJobResult>, jobId: string): Promise<BlendJobResult> {
    const timeoutMs = config.queryTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new HttpError(
              504,
              'TIMEOUT',
              `the query did not finish within ${timeoutMs} ms; poll GET /v1/jobs/${jobId}`,
              {
                jobId,
              },
            ),
          ),
        timeoutMs,
      );
    });
    try {
      return (await Promise.race([
        job.waitUntilFinished(deps.blendEvents, timeoutMs + 1_000),
        timeout,
      ])) as BlendJobResult;
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw jobFailure(err, jobId);
    } finally {
      clearTimeout(timer);
    }
  }

  function jobFailure(err: unknown, jobId: string): HttpError {
    const { code, message } = decodeFailure(errorMessage(err));
    const status = STATUS[code] ?? 500;
    return new HttpError(status, code, status === 500 ? `the query failed: ${message}` : message, {
      jobId,
      ...(status === 400 && fieldOf(message) && { field: fieldOf(message) }),
    });
  }

  function present(result: BlendJobResult, jobId: string, t0: number) {
    return { jobId, ...result, timings: { ...result.timings, totalMs: round(performance.now() - t0) } };
  }

  /** `stream: true`: Server-Sent Events — `job`, then `token` events (text deltas), then `done` or `error`. */
  async function streamQuery(
    _req: Request,
    res: Response,
    jobId: string,
    add: () => Promise<Job<BlendJobData, BlendJobResult>>,
    t0: number,
  ): Promise<void> {
    let streamed = '';
    const send = (event: string, data: unknown) => {
      if (!res.writableEnded && !res.destroyed)
        res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const onProgress = ({ jobId: id, data }: { jobId: string; data: unknown }) => {
      if (id !== jobId || typeof data !== 'object' || data === null) return;
      const p = data as BlendProgress;
      streamed += p.delta;
      send('token', p);
    };
    deps.blendEvents.on('progress', onProgress);
    try {
      const job = await add(); // before any byte is written, so Redis errors still get a JSON 503
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      send('job', { jobId });
      try {
        const result = await waitForJob(job, jobId);
        if (result.answer.length > streamed.length && result.answer.startsWith(streamed)) {
          send('token', { delta: result.answer.slice(streamed.length), tokens: result.tokens.length });
        }
        send('done', present(result, jobId, t0));
      } catch (err) {
        const e = err instanceof HttpError ? err : jobFailure(err, jobId);
        send('error', { error: { code: e.code, message: e.message, ...e.extra } });
      }
      res.end();
    } finally {
      deps.blendEvents.off('progress', onProgress);
    }
  }

  app.use((req, _res, next) => {
    next(new HttpError(404, 'NOT_FOUND', `no route for ${req.method} ${req.path}`));
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toHttpError(err);
    if (e.status >= 500)
      log.error('request failed', {
        method: req.method,
        path: req.path,
        status: e.status,
        error: errorMessage(err),
      });
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(e.status).json({ error: { code: e.code, message: e.message, ...e.extra } });
  });

  return app;
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const bodyErr = err as { type?: string; status?: number; limit?: number };
  if (bodyErr?.type === 'entity.too.large') {
    return new HttpError(
      413,
      'PAYLOAD_TOO_LARGE',
      `body: larger than the ${bodyErr.limit} byte limit (MAX_BODY_BYTES)`,
      {
        field: 'body',
      },
    );
  }
  if (bodyErr?.type === 'entity.parse.failed') {
    return new HttpError(400, 'INVALID_JSON', 'body: is not valid JSON', { field: 'body' });
  }
  if (typeof bodyErr?.status === 'number' && bodyErr.status >= 400 && bodyErr.status < 500 && bodyErr.type) {
    return new HttpError(bodyErr.status, 'INVALID_ARGUMENT', `body: ${errorMessage(err)}`, { field: 'body' });
  }
  if (err instanceof CacheBlendError) {
    const status = STATUS[err.code] ?? 500;
    const field = err.code === 'INVALID_ARGUMENT' ? fieldOf(err.message) : undefined;
    return new HttpError(
      status,
      err.code,
      status === 500 ? 'internal error' : err.message,
      field ? { field } : {},
    );
  }
  return new HttpError(500, 'INTERNAL', 'internal error');
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
