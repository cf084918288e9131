import { COMMANDS, flagTable } from '../runner/config.js';
import { renderValuesTable } from './chart-readme.js';
import type { SchemaNode } from './schema.js';

/**
 * The parts of the top-level README that are generated, so they cannot drift from the code:
 * the chart values table (from values.schema.json) and the runner's flags and environment
 * variables (from runner/config.ts). Each lives between `<!-- generated:NAME -->` and
 * `<!-- /generated:NAME -->` markers; everything else in the README is hand-written.
 */
export function readmeSections(schema: SchemaNode): Map<string, string> {
  return new Map([
    ['values', renderValuesTable(schema)],
    ['cli', renderCliReference()],
  ]);
}

function renderCliReference(): string {
  return COMMANDS.map((command) => {
    const rows = flagTable(command).map(
      (f) => `| \`${f.flag}\` | ${f.env ? `\`${f.env}\`` : ''} | ${f.default ? `\`${f.default}\`` : ''} | ${f.help.replace(/\|/g, '\\|')} |`,
    );
    return [`**\`pvc-backup ${command}\`**`, '', '| Flag | Variable | Default | Meaning |', '|---|---|---|---|', ...rows, ''].join('\n');
  }).join('\n');
}

/** Replaces each generated section of the README; throws when a marker is missing. */
export function applyReadmeSections(readme: string, sections: Map<string, string>): string {
  let text = readme;
  for (const [name, content] of sections) {
    const start = `<!-- generated:${name} -->`;
    const end = `<!-- /generated:${name} -->`;
    const from = text.indexOf(start);
    const to = text.indexOf(end);
    if (from === -1 || to === -1 || to < from) throw new Error(`README.md lacks the ${start} ... ${end} markers`);
    text = `${text.slice(0, from + start.length)}\n${content.trimEnd()}\n${text.slice(to)}`;
  }
  return text;
}
