/**
 * How a job's error becomes BullMQ's failure (core/queue/worker.ts failureFor): the codes the input caused
 * (PERMANENT_FAILURES) fail for good at once, everything else is retried; the message is the error's data.
 */
import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { CacheBlendError, StorageError, UnavailableError, type ErrorCode } from '../../core/errors.js';
import { PERMANENT_FAILURES, decodeFailure } from '../../core/queue/contracts.js';
import { failureFor } from '../../core/queue/worker.js';

describe('failureFor', () => {
  it('makes every permanent code unrecoverable (no retry)', () => {
    expect(PERMANENT_FAILURES.size).toBeGreaterThan(0);
    for (const code of PERMANENT_FAILURES) {
      const f = failureFor(new CacheBlendError(code as ErrorCode, 'bad input'));
      expect(f, code).toBeInstanceOf(UnrecoverableError);
      expect(decodeFailure(f.message)).toEqual({ code, message: 'bad input' });
    }
    const given = new UnrecoverableError('KV_MISMATCH: another model');
    expect(failureFor(given)).toBe(given);
  });

  it('leaves store, Redis and unknown failures retryable', () => {
    for (const err of [new StorageError('denied'), new UnavailableError('down'), new Error('boom')]) {
      const f = failureFor(err);
      expect(f).not.toBeInstanceOf(UnrecoverableError);
      expect(['STORAGE', 'UNAVAILABLE', 'INTERNAL']).toContain(decodeFailure(f.message).code);
      expect(decodeFailure(f.message).message).toBe(err.message);
    }
  });
});
