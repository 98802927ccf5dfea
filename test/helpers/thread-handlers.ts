import { InvalidArgumentError, tooLargeField } from '../../core/errors.js';
import { Engine } from '../../core/model/engine.js';
import { createRandomModel, type RandomModelShape } from '../../core/model/random.js';

/** Handlers for the inference-thread test: a random engine whose prefill takes a measurable while. */
export async function createHandlers(init: { shape: RandomModelShape }) {
  const engine = await Engine.create(createRandomModel(init.shape), { threads: 1 });
  return {
    async prefill(tokens: number): Promise<{ ms: number; logits: number }> {
      const t0 = performance.now();
      const logits = await engine.forward(
        engine.newCache(tokens),
        Array.from({ length: tokens }, (_, i) => i % init.shape.vocabSize),
      );
      return { ms: performance.now() - t0, logits: logits.length };
    },
    async reject(): Promise<never> {
      throw new InvalidArgumentError('bad request from the test');
    },
    async rejectField(): Promise<never> {
      throw tooLargeField('chunks.3', 'is over the budget');
    },
    async exit(): Promise<never> {
      process.exit(7); // in a worker thread: ends this thread only
    },
  };
}
