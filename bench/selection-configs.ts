import type { BlendOptions } from '../core/blend/index.js';

/** The selections beside K deviation that bench:ttft's fidelity run and bench:selection measure. */
export const FIDELITY_SELECTIONS: Pick<BlendOptions, 'selection' | 'attention' | 'sinkTokens'>[] = [
  { selection: 'question', attention: 'check' },
  { selection: 'combined', attention: 'check' },
  { selection: 'question', attention: 'lookahead' },
  { selection: 'combined', attention: 'lookahead' },
  { selection: 'deviation', sinkTokens: 2 },
  { selection: 'combined', attention: 'check', sinkTokens: 2 },
  { selection: 'fused' },
];
