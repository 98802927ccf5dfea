/**
 * The documents' Redis scripts, kept as `.lua` files beside this module (`lua/`) and registered once per
 * connection with ioredis `defineCommand` (EVALSHA, falling back to EVAL when the server lacks the script),
 * the way BullMQ keeps its commands. A line `--- @include name` pulls in `lua/name.lua`. Every key a script
 * touches, given or derived, shares the `{prefix}` hash tag (keys.ts), so the scripts run on Redis Cluster.
 */
import { readFileSync } from 'node:fs';
import type { RedisClient } from '../queue/redis.js';

type Reply = unknown;
type ScriptFn = (...args: (string | number)[]) => Promise<Reply>;

/** Script name → number of KEYS it takes. */
const SCRIPTS = {
  ingest: 6,
  delete: 4,
  'gc-begin': 3,
  'gc-end': 5,
  unlock: 1,
  'extend-lock': 1,
  'mark-failed': 3,
  'mark-ready': 3,
  'precompute-begin': 3,
  'retry-failed': 3,
} as const;

export type ScriptName = keyof typeof SCRIPTS;

/** Calls a script by name with its KEYS and ARGV. */
export type ScriptCaller = (name: ScriptName, keys: string[], args: (string | number)[]) => Promise<Reply>;

const LUA_DIR = new URL('./lua/', import.meta.url);

function readScript(name: string): string {
  const src = readFileSync(new URL(`${name}.lua`, LUA_DIR), 'utf8');
  return src.replace(/^--- @include (\S+)$/gm, (_, inc: string) => readScript(inc));
}

const sources = new Map<ScriptName, string>();

function commandName(name: ScriptName): string {
  return `cb_${name.replace(/-/g, '_')}`;
}

/** Define every script on `redis` (once per connection) and return a typed caller. */
export function documentScripts(redis: RedisClient): ScriptCaller {
  const commands = redis as unknown as Record<string, ScriptFn | undefined>;
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    if (commands[commandName(name)]) continue;
    if (!sources.has(name)) sources.set(name, readScript(name));
    redis.defineCommand(commandName(name), { numberOfKeys: SCRIPTS[name], lua: sources.get(name)! });
  }
  return (name, keys, args) => {
    if (keys.length !== SCRIPTS[name]) throw new Error(`script ${name} takes ${SCRIPTS[name]} keys`);
    return commands[commandName(name)]!.call(redis, ...keys, ...args);
  };
}
