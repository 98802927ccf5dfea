/**
 * Development sets for stories260K, generated: multi-chunk story inputs in the model's own register
 * (TinyStories: short sentences, a few names, animals and things), each chunk one short sentence cached on
 * its own, then a short continuation prompt of 2–4 words. The fixed story sets
 * (test/fixtures/stories/story-sets.json) and the calibration sample are where results are reported, so
 * choices among selections are made on these (docs/accuracy.md, "How defaults are chosen"). A seed makes a
 * set reproducible on every machine.
 */
import { seededRandom } from '../model/generate.js';
import type { CalibrationSet } from './calibration-sample.js';

const NAMES = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Sam', 'Anna', 'Tim', 'Lucy', 'Jack', 'Sara'];
const ANIMALS = ['dog', 'cat', 'bird', 'fish', 'frog', 'bunny', 'duck', 'bear', 'mouse', 'puppy'];
const THINGS = ['ball', 'toy', 'box', 'hat', 'book', 'kite', 'car', 'cake', 'doll', 'boat', 'flower'];
const PLACES = ['park', 'garden', 'house', 'forest', 'school', 'store', 'pond', 'beach', 'tree', 'room'];
const ADJECTIVES = ['big', 'small', 'red', 'blue', 'shiny', 'old', 'new', 'pretty', 'little', 'green'];
const FEELINGS = ['happy', 'sad', 'scared', 'angry', 'tired', 'hungry', 'excited', 'sorry'];
const VERBS = ['play', 'run', 'jump', 'sing', 'swim', 'dance', 'hide', 'eat', 'read', 'draw'];

type Pick = <T>(xs: readonly T[]) => T;

/** One sentence of a story, about the story's characters; `n` is a name, `a` an animal. */
const SENTENCES: ((p: Pick, n: string, a: string) => string)[] = [
  (p, n) => `${n} had a ${p(ADJECTIVES)} ${p(THINGS)}.`,
  (p, n) => `${n} went to the ${p(PLACES)}.`,
  (p, n, a) => `One day, ${n} saw a ${a}.`,
  (p, _n, a) => `The ${a} was very ${p(FEELINGS)}.`,
  (p, n) => `${n} liked to ${p(VERBS)} every day.`,
  (p, n) => `${n} felt ${p(FEELINGS)} and sad.`,
  (p, n, a) => `The ${a} wanted to ${p(VERBS)} with ${n}.`,
  (p) => `They played in the ${p(PLACES)} all day.`,
  (p, n) => `${n} found a ${p(THINGS)} in the ${p(PLACES)}.`,
  (p, n, a) => `${n} gave the ${a} a ${p(THINGS)}.`,
  (p, n) => `Once upon a time, there was ${n}.`,
  (p, n) => `${n} said, "I want to ${p(VERBS)}!"`,
  (p, _n, a) => `The ${a} ran to the ${p(PLACES)}.`,
  (p, n) => `Mom told ${n} to be careful.`,
];

/** A continuation prompt of 2–4 words. */
const QUESTIONS: ((p: Pick, n: string, a: string) => string)[] = [
  (_p, n) => `${n} said`,
  (_p, _n, a) => `The ${a}`,
  (_p, n) => `Then ${n}`,
  (_p, n) => `${n} wanted to`,
  (_p, _n, a) => `The ${a} was`,
  (_p, n) => `${n} looked at`,
  () => `They were`,
  (_p, n) => `${n} and the`,
  () => `She was so`,
  (p) => `The ${p(THINGS)} was`,
];

export interface StorySetShape {
  /** Chunks per set, inclusive range. */
  chunks: [number, number];
}

/** The shape dev sets are generated with: more chunks than the fixed sets, one short sentence each. */
export const STORY_DEV_SHAPE: StorySetShape = { chunks: [2, 6] };

/** `count` story sets (chunks and a 2–4 word continuation prompt), reproducible from `seed`. */
export function generateStorySets(
  count: number,
  seed: number,
  shape: StorySetShape = STORY_DEV_SHAPE,
): CalibrationSet[] {
  const random = seededRandom(seed);
  const pick: Pick = (xs) => xs[Math.floor(random() * xs.length)];
  return Array.from({ length: count }, () => {
    const [name, other] = [pick(NAMES), pick(NAMES)];
    const animal = pick(ANIMALS);
    const [lo, hi] = shape.chunks;
    const n = lo + Math.floor(random() * (hi - lo + 1));
    const chunks = Array.from({ length: n }, (_, i) =>
      pick(SENTENCES)(pick, i > 0 && random() < 0.3 ? other : name, animal),
    );
    return { chunks, question: pick(QUESTIONS)(pick, name, animal) };
  });
}
