import fs from 'node:fs';
import { parse } from 'yaml';
import { repoRoot } from '../helpers/cli.js';

/**
 * The recipes the README shows, read from the README itself (the fenced block after
 * `<!-- recipe:NAME -->`), so what the tests run is what users copy.
 */
export function readmeRecipe(name: string): string {
  const readme = fs.readFileSync(`${repoRoot}/README.md`, 'utf8');
  const marker = `<!-- recipe:${name} -->`;
  const at = readme.indexOf(marker);
  if (at === -1) throw new Error(`README.md has no ${marker}`);
  const block = /^```[a-z]*\n([\s\S]*?)^```$/m.exec(readme.slice(at + marker.length));
  if (!block) throw new Error(`README.md has no fenced block after ${marker}`);
  return block[1]!;
}

export interface DumpValues {
  name: string;
  image: string;
  command: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
}

/** The first backup.preBackup entry of a values recipe. */
export function readmeDumpRecipe(name: string): DumpValues {
  const values = parse(readmeRecipe(name)) as { backup: { preBackup: DumpValues[] } };
  const dump = values.backup.preBackup[0];
  if (!dump) throw new Error(`recipe ${name} has no backup.preBackup entry`);
  return dump;
}
