import { createHash } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type GetObjectCommandOutput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { ConfigError, StorageError, UnavailableError, errorMessage } from '../errors.js';
import { withTimeout } from '../util/time.js';
import {
  DEFAULT_STORE_DEADLINES,
  readDeadlineMs,
  timedOut,
  writeDeadlineMs,
  type StoreDeadlines,
} from './deadline.js';
import { validateKey, validatePrefix, validateRange } from './keys.js';
import type { ObjectStore, S3StoreOptions } from './types.js';

// The SDK prints, once per thread, a notice that its releases after January 2027 need Node 22. This
// project pins the SDK (package-lock.json), is tested on Node 20 and 22, and says so in the README; the
// notice repeated by every process and inference thread is noise, so it is switched off with the SDK's
// own documented setting.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);
/** User-metadata key holding the hex MD5 of the object as stored by put(). */
const MD5_METADATA = 'cb-md5';
/** How often a whole GET is tried when its body breaks off or fails a check. */
const BODY_ATTEMPTS = 3;
const TIMEOUT_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'NetworkingError',
]);

/** Parses `s3://bucket[/prefix]` into its bucket and key prefix (no leading/trailing '/'). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  if (!url.startsWith('s3://')) throw new ConfigError(`not an s3:// URL: ${url}`);
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`invalid S3 bucket name in ${url}: use 3-63 lowercase letters, digits, '.' or '-'`);
  }
  if (prefix !== '') {
    try {
      validateKey(prefix);
    } catch (err) {
      throw new ConfigError(`invalid key prefix in ${url}: ${errorMessage(err)}`);
    }
  }
  return { bucket, prefix };
}

/**
 * The S3Client settings every store uses (exported so tests can check them with streamed bodies).
 * Checksums only WHEN_REQUIRED: see S3ObjectStore.
 */
export function s3ClientConfig(options: S3StoreOptions = {}): S3ClientConfig {
  const config: S3ClientConfig = {
    region: options.region ?? 'us-east-1',
    forcePathStyle: options.forcePathStyle ?? true,
    maxAttempts: options.maxAttempts ?? 3,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: options.connectTimeoutMs ?? 5_000,
      requestTimeout: options.requestTimeoutMs ?? 120_000,
      throwOnRequestTimeout: true,
    },
  };
  if (options.endpoint) config.endpoint = options.endpoint;
  if (options.accessKeyId || options.secretAccessKey) {
    if (!options.accessKeyId || !options.secretAccessKey) {
      throw new ConfigError('S3 credentials need both an access key id and a secret access key');
    }
    config.credentials = { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey };
  }
  return config;
}

/**
 * An S3 (or MinIO / s3rver) bucket, optionally under a key prefix. Checksums are computed and validated
 * only when an operation requires them (`WHEN_REQUIRED`): the SDK's default `WHEN_SUPPORTED` sends
 * streamed bodies with aws-chunked framing and a trailing checksum, which s3rver and some other
 * S3-compatible servers store verbatim, silently corrupting objects. Instead, uploads carry Content-MD5
 * (checked by AWS and MinIO) plus the MD5 as user metadata (`x-amz-meta-cb-md5`), and whole-object
 * downloads are checked against it and against Content-Length; a torn or corrupt read is retried, then
 * reported as StorageError. (Objects stored by other tools, without that metadata, are returned
 * unverified.) Ranged reads are checked against Content-Range and trimmed/sliced when a
 * server returns more than was asked for (HTTP lets a server ignore Range).
 */
