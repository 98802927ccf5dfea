/**
 * Development question sets for cbqa-3M, generated: the public sets (questions.json) are where results
 * are reported, so choices among selection variants are made on these instead (docs/accuracy.md). The
 * grammar is the model's (its README): facts `P owns O`, `P lives in C`, `the mayor of C is P`,
 * `O is COLOUR`, `P bought O` followed by `it is COLOUR` (at the start of the next chunk when the bought
 * fact ends a chunk). Sizes and fact mixes follow the public sets' counts (SHAPES): `easy` 2–3 chunks of
 * a few facts, `main` 4–6 chunks of 8–12; in both, purchases mostly end a chunk. A seed makes a set
 * reproducible.
 */
import { seededRandom } from '../model/generate.js';
import type { QaQuestion, QaSetName, QuestionType } from './qa.js';
import { QUESTION_TYPES } from './qa.js';

const COLOURS = [
  'black',
  'brown',
  'green',
  'pink',
  'white',
  'purple',
  'gray',
  'blue',
  'gold',
  'orange',
  'red',
  'yellow',
] as const;

type FactKind = 'ois' | 'lives' | 'mayor' | 'owns' | 'bought';

interface SetShape {
  chunks: [number, number];
  /** Facts per chunk before the question's own fact is added (an `it is` line counts with its purchase). */
  facts: [number, number];
  weights: Record<FactKind, number>;
  /** Chance that a city mention names a city already in the question (the public sets reuse cities). */
  cityReuse: number;
  /** Chance that `P owns O` names an object whose colour the question states. */
  ownsColoured: number;
  /** Chance that the question also says who owns the asked object. */
  ownsAsked: number;
  /** Chance that a chunk other than the last ends with a purchase, its `it is` opening the next chunk. */
  endsWithPurchase: number;
}

/**
 * Measured on questions.json: easy ≈ 4.2 facts per chunk, main ≈ 9.6; purchases mostly end chunks. People
 * and coloured objects are distinct within a question; cities repeat (easy 2.4 distinct of 4.1 mentions);
 * a chunk before the last ends with a purchase in 83 % (easy) and 37 % (main) of the public questions.
 */
const SHAPES: Record<QaSetName, SetShape> = {
  easy: {
    chunks: [2, 3],
    facts: [2, 5],
    weights: { ois: 0.85, lives: 1, mayor: 0.9, owns: 0.9, bought: 0.15 },
    cityReuse: 0.43,
    ownsColoured: 0.6,
    ownsAsked: 0.26,
    endsWithPurchase: 0.8,
  },
  main: {
    chunks: [4, 6],
    facts: [7, 11],
    weights: { ois: 0.28, lives: 0.27, mayor: 0.2, owns: 0.2, bought: 0.01 },
    cityReuse: 0.34,
    ownsColoured: 0.4,
    ownsAsked: 0.06,
    endsWithPurchase: 0.33,
  },
};

interface Fact {
  text: string;
  /** A purchase: its `it is COLOUR` follows it, in the next chunk when the purchase ends a chunk. */
  it?: string;
}

class QuestionBuilder {
  private readonly used = new Set<string>();
  private readonly cities: string[] = [];
  private readonly coloured: string[] = [];

