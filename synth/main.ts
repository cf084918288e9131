import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHART_DIR, synthesize } from './chart.js';
import { applyReadmeSections, readmeSections } from './readme-sections.js';
import { readSchema } from './schema.js';

/** `npm run synth`: regenerates charts/pvc-backup (and the values type) from synth/ and values.schema.json. */
const root = fileURLToPath(new URL('..', import.meta.url));
const files = synthesize();

// Files the synth no longer produces must not linger in the chart.
const chartDir = path.join(root, CHART_DIR);
const existing = existsSync(chartDir) ? readdirSync(chartDir, { recursive: true, withFileTypes: true }) : [];
for (const entry of existing) {
  if (!entry.isFile()) continue;
  const relative = path.relative(root, path.join(entry.parentPath, entry.name));
  if (!files.has(relative)) rmSync(path.join(root, relative));
}

for (const [relative, content] of files) {
  const target = path.join(root, relative);
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, content);
}
const readmePath = path.join(root, 'README.md');
if (existsSync(readmePath)) {
  const readme = readFileSync(readmePath, 'utf8');
  const updated = applyReadmeSections(readme, readmeSections(readSchema()));
  if (updated !== readme) writeFileSync(readmePath, updated);
}
console.log(`synth: wrote ${files.size} files (${CHART_DIR}, values type) and the README's generated sections`);
