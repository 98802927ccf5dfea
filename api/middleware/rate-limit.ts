/**
 * Per-key rate limits (RATE_LIMIT_PER_MINUTE) shared by every API process: express-rate-limit counting in
 * Redis through rate-limit-redis. Requests are counted per API key (per client address while the API is
 * open). When Redis cannot count, requests pass (the routes then answer 503 on their own).
 */
import { createHash } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { rateLimit, ipKeyGenerator } from 'express-rate-limit';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { Config } from '../../core/config/index.js';
import { keyPrefix, redisReplyCode, type RedisClient } from '../../core/queue/redis.js';
import { HttpError } from '../errors.js';
import { principalOf } from './auth.js';

/**
 * Commands for rate-limit-redis. Its scripts are registered with SCRIPT LOAD once and the SHA kept: a
 * load that fails while Redis is down would poison that SHA for good, and on a cluster a script loaded on
 * one node is unknown on another. So SCRIPT LOAD is answered here (the SHA1 of the text), and EVALSHA
 * falls back to EVAL with the text on NOSCRIPT, on whichever node owns the key.
 */
function sendCommand(redis: RedisClient) {
  const scripts = new Map<string, string>();
  return async (...args: string[]): Promise<RedisReply> => {
    if (args[0] === 'SCRIPT' && args[1] === 'LOAD') {
      const sha = createHash('sha1').update(args[2]).digest('hex');
      scripts.set(sha, args[2]);
      return sha;
    }
    if (args[0] === 'EVALSHA') {
      const [, sha, ...rest] = args;
      try {
        return (await redis.call('EVALSHA', sha, ...rest)) as RedisReply;
      } catch (err) {
        if (redisReplyCode(err) !== 'NOSCRIPT' || !scripts.has(sha)) throw err;
        return (await redis.call('EVAL', scripts.get(sha)!, ...rest)) as RedisReply;
      }
    }
    return (await redis.call(args[0], ...args.slice(1))) as RedisReply;
  };
}

/** The limiter for /v1 routes, or a pass-through when RATE_LIMIT_PER_MINUTE is 0. */
export function perKeyRateLimit(config: Config, redis: RedisClient): RequestHandler {
  if (config.rateLimitPerMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: config.rateLimitPerMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    passOnStoreError: true,
    store: new RedisStore({
      sendCommand: sendCommand(redis),
      prefix: `${keyPrefix(config.queuePrefix)}:rl:`,
    }),
    keyGenerator: (req: Request, res: Response) => {
      const p = principalOf(res);
      return p.keyId !== null ? `key:${p.keyId}` : `ip:${ipKeyGenerator(req.ip ?? 'unknown')}`;
    },
    handler: (_req, _res, next, options) => {
      next(
        new HttpError(
          429,
          'RATE_LIMITED',
          `more than ${options.limit} requests per minute for this key (RATE_LIMIT_PER_MINUTE); retry later`,
        ),
      );
    },
  });
}
