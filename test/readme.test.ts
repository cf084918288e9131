import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { applyReadmeSections, readmeSections } from '../synth/readme-sections.js';
import { readSchema } from '../synth/schema.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('has current generated sections (values table, runner flags); run npm run synth when this fails', () => {
    const fresh = applyReadmeSections(readme, readmeSections(readSchema()));
    expect(fresh === readme, 'README.md is out of date with values.schema.json or runner/config.ts: run npm run synth').toBe(true);
  });

  it('documents every chart value and every runner environment variable', () => {
    for (const key of ['source.claimName', 'backup.keepLast', 'restore.archive', 'verify.schedule', 'storage.existingClaim']) {
      expect(readme).toContain(`\`${key}\``);
    }
    for (const variable of ['PVC_BACKUP_SOURCE', 'PVC_BACKUP_DEST', 'PVC_BACKUP_KEEP_LAST', 'PVC_BACKUP_EXCLUDE', 'PVC_BACKUP_LOG_FORMAT']) {
      expect(readme).toContain(variable);
    }
  });

  it('gives the same test command that CI runs', () => {
    const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
    const command = /^(bash scripts\/setup\.sh && npm test)$/m.exec(ci)?.[1];
    expect(command).toBeDefined();
    expect(readme).toContain(command!);
  });
});
