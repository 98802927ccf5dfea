/** Numeric flag values, checked with plain messages that name the flag (commander hands them over as text). */
import { Option } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { WEIGHT_FORMATS } from '../core/model/weights/format.js';

/** A numeric flag: undefined when absent; a message naming the flag and the allowed range otherwise. */
export function numberFlag(
  raw: string | undefined,
  name: string,
  rule: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const { integer = false, min = -Infinity, max = Infinity } = rule;
  if (raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    const kind = integer ? 'an integer' : 'a number';
    const range =
      min > -Infinity && max < Infinity
        ? ` from ${min} to ${max}`
        : min > -Infinity
          ? ` of at least ${min}`
          : max < Infinity
            ? ` of at most ${max}`
            : '';
    throw new InvalidArgumentError(`--${name} must be ${kind}${range}, got "${raw}"`);
  }
  return n;
}

/** The engine flags `generate` and `calibrate` share: which model, on which provider, in which format. */
function engineOptions(): Option[] {
  return [
    new Option(
      '--model <path|name>',
      'a model folder, or a name looked up like the service does (default: MODEL)',
    ),
    new Option('--ep <provider>', 'execution provider (default: EXECUTION_PROVIDER)').choices([
      'cpu',
      'webgpu',
      'cuda',
    ]),
    new Option(
      '--weights <format>',
      "linear layers' weights; auto: fp32 on the CPU, the device precision's on a GPU (default: WEIGHTS)",
    ).choices(['auto', ...WEIGHT_FORMATS]),
  ];
}

/** `cmd` with the engine flags. */
export function withEngineOptions<T extends { addOption(o: Option): T }>(cmd: T): T {
  for (const o of engineOptions()) cmd.addOption(o);
  return cmd;
}
