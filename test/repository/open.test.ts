import { execFileSync } from 'node:child_process';
import { expect, test } from 'vitest';
import { LocalRepository } from '../../runner/repository/local.js';
import { openRepository } from '../../runner/repository/open.js';
import { BucketRepository } from '../../runner/repository/s3.js';
import { parseS3Settings } from '../../runner/repository/s3-settings.js';
import { distDir, ensureBuilt } from '../helpers/cli.js';

test('a directory or a bucket, by target', async () => {
  expect(await openRepository({ kind: 'directory', dir: '/tmp' })).toBeInstanceOf(LocalRepository);
  const bucket = await openRepository({ kind: 'bucket', settings: parseS3Settings({ remote: 's3://bucket/p' }, {}) });
  expect(bucket).toBeInstanceOf(BucketRepository);
  expect(bucket.location).toBe('s3://bucket/p');
});

test('a directory run never loads the AWS SDK', () => {
  ensureBuilt();
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
    const { openRepository } = await import(${JSON.stringify(`${distDir}/runner/repository/open.js`)});
    const repo = await openRepository({ kind: 'directory', dir: '/tmp' });
    await repo.list('backup');
    const before = seen.some((s) => s.includes('@aws-sdk'));
    await openRepository({ kind: 'bucket', settings: { location: { bucket: 'bucket', keyPrefix: '' }, endpoint: undefined, region: 'us-east-1', pathStyle: false, storageClass: undefined, sse: undefined, maxParts: 10000 } });
    console.log(JSON.stringify({ before, after: seen.some((s) => s.includes('@aws-sdk')) }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual({ before: false, after: true });
});
