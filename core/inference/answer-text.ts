/**
 * An answer's text as its tokens arrive, and each generated token's own text for logprobs: both are
 * differences of decoded strings after a seam of prompt tokens, so merges and leading spaces across the
 * seam come out as the tokenizer writes them.
 */
import type { Tokenizer } from '../model/types.js';
import type { TokenLogprob } from '../model/generate.js';
import type { TextLogprob } from '../queue/contracts.js';

/** Prompt tokens kept before the generated ones when decoding the answer, so merges across the seam count. */
const SEAM_TOKENS = 32;

/**
 * The answer's text as tokens arrive: decode(tail of the prompt + generated) minus decode(tail), cut before
 * the first stop sequence. `streamable` is the part that can be sent already: no trailing partial UTF-8
 * character, and no tail that might still grow into a stop sequence.
 */
export class AnswerText {
  private readonly seam: number[];
  private readonly base: number;
  private readonly generated: number[] = [];
  private raw = '';
  /** Set once a stop sequence appears: the answer ends before it. */
  stopped = false;

  constructor(
    private readonly tok: Tokenizer,
    prompt: readonly number[],
    private readonly stop: readonly string[] = [],
  ) {
    this.seam = prompt.slice(-SEAM_TOKENS);
    this.base = tok.decode(this.seam).length;
  }

  /** Add a generated token; true when the text now holds a stop sequence. */
  push(id: number): boolean {
    this.generated.push(id);
    this.raw = this.tok.decode([...this.seam, ...this.generated]).slice(this.base);
    const at = Math.min(...this.stop.map((s) => this.raw.indexOf(s)).filter((i) => i >= 0));
    if (Number.isFinite(at)) {
      this.raw = this.raw.slice(0, at);
      this.stopped = true;
    }
    return this.stopped;
  }

  get text(): string {
    return this.raw;
  }

  streamable(): string {
    let t = this.raw.replace(/\uFFFD+$/, '');
    if (this.stopped) return t;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, t.length); k > 0; k--) {
        if (t.endsWith(s.slice(0, k))) {
          t = t.slice(0, t.length - k);
          break;
        }
      }
    }
    return t;
  }
}

/** Tokens before a generated one that its text is decoded after (so a leading space or merge shows). */
const TOKEN_SEAM = 4;

/**
 * Logprobs with each token as the text it adds after the tokens before it (prompt tail + generated so
 * far): decode(seam + id) minus decode(seam), the same difference the answer's text is built from.
 */
export function logprobTexts(
  tok: Tokenizer,
  prompt: readonly number[],
  generated: readonly number[],
  logprobs: readonly TokenLogprob[],
): TextLogprob[] {
  const ids = [...prompt.slice(-TOKEN_SEAM), ...generated];
  const seamAt = Math.min(prompt.length, TOKEN_SEAM);
  return logprobs.map((lp, i) => {
    const seam = ids.slice(Math.max(0, seamAt + i - TOKEN_SEAM), seamAt + i);
    const base = tok.decode(seam).length;
    const text = (id: number) => tok.decode([...seam, id]).slice(base);
    return {
      token: text(lp.id),
      logprob: lp.logprob,
      top: lp.top.map((t) => ({ token: text(t.id), logprob: t.logprob })),
    };
  });
}
