/** Where an S3 store is (`s3://bucket[/prefix]`, an endpoint) and the S3Client settings every store uses. */
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { ConfigError, errorMessage } from '../errors.js';
import { validateKey } from './keys.js';
import type { S3StoreOptions } from './types.js';

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

/** An endpoint URL without the user and password it may carry, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid endpoint)';
  }
}
