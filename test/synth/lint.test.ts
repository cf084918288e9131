import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';
import { CI_VALUES } from '../../synth/ci-values.js';
import { helmBinaries, runHelm } from '../helpers/helm.js';
import { OVERRIDE_SETS } from './override-sets.js';
import { CHART_PATH, IMAGE_REPOSITORY, VALUES_FROM_STDIN, valuesInput } from './rendered-chart.js';

const CI_DIR = path.join(CHART_PATH, 'ci');

describe.each(helmBinaries())('helm $major lint --strict', (helm) => {
  it('passes with a claim name and an image', () => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, '--set', 'source.claimName=data', '--set', `image.repository=${IMAGE_REPOSITORY}`]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('0 chart(s) failed');
  });

  it.each(OVERRIDE_SETS.map((s) => [s.name, s.values] as const))('passes with %s', (_name, values) => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, ...VALUES_FROM_STDIN], { input: valuesInput(values) });
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });

  it.each(readdirSync(CI_DIR))('passes with the chart-testing values ci/%s', (file) => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, '-f', path.join(CI_DIR, file)]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });

  it('fails without a claim name, naming it', () => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, '--set', `image.repository=${IMAGE_REPOSITORY}`]);
    expect(result.code).not.toBe(0);
    expect(result.stdout + result.stderr).toContain('claimName');
  });
});

describe('chart-testing values (ci/)', () => {
  it('are the sets synth/ci-values.ts defines, each with a claim and an image', () => {
    expect(readdirSync(CI_DIR).sort()).toEqual(Object.keys(CI_VALUES).map((name) => `${name}-values.yaml`).sort());
    for (const file of readdirSync(CI_DIR)) {
      const values = parse(readFileSync(path.join(CI_DIR, file), 'utf8'));
      expect(values.source.claimName, file).toBe('data');
      expect(values.image.repository, file).toMatch(/\S/);
    }
  });
});
