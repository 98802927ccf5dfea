import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { StorageError, UnavailableError } from '../errors.js';
import { withTimeout } from '../util/time.js';
import {
  DEFAULT_STORE_DEADLINES,
  readDeadlineMs,
  timedOut,
  writeDeadlineMs,
  type StoreDeadlines,
} from './deadline.js';
import { validateKey, validatePrefix, validateRange } from './keys.js';
import { IntegrityError, MD5_METADATA, copyRange, destroyBody, md5, readBody } from './s3-body.js';
import { parseS3Url, redactUrl, s3ClientConfig } from './s3-config.js';
import { describeError, isMissingKey, isUnavailable, nameOf, slim, statusOf } from './s3-errors.js';
import type { ObjectStore, S3StoreOptions } from './types.js';

// The SDK prints, once per thread, a notice that its releases after January 2027 need Node 22. This
// project pins the SDK (package-lock.json), is tested on Node 20 and 22, and says so in the README; the
// notice repeated by every process and inference thread is noise, so it is switched off with the SDK's
// own documented setting.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** How often a whole GET is tried when its body breaks off or fails a check. */
const BODY_ATTEMPTS = 3;

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
 *
 * The client settings and URL parsing are in s3-config.ts, body checks in s3-body.ts, and what an SDK
 * error means (missing, unavailable, a storage error) in s3-errors.ts.
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
