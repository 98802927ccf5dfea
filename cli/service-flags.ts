/**
 * The service commands' setting flags, generated from the config schema: every variable `NAME` is also a
 * flag `--name` (lower case, `-` for `_`). Flags are checked by the same schema as the environment, with
 * messages naming the flag, and then set in this process's environment, so the flag beats the variable —
 * in this process and in the worker processes it starts.
 */
import { Option, type Command } from 'commander';
import { CONFIG_HELP } from '../core/config/help.js';
import { loadConfig } from '../core/config/index.js';
import { FLAG_SETTINGS } from '../core/config/settings.js';
import { ConfigError, InvalidArgumentError } from '../core/errors.js';

export const SETTINGS_HEADING = 'Settings (each also an environment variable; a flag beats the variable):';

export function flagName(variable: string): string {
  return `--${variable.toLowerCase().replace(/_/g, '-')}`;
}

function settingOptions(): { variable: string; option: Option }[] {
  // Secrets stay environment-only (declared `flag: false`): a flag's value is visible to every user (`ps`).
  return FLAG_SETTINGS.map((variable) => {
    const { help, default: fallback } = CONFIG_HELP[variable];
    const option = new Option(`${flagName(variable)} <value>`, `${help} [${variable}; default ${fallback}]`);
    return { variable, option: option.helpGroup(SETTINGS_HEADING) };
  });
}

/** Add every setting flag to `command`. */
export function withSettingFlags(command: Command): Command {
  for (const { option } of settingOptions()) command.addOption(option);
  return command;
}

/**
 * The settings among a command's parsed options, checked and applied to `env` (default process.env).
 * A bad value is a usage error naming the flag; a variable no flag overrides is left to the service's
 * own check at start.
 */
export function applySettingFlags(
  opts: Record<string, unknown>,
  env: Record<string, string | undefined> = process.env,
): Record<string, string> {
  const given: Record<string, string> = {};
  for (const { variable, option } of settingOptions()) {
    const value = opts[option.attributeName()];
    if (typeof value === 'string') given[variable] = value;
  }
  try {
    loadConfig(given, { label: flagName });
  } catch (err) {
    if (err instanceof ConfigError) throw new InvalidArgumentError(err.message);
    throw err;
  }
  Object.assign(env, given);
  return given;
}
