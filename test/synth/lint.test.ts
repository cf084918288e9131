import { describe, expect, it } from 'vitest';
import { helmBinaries, runHelm } from '../helpers/helm.js';
import { OVERRIDE_SETS } from './override-sets.js';
import { CHART_PATH, valuesFile } from './rendered-chart.js';

describe.each(helmBinaries())('helm $major lint --strict', (helm) => {
  it('passes with the defaults plus a claim name', () => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, '--set', 'source.claimName=data']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('0 chart(s) failed');
  });

  it.each(OVERRIDE_SETS.map((s) => [s.name, s.values] as const))('passes with %s', (_name, values) => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, '-f', valuesFile(values)]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });

  it('fails without a claim name, naming it', () => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH]);
    expect(result.code).not.toBe(0);
    expect(result.stdout + result.stderr).toContain('claimName');
  });
});