  constructor(
    private readonly random: () => number,
    private readonly target: string,
    private readonly shape: SetShape,
  ) {
    this.used.add(target);
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.random() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.random() * xs.length)];
  }
  /** A name of `prefix` not yet used in this question. */
  private fresh(prefix: string, count: number): string {
    for (;;) {
      const name = `${prefix}${this.int(0, count - 1)}`;
      if (!this.used.has(name)) return (this.used.add(name), name);
    }
  }
  person = () => this.fresh('P', 300);
  colour = () => this.pick(COLOURS);
  city(): string {
    if (this.cities.length && this.random() < this.shape.cityReuse) return this.pick(this.cities);
    const c = this.fresh('C', 150);
    this.cities.push(c);
    return c;
  }
  /** An object whose colour this question states once: never the asked one. */
  colouredObject(): string {
    const o = this.fresh('O', 150);
    this.coloured.push(o);
    return o;
  }
  ownedObject(): string {
    if (this.coloured.length && this.random() < this.shape.ownsColoured) return this.pick(this.coloured);
    return this.fresh('O', 150);
  }

  fact(kind: FactKind): Fact {
    switch (kind) {
      case 'ois':
        return { text: `${this.colouredObject()} is ${this.colour()}` };
      case 'lives':
        return { text: `${this.person()} lives in ${this.city()}` };
      case 'mayor':
        return { text: `the mayor of ${this.city()} is ${this.person()}` };
      case 'owns':
        return { text: `${this.person()} owns ${this.ownedObject()}` };
      case 'bought':
        return { text: `${this.person()} bought ${this.colouredObject()}`, it: `it is ${this.colour()}` };
    }
  }

  /** A fact kind drawn by the set's weights. */
  kind(): FactKind {
    const entries = Object.entries(this.shape.weights) as [FactKind, number][];
    let r = this.random() * entries.reduce((s, [, w]) => s + w, 0);
    for (const [k, w] of entries) if ((r -= w) < 0) return k;
    return entries[entries.length - 1][0];
  }
}

/** Chunk texts from facts; a purchase that ends a chunk has its `it is` open the next one. */
function render(chunks: Fact[][]): string[] {
  const out: string[] = [];
  let carried: string | null = null;
  chunks.forEach((facts, c) => {
    const lines: string[] = carried ? [carried] : [];
    carried = null;
    facts.forEach((f, i) => {
      lines.push(f.text);
      if (!f.it) return;
      if (i === facts.length - 1 && c < chunks.length - 1) carried = f.it;
      else lines.push(f.it);
    });
    out.push(`${lines.join(' . ')} . <sep>`);
  });
  return out;
}

function question(random: () => number, set: QaSetName, type: QuestionType): QaQuestion {
  const shape = SHAPES[set];
  const target = `O${Math.floor(random() * 150)}`;
  const b = new QuestionBuilder(random, target, shape);
  const n = b.int(...shape.chunks);
  const chunks: Fact[][] = Array.from({ length: n }, () =>
    Array.from({ length: b.int(...shape.facts) }, () => b.fact(b.kind())),
  );
  // A purchase ending a non-last chunk is a cross-chunk reference; others stay inside their chunk.
  chunks.slice(0, -1).forEach((facts) => {
    if (random() < shape.endsWithPurchase && !facts[facts.length - 1].it) facts.push(b.fact('bought'));
  });
  const answer = b.colour();
  const c = type === 'coref_cross' ? b.int(0, n - 2) : b.int(0, n - 1);
  const facts = chunks[c];
  if (type === 'coref_cross') {
    const fact = { text: `${b.person()} bought ${target}`, it: `it is ${answer}` };
    if (facts[facts.length - 1].it) facts[facts.length - 1] = fact;
    else facts.push(fact);
  } else {
    // Never last in a non-last chunk (that would be the cross case).
    const at = b.int(0, c < n - 1 ? facts.length - 1 : facts.length);
    const fact =
      type === 'hop1_color'
        ? { text: `${target} is ${answer}` }
        : { text: `${b.person()} bought ${target}`, it: `it is ${answer}` };
    facts.splice(at, 0, fact);
  }
  // Sometimes the asked object is also owned by someone (a quarter of the public easy questions).
  if (random() < shape.ownsAsked) {
    const d = b.int(0, n - 1);
    chunks[d].splice(b.int(0, chunks[d].length - 1), 0, { text: `${b.person()} owns ${target}` });
  }
  return { chunks: render(chunks), question: `<q> color of ${target} ? <a>`, answer, type };
}

/** `count` questions of a set's shape, types in turn (a third each, as in the public sets). */
export function generateQuestions(set: QaSetName, count: number, seed: number): QaQuestion[] {
  // The same seeded generator as sampling (mulberry32), so a set is the same on every machine.
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, i) =>
    question(random, set, QUESTION_TYPES[i % QUESTION_TYPES.length]),
  );
}