export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly endpoint: string | undefined;
  private readonly deadlines: StoreDeadlines;

  constructor(
    url: string,
    options: S3StoreOptions = {},
    deadlines: StoreDeadlines = DEFAULT_STORE_DEADLINES,
  ) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseS3Url(url));
    this.endpoint = options.endpoint;
    const config = s3ClientConfig(options);
    this.client = new S3Client(config);
    this.deadlines = deadlines;
  }

  /**
   * One request, retries included, aborted at `ms` (see deadline.ts): an aborted request's socket is
   * destroyed, so a store that went silent leaves no hung connections behind to delay later requests.
   */
  private async send<T>(ms: number, what: string, run: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const signal = AbortSignal.timeout(ms);
    try {
      return await run(signal);
    } catch (err) {
      if (signal.aborted) throw timedOut(this.describe(), what, ms);
      throw err;
    }
  }

  private fullKey(key: string): string {
    validateKey(key);
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  async get(key: string): Promise<Buffer | null> {
    const Key = this.fullKey(key);
    return this.fetch(Key, `get ${Key}`, undefined, (body, res) => {
      const expected = res.Metadata?.[MD5_METADATA];
      if (expected !== undefined && md5(body).toString('hex') !== expected) {
        throw new IntegrityError(`${Key}: content MD5 does not match the MD5 recorded when it was stored`);
      }
      return body;
    });
  }

  async getRange(key: string, start: number, endExclusive: number): Promise<Buffer | null> {
    validateRange(start, endExclusive);
    if (start === endExclusive) {
      // HTTP cannot express an empty range; all that is left to answer is whether the object exists.
      return (await this.head(key)) ? Buffer.alloc(0) : null;
    }
    const Key = this.fullKey(key);
    const what = `get ${Key} bytes ${start}-${endExclusive - 1}`;
    const range = { header: `bytes=${start}-${endExclusive - 1}`, bytes: endExclusive - start };
    return this.fetch(Key, what, range, (body, res) => {
      if (res.ContentRange === undefined) return copyRange(body, start, endExclusive); // Range ignored: whole object
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.ContentRange);
      if (!m || Number(m[1]) !== start) {
        throw new IntegrityError(`${Key}: asked for ${what.slice(4)}, got Content-Range ${res.ContentRange}`);
      }
      const want = endExclusive - start;
      return body.length > want ? copyRange(body, 0, want) : body;
    });
  }

  /**
   * GETs an object (or a range of it), reads the whole body and passes it through `check`; a body that
   * breaks off or fails `check` is fetched again, up to BODY_ATTEMPTS times. Missing objects give null,
   * and a range starting past the end gives an empty buffer.
   */
  private async fetch(
    Key: string,
    what: string,
    range: { header: string; bytes: number } | undefined,
    check: (body: Buffer, res: GetObjectCommandOutput) => Buffer,
  ): Promise<Buffer | null> {
    const started = Date.now();
    const ms = readDeadlineMs(this.deadlines, range?.bytes ?? 0);
    for (let attempt = 1; ; attempt++) {
      let res: GetObjectCommandOutput;
      const left = Math.max(1, ms - (Date.now() - started));
      try {
        res = await this.send(left, what, (abortSignal) =>
          this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range: range?.header }), {
            abortSignal,
          }),
        );
      } catch (err) {
        if (isMissingKey(err)) return null;
        if (range !== undefined && (statusOf(err) === 416 || nameOf(err) === 'InvalidRange')) {
          return Buffer.alloc(0); // the range starts at or past the end of the object
        }
        throw this.wrap(err, what);
      }
      try {
        const body = withTimeout(readBody(res.Body, res.ContentLength, Key), left, () => {
          destroyBody(res.Body);
          return timedOut(this.describe(), what, ms);
        });
        return check(await body, res);
      } catch (err) {
        if (err instanceof UnavailableError && Date.now() - started >= ms) throw err;
        if (attempt < BODY_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
          continue;
        }
        if (err instanceof IntegrityError) {
          throw new StorageError(`${this.describe()}: ${what}: ${err.message}`, { cause: slim(err) });
        }
        throw this.wrap(err, what);
      }
    }
  }

  async head(key: string): Promise<{ size: number } | null> {
    const Key = this.fullKey(key);
    try {
      const res = await this.send(this.deadlines.readMs, `head ${Key}`, (abortSignal) =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal }),
      );
      return { size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isMissingKey(err) || statusOf(err) === 404) return null;
      throw this.wrap(err, `head ${Key}`);
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const Key = this.fullKey(key);
    const digest = md5(data);
    try {
      const put = new PutObjectCommand({
        Bucket: this.bucket,
        Key,
        Body: data,
        ContentLength: data.length,
        ContentMD5: digest.toString('base64'),
        ContentType: 'application/octet-stream',
        Metadata: { [MD5_METADATA]: digest.toString('hex') },
      });
      await this.send(writeDeadlineMs(this.deadlines, data.length), `put ${Key}`, (abortSignal) =>
        this.client.send(put, { abortSignal }),
      );
    } catch (err) {
      throw this.wrap(err, `put ${Key}`);
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    try {
      await this.send(this.deadlines.readMs, `delete ${Key}`, (abortSignal) =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), { abortSignal }),
      );
    } catch (err) {
      if (isMissingKey(err)) return;
      throw this.wrap(err, `delete ${Key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let token: string | undefined;
    do {
      let res;
      try {
        const cmd = new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: base + prefix,
          ContinuationToken: token,
        });
        res = await this.send(this.deadlines.readMs, `list ${base + prefix}`, (abortSignal) =>
          this.client.send(cmd, { abortSignal }),
        );
      } catch (err) {
        throw this.wrap(err, `list ${base + prefix}`);
      }
      for (const object of res.Contents ?? []) {
        if (object.Key?.startsWith(base)) yield object.Key.slice(base.length);
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  async ping(): Promise<void> {
    try {
      await this.send(this.deadlines.readMs, 'ping', (abortSignal) =>
        this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal }),
      );
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) {
        throw new StorageError(`${this.describe()}: bucket does not exist`, { cause: slim(err) });
      }
      if (status === 403) throw new StorageError(`${this.describe()}: access denied`, { cause: slim(err) });
      throw this.wrap(err, 'ping');
    }
  }

  describe(): string {
    const where = `s3://${this.bucket}${this.prefix === '' ? '' : `/${this.prefix}`}`;
    return this.endpoint ? `${where} at ${redactUrl(this.endpoint)}` : where;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private wrap(err: unknown, what: string): Error {
    if (err instanceof StorageError || err instanceof UnavailableError) return err;
    const detail = `${this.describe()}: ${what} failed: ${describeError(err)}`;
    // The SDK's errors carry the whole HTTP response; keep a small copy so logs stay readable.
    return isUnavailable(err)
      ? new UnavailableError(detail, { cause: slim(err) })
      : new StorageError(detail, { cause: slim(err) });
  }
}

/** A body that does not match what the server promised or what was stored; worth fetching again. */
class IntegrityError extends Error {}

function md5(data: Buffer): Buffer {
  return createHash('md5').update(data).digest();
}

function copyRange(body: Buffer, start: number, endExclusive: number): Buffer {
  return Buffer.from(body.subarray(Math.min(start, body.length), Math.min(endExclusive, body.length)));
}

/** A plain Error with the name, code, HTTP status and message of an SDK or socket error. */
function slim(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  const out = new Error(err.message) as Error & { code?: string; status?: number };
  out.name = err.name;
  const code = codeOf(err);
  if (code !== undefined) out.code = code;
  const status = statusOf(err);
  if (status !== undefined) out.status = status;
  if (err.stack) out.stack = err.stack;
  return out;
}

interface Body {
  transformToByteArray(): Promise<Uint8Array>;
}

/** Stops reading a response body (a stalled download): its socket is closed. */
function destroyBody(body: unknown): void {
  const b = body as { destroy?: () => void } | undefined;
  b?.destroy?.();
}

async function readBody(
  body: Body | undefined,
  contentLength: number | undefined,
  key: string,
): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const bytes = await body.transformToByteArray();
  const out = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (contentLength !== undefined && out.length !== contentLength) {
    throw new UnavailableError(
      `S3 object ${key}: got ${out.length} bytes, Content-Length was ${contentLength}`,
    );
  }
  return out;
}

function nameOf(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const meta = err.$metadata as { httpStatusCode?: number } | undefined;
  return meta?.httpStatusCode;
}

function isMissingKey(err: unknown): boolean {
  const name = nameOf(err);
  return name === 'NoSuchKey' || (name === 'NotFound' && statusOf(err) === 404);
}

function isUnavailable(err: unknown): boolean {
  const status = statusOf(err);
  if (status !== undefined) return status >= 500 || status === 408 || status === 429;
  const name = nameOf(err) ?? '';
  if (TIMEOUT_NAMES.has(name) || NETWORK_CODES.has(codeOf(err) ?? '')) return true;
  // Any other failure without an HTTP response (e.g. a socket closed mid-body) is transport trouble too,
  // except a missing-credentials error, which retrying will not fix.
  return name !== 'CredentialsProviderError';
}

function describeError(err: unknown): string {
  const parts = [nameOf(err), codeOf(err), statusOf(err)?.toString()].filter(Boolean);
  const message = errorMessage(err);
  return parts.length > 0 ? `${message || '(no message)'} [${parts.join(' ')}]` : message;
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid endpoint)';
  }
}
