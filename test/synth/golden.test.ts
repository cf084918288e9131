import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART_DIR, synthesize } from '../../synth/chart.js';
import { isSection, readSchema, schemaDefaults, type SchemaNode } from '../../synth/schema.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const STALE = 'charts/pvc-backup is out of date with synth/ or values.schema.json: run npm run synth and commit the result';

describe('committed chart', () => {
  const files = synthesize();

  it('equals a fresh synth', () => {
    const differing = [...files].filter(([relative, content]) => {
      const onDisk = path.join(ROOT, relative);
      return !existsSync(onDisk) || readFileSync(onDisk, 'utf8') !== content;
    });
    expect(differing.map(([relative]) => relative), STALE).toEqual([]);
  });

  it('has no files the synth does not write', () => {
    const chartDir = path.join(ROOT, CHART_DIR);
    const onDisk = readdirSync(chartDir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)));
    expect(onDisk.filter((relative) => !files.has(relative)), STALE).toEqual([]);
  });

  it('is synthesized deterministically', () => {
    expect(synthesize()).toEqual(files);
  });

  it('carries the top-level values.schema.json unchanged', () => {
    expect(files.get(`${CHART_DIR}/values.schema.json`)).toBe(readFileSync(path.join(ROOT, 'values.schema.json'), 'utf8'));
  });
});

describe('the chart README (what helm package ships)', () => {
  const readme = readFileSync(path.join(ROOT, CHART_DIR, 'README.md'), 'utf8');

  it('stands on its own: no links into the repository', () => {
    const relative = [...readme.matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]!).filter((target) => !/^https?:\/\//.test(target));
    expect(relative).toEqual([]);
  });

  it('covers install with the image, the Pod Security profiles, restore, upgrades, the bucket and age', () => {
    for (const text of ['docker build', 'image.repository', 'securityProfile: restricted', '--reset-then-reuse-values', 'restore.enabled=true', "grep -owE 'Complete|Failed'", 'WaitForFirstConsumer', 'helm test', 'storage.enabled: false', 'restore.from: offsite', 'eks.amazonaws.com/role-arn', 'encryption.identityKey']) {
      expect(readme).toContain(text);
    }
  });

  it('carries the Chart.yaml metadata chart catalogues read', () => {
    const chart = parse(readFileSync(path.join(ROOT, CHART_DIR, 'Chart.yaml'), 'utf8'));
    expect(chart).toMatchObject({ kubeVersion: '>=1.28.0-0', home: expect.stringMatching(/^https:/), icon: expect.stringMatching(/^https:.*\.svg$/) });
    expect(chart.sources.length).toBeGreaterThan(0);
    expect(chart.maintainers[0].name).toBeTruthy();
    expect(chart.annotations).toMatchObject({ 'artifacthub.io/license': 'Apache-2.0' });
    expect(parse(chart.annotations['artifacthub.io/changes'])[0]).toMatchObject({ kind: expect.any(String), description: expect.any(String) });
    expect(existsSync(path.join(ROOT, 'docs', 'icon.svg'))).toBe(true);
  });
});

describe('values.yaml', () => {
  const schema = readSchema();
  const text = readFileSync(path.join(ROOT, CHART_DIR, 'values.yaml'), 'utf8');

  it('holds exactly the schema defaults', () => {
    expect(parse(text)).toEqual(schemaDefaults(schema));
  });

  it('documents every value with a comment that starts with its key', () => {
    const lines = text.split('\n');
    /** The comment lines right above line `index`, stopping at a commented-out value like `# claimName: ...`. */
    const commentAbove = (index: number, pad: string) => {
      const block: string[] = [];
      for (let i = index - 1; i >= 0 && lines[i]!.startsWith(`${pad}# `) && !/^ *# [\w-]+: /.test(lines[i]!); i--) block.unshift(lines[i]!);
      return block;
    };
    const undocumented: string[] = [];
    // Keys are searched after their section's line, so backup.enabled and restore.enabled are told apart.
    const visit = (node: SchemaNode, prefix: string, depth: number, from: number) => {
      const pad = '  '.repeat(depth);
      for (const [key, child] of Object.entries(node.properties ?? {})) {
        const path = prefix ? `${prefix}.${key}` : key;
        // A key YAML 1.1 would read as a boolean (on, off, yes, no) is written quoted.
        const written = [key, JSON.stringify(key)];
        const line = lines.findIndex((l, i) => i > from && written.some((k) => l.startsWith(`${pad}${k}:`) || l.startsWith(`${pad}# ${k}: `)));
        if (line < 0 || !commentAbove(line, pad)[0]?.startsWith(`${pad}# ${key} `)) undocumented.push(path);
        if (isSection(child)) visit(child, path, depth + 1, line);
      }
    };
    visit(schema, '', 0, -1);
    expect(undocumented).toEqual([]);
  });
});
