import { InvalidArgumentError } from '../errors.js';

/**
 * The one context-length rule the service and the CLI share: the prompt plus the tokens to generate must
 * fit the model's positions. The message names `promptField` (what the caller can shorten) when the
 * prompt alone is too long, else `maxTokensField`.
 */
export function checkContextFits(
  promptTokens: number,
  maxTokens: number,
  contextLength: number,
  fields: { prompt: string; maxTokens: string },
): void {
  if (promptTokens + maxTokens <= contextLength) return;
  const field = promptTokens > contextLength ? fields.prompt : fields.maxTokens;
  throw new InvalidArgumentError(
    `${field}: the prompt (${promptTokens} tokens) plus maxTokens (${maxTokens}) exceeds the model's context of ${contextLength} tokens`,
  );
}
