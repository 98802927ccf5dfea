/**
 * One line of help per configuration variable, and its default as a reader sees it: `cacheblend <service
 * command> --help` lists them beside the flags generated from the schema (docs/configuration.md has the
 * full table), both from the settings' declarations (settings.ts).
 */
import { SETTINGS, plainDoc, shownDefault, type SettingName } from './settings.js';
export const CONFIG_HELP: Readonly<Record<string, { default: string; help: string }>> = Object.freeze(
  Object.fromEntries(
    (Object.keys(SETTINGS) as SettingName[]).map((name) => [
      name,
      { default: shownDefault(name), help: plainDoc(SETTINGS[name].doc) },
    ]),
  ),
);
