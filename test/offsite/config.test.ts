import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type RunnerConfig, parseCommandLine } from '../../runner/config.js';
import { UsageError } from '../../runner/errors.js';

/** --remote and the --s3-* flags: parsed once at the edge into the bucket's settings and the bucket's retention. */

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-offsite-config-'));
const source = path.join(root, 'src');
const dest = path.join(root, 'dest');
fs.mkdirSync(source);
fs.mkdirSync(dest);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function parse(argv: string[], env: Record<string, string> = {}): RunnerConfig {
  const parsed = parseCommandLine(argv, env);
  if (parsed.kind !== 'run') throw new Error('not a run');
  return parsed.config;
}

describe('backup', () => {
  test('bucket only: the --keep-* policy is the bucket\'s, with --remote-keep-last in place of --keep-last', () => {
    const config = parse(['backup', '--source', source, '--remote', 's3://bkt/team/app', '--keep-last', '5', '--keep-daily', '7', '--remote-keep-last', '9']);
    expect(config).toMatchObject({ command: 'backup', dest: undefined, retention: undefined });
    if (config.command !== 'backup' || !config.offsite) throw new Error('no offsite');
    expect(config.offsite.retention).toEqual({ last: 9, daily: 7 });
    expect(config.offsite.settings.location).toEqual({ bucket: 'bkt', keyPrefix: 'team/app' });
  });

  test('with --dest: DEST keeps --keep-last, the bucket defaults to it, GFS tiers apply to both', () => {
    const config = parse(['backup', '--source', source, '--dest', dest, '--remote', 's3://bkt', '--keep-last', '5', '--keep-weekly', '2']);
    if (config.command !== 'backup' || config.dest === undefined) throw new Error('unexpected');
    expect(config.retention).toEqual({ last: 5, weekly: 2 });
    expect(config.offsite?.retention).toEqual({ last: 5, weekly: 2 });
  });

  test('endpoint, region and path style from the flags, their variables or AWS_*; a flag beats its variable', () => {
    const config = parse(['backup', '--source', source, '--s3-region', 'eu-west-1'], {
      PVC_BACKUP_REMOTE: 's3://bkt/p',
      PVC_BACKUP_S3_REGION: 'us-west-2',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9000',
      PVC_BACKUP_S3_MAX_PARTS: '1000',
    });
    if (config.command !== 'backup' || !config.offsite) throw new Error('no offsite');
    expect(config.offsite.settings).toMatchObject({ region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000', pathStyle: true, maxParts: 1000 });
    const virtualHost = parse(['list', '--remote', 's3://bkt', '--no-s3-path-style', '--s3-endpoint', 'https://s3.example.com']);
    expect(virtualHost).toMatchObject({ remote: { pathStyle: false, endpoint: 'https://s3.example.com' } });
  });
});

describe('bad combinations are usage errors', () => {
  test.each([
    [['backup', '--source', source], /needs --dest \(or PVC_BACKUP_DEST\) or --remote/],
    [['list'], /list needs --dest .* or --remote/],
    [['restore', '--target', source], /restore needs --dest/],
    [['list', '--dest', dest, '--s3-endpoint', 'http://x'], /--s3-endpoint applies only with --remote/],
    [['backup', '--source', source, '--dest', dest, '--remote-keep-last', '3'], /--remote-keep-last applies only with --remote/],
    [['backup', '--source', source, '--remote', 's3://bkt', '--remote-keep-last', '0'], /--remote-keep-last must be at least 1/],
    [['verify', '--remote', 's3://bkt', '--s3-sse-kms-key-id', 'k'], /needs --s3-sse aws:kms/],
  ])('%j', (argv, message) => {
    expect(() => parse(argv as string[])).toThrow(UsageError);
    expect(() => parse(argv as string[])).toThrow(message as RegExp);
  });

  test('an --s3-* variable without --remote is not an error (a chart may set it for every pod)', () => {
    expect(parse(['list', '--dest', dest], { PVC_BACKUP_S3_REGION: 'eu-west-1' })).toMatchObject({ command: 'list', dest });
  });

  test('with both --dest and --remote, list, verify and prune act on the bucket', () => {
    expect(parse(['verify', '--dest', dest, '--remote', 's3://bkt/x'])).toMatchObject({ dest: undefined, remote: { location: { bucket: 'bkt', keyPrefix: 'x' } } });
  });
});
