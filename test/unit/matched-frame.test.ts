/**
 * A prompt split at the chunks found in it keeps its own text: with `joined`, the template's suffix is the
 * rest of the user's text as written (no blank line put before it), and the pieces add up to the whole.
 */
import { describe, expect, it } from 'vitest';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import { renderFrame } from '../../core/model/template.js';
import { STORIES_DIR } from '../helpers/models.js';

const JINJA =
  '{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}';

describe('frames of matched prompts', () => {
  it('puts the question right after the chunks with joined, after a blank line without', async () => {
    const tok = (await loadLlama2cModel(STORIES_DIR)).tokenizer;
    const spec = { template: { jinja: JINJA }, question: '\n\nQuestion: why?' };
    const joined = renderFrame(tok, { ...spec, joined: true });
    const plain = renderFrame(tok, spec);
    expect(joined.prefix).toBe('<|user|>\n');
    expect(joined.suffix).toBe('\n\nQuestion: why?\n<|assistant|>\n');
    expect(plain.suffix).toBe('\n\n\n\nQuestion: why?\n<|assistant|>\n');
    // The user's text "Context: <chunk>" + question, rebuilt from the frame and a segment in between.
    const segment = 'Context: Lily had a red ball and a small dog.';
    expect(`${joined.prefix}${segment}${joined.suffix}`).toBe(
      `<|user|>\n${segment}\n\nQuestion: why?\n<|assistant|>\n`,
    );
  });
});
