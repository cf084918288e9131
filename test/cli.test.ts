import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ManifestDocument as Manifest } from '../runner/archive/manifest.js';
import { COMMANDS, type CommandName, flagTable } from '../runner/config.js';
import { archivesIn, jsonLines, packageVersion, runCli } from './helpers/cli.js';
import { exactState, useTempDirs, writeTree } from './helpers/tree.js';

/** The CLI surface of CONTRACT §1: usage errors, flags and their variables, help, version, logs. */

const tempDir = useTempDirs();
let source: string;
let dest: string;

beforeEach(async () => {
  source = await tempDir('src');
  dest = await tempDir('dest');
  writeTree(source, { 'a.txt': 'a\n', 'sub/b.txt': 'b\n' });
});

/** DEST already holds a real backup and an unrelated file, so "writes nothing" is checked against content. */
async function populatedDest(): Promise<void> {
  const first = await runCli(['backup', '--source', source, '--dest', dest]);
  expect(first.code, first.stdout).toBe(0);
  fs.writeFileSync(path.join(dest, 'notes.txt'), 'keep me');
}

describe('usage errors', () => {
  const S = '<source>';
  const D = '<dest>';
  const cases: { name: string; args: string[]; message: RegExp }[] = [
    { name: 'an unknown command', args: ['frobnicate', '--dest', D], message: /unknown command "frobnicate"/ },
    { name: 'an unknown flag', args: ['backup', '--source', S, '--dest', D, '--frobnicate'], message: /unknown flag "--frobnicate"/ },
    { name: 'an unknown short flag', args: ['backup', '--source', S, '--dest', D, '-x'], message: /unknown flag "-x"/ },
    { name: 'a stray argument', args: ['backup', '--source', S, '--dest', D, 'extra'], message: /takes no argument "extra"/ },
    { name: 'a missing --source', args: ['backup', '--dest', D], message: /needs --source \(or PVC_BACKUP_SOURCE\)/ },
    { name: 'a missing --dest', args: ['backup', '--source', S], message: /needs --dest \(or PVC_BACKUP_DEST\)/ },
    { name: 'a nonexistent --source', args: ['backup', '--source', '/nonexistent/pvc-backup-src', '--dest', D], message: /--source \/nonexistent\/pvc-backup-src does not exist/ },
    { name: 'a nonexistent --dest', args: ['backup', '--source', S, '--dest', '/nonexistent/pvc-backup-dest'], message: /--dest \/nonexistent\/pvc-backup-dest does not exist/ },
    { name: 'a relative nonexistent --source (shown resolved)', args: ['backup', '--source', 'no/such/dir', '--dest', D], message: /--source \/.*\/no\/such\/dir does not exist/ },
    { name: 'a --dest that is a file', args: ['backup', '--source', S, '--dest', 'a-file'], message: /--dest \/.*\/a-file is not a directory/ },
    { name: 'a --dest inside --source', args: ['backup', '--source', S, '--dest', `${S}/sub`], message: /--dest .* is inside --source/ },
    { name: 'a --source inside --dest', args: ['backup', '--source', `${D}/inner`, '--dest', D], message: /--source .* is inside --dest/ },
    { name: '--keep-last 0', args: ['backup', '--source', S, '--dest', D, '--keep-last', '0'], message: /--keep-last must be at least 1/ },
    { name: '--keep-last -1', args: ['backup', '--source', S, '--dest', D, '--keep-last', '-1'], message: /--keep-last must be at least 1/ },
    { name: '--keep-last abc', args: ['backup', '--source', S, '--dest', D, '--keep-last', 'abc'], message: /--keep-last must be a whole number, got "abc"/ },
    { name: '--compression lz4', args: ['backup', '--source', S, '--dest', D, '--compression', 'lz4'], message: /--compression must be one of gzip, zstd, none, got "lz4"/ },
    { name: '--level 0', args: ['backup', '--source', S, '--dest', D, '--level', '0'], message: /--level for gzip must be 1-9, got 0/ },
    { name: '--level 99', args: ['backup', '--source', S, '--dest', D, '--compression', 'zstd', '--level', '99'], message: /--level for zstd must be 1-19, got 99/ },
    { name: '--level with --compression none', args: ['backup', '--source', S, '--dest', D, '--compression', 'none', '--level', '3'], message: /--level does not apply to --compression none/ },
    { name: '--level without a value', args: ['backup', '--source', S, '--dest', D, '--level'], message: /--level needs a value/ },
    { name: '--level followed by another flag', args: ['backup', '--source', S, '--level', '--dest', D], message: /--level needs a value/ },
    { name: '--log-format xml', args: ['backup', '--source', S, '--dest', D, '--log-format', 'xml'], message: /--log-format must be text or json, got "xml"/ },
    { name: 'a bad --prefix', args: ['backup', '--source', S, '--dest', D, '--prefix', '../up'], message: /--prefix must start with a letter or digit/ },
    { name: '--progress-interval 0', args: ['backup', '--source', S, '--dest', D, '--progress-interval', '0'], message: /--progress-interval must be more than 0/ },
    { name: 'verify with both --all and --latest', args: ['verify', '--dest', D, '--all', '--latest'], message: /verify takes one of ARCHIVE, --latest or --all/ },
    { name: 'verify with a bad --schedule', args: ['verify', '--dest', D, '--schedule', 'every day'], message: /--schedule "every day" .* is not a valid cron schedule/ },
    { name: 'prune without --keep-last', args: ['prune', '--dest', D], message: /prune needs --keep-last/ },
    { name: 'a bad boolean value', args: ['list', '--dest', D, '--json=perhaps'], message: /--json must be true or false, got "perhaps"/ },
  ];

  // One populated fixture for all cases (none of them may change it); each case compares against it.
  const fixtureDir = useTempDirs('file');
  const fixture = { source: '', dest: '', work: '' };
  beforeAll(async () => {
    fixture.source = await fixtureDir('src');
    fixture.dest = await fixtureDir('dest');
    fixture.work = await fixtureDir('cwd');
    writeTree(fixture.source, { 'a.txt': 'a\n', 'sub/b.txt': 'b\n' });
    writeTree(fixture.work, { 'a-file': 'not a directory' });
    const first = await runCli(['backup', '--source', fixture.source, '--dest', fixture.dest]);
    expect(first.code, first.stdout).toBe(0);
    writeTree(fixture.dest, { 'notes.txt': 'keep me', 'inner/': '' });
  });

  it.each(cases)('$name exits 2 with one line on stderr and writes nothing', async ({ args, message }) => {
    const { source, dest, work } = fixture;
    const destBefore = exactState(dest);
    const sourceBefore = exactState(source);
    const realArgs = args.map((a) => a.replace(S, source).replace(D, dest));
    const result = await runCli(realArgs, { cwd: work });
    expect(result.code, result.stdout + result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^pvc-backup: [^\n]+\n$/);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
    expect(exactState(dest)).toBe(destBefore);
    expect(exactState(source)).toBe(sourceBefore);
  });
});

describe('flags and environment variables', () => {
  it('a flag beats its variable', async () => {
    const withFlag = await runCli(['backup', '--source', source, '--dest', dest, '--compression', 'gzip'], { env: { PVC_BACKUP_COMPRESSION: 'zstd' } });
    expect(withFlag.code, withFlag.stdout).toBe(0);
    expect(archivesIn(dest)).toEqual([expect.stringMatching(/\.tar\.gz$/)]);

    const other = await tempDir('dest');
    const fromEnv = await runCli(['backup', '--source', source, '--dest', other], { env: { PVC_BACKUP_COMPRESSION: 'zstd' } });
    expect(fromEnv.code, fromEnv.stdout).toBe(0);
    expect(archivesIn(other)).toEqual([expect.stringMatching(/\.tar\.zst$/)]);
  });

  it('every flag of every command has a PVC_BACKUP_* variable, except the verify selectors', () => {
    for (const command of COMMANDS) {
      for (const { flag, env } of flagTable(command)) {
        if (command === 'verify' && (flag === '--latest' || flag === '--all')) {
          expect(env, flag).toBeNull();
          continue;
        }
        expect(env, `${command} ${flag}`).toBe(`PVC_BACKUP_${flag.slice(2).toUpperCase().replace(/-/g, '_')}`);
      }
    }
  });

  /** A value each variable must reject: proves the CLI reads the variable (exit 2 naming the flag or value). */
  const badValues: Record<string, { value: string; extra?: string[] }> = {
    dest: { value: '/nonexistent/pvc-backup-dest' },
    prefix: { value: '../up' },
    'log-format': { value: 'xml' },
    'lock-stale-after': { value: 'soon' },
    'progress-interval': { value: 'often' },
    source: { value: '/nonexistent/pvc-backup-src' },
    compression: { value: 'lz4' },
    level: { value: '99' },
    'keep-last': { value: '0' },
    'allow-empty': { value: 'maybe' },
    'skip-unreadable': { value: 'maybe' },
    xattrs: { value: 'maybe' },
    schedule: { value: 'every day' },
    'time-zone': { value: 'Mars/Olympus_Mons', extra: ['--schedule', '0 0 * * *'] },
    grace: { value: 'later', extra: ['--schedule', '0 0 * * *'] },
    json: { value: 'maybe' },
    'dry-run': { value: 'maybe' },
    archive: { value: '..' },
    target: { value: '/nonexistent/pvc-backup-target' },
    mode: { value: 'overwrite' },
    snapshot: { value: 'maybe' },
    'allow-unverified': { value: 'maybe' },
    'request-id': { value: 'not a valid id!' },
  };
  /** Variables checked by a successful run instead (they have no invalid value). */
  const checkedByRuns = new Set(['exclude']);

  function baseArgs(command: CommandName, target: string): string[] {
    switch (command) {
      case 'backup':
        return ['--source', source, '--dest', dest];
      case 'prune':
        return ['--dest', dest, '--keep-last', '1'];
      case 'restore':
        return ['--dest', dest, '--target', target];
      default:
        return ['--dest', dest];
    }
  }

  function without(args: string[], flag: string): string[] {
    const i = args.indexOf(flag);
    return i === -1 ? args : [...args.slice(0, i), ...args.slice(i + 2)];
  }

  it.each(COMMANDS)('every variable of %s is read: a bad value in it is a usage error', async (command) => {
    const target = await tempDir('target');
    for (const { flag, env } of flagTable(command)) {
      if (env === null || checkedByRuns.has(flag.slice(2))) continue;
      const bad = badValues[flag.slice(2)];
      expect(bad, `no bad value for ${env} in this test`).toBeDefined();
      const args = [command, ...without(baseArgs(command, target), flag), ...(bad!.extra ?? [])];
      const result = await runCli(args, { env: { [env]: bad!.value } });
      expect(result.code, `${env}=${bad!.value}: ${result.stdout}${result.stderr}`).toBe(2);
      expect(result.stderr, env).toMatch(/^pvc-backup: [^\n]+\n$/);
      const named = [flag, env, bad!.value].some((s) => result.stderr.includes(s));
      expect(named, `${env}: ${result.stderr}`).toBe(true);
    }
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it('a backup configured only through variables uses each of them', async () => {
    const env = {
      PVC_BACKUP_SOURCE: source,
      PVC_BACKUP_DEST: dest,
      PVC_BACKUP_PREFIX: 'envonly',
      PVC_BACKUP_COMPRESSION: 'zstd',
      PVC_BACKUP_LEVEL: '7',
      PVC_BACKUP_EXCLUDE: 'sub/',
      PVC_BACKUP_KEEP_LAST: '1',
      PVC_BACKUP_LOG_FORMAT: 'json',
    };
    for (let i = 0; i < 2; i++) {
      const result = await runCli(['backup'], { env });
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(() => jsonLines(result.stdout)).not.toThrow();
    }
    const names = archivesIn(dest);
    expect(names).toEqual([expect.stringMatching(/^envonly-\d{8}T\d{6}Z(-2)?\.tar\.zst$/)]);
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${names[0]}.manifest.json`), 'utf8')) as Manifest;
    expect(manifest).toMatchObject({ prefix: 'envonly', compression: 'zstd', level: 7, excludes: ['sub/'] });
    expect(manifest.files.map((f) => f.path)).toEqual(['./', './a.txt']);

    const list = await runCli(['list'], { env: { PVC_BACKUP_DEST: dest, PVC_BACKUP_PREFIX: 'envonly', PVC_BACKUP_JSON: 'true' } });
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((r) => r.name)).toEqual(names);

    const dryRun = await runCli(['prune'], { env: { PVC_BACKUP_DEST: dest, PVC_BACKUP_PREFIX: 'envonly', PVC_BACKUP_KEEP_LAST: '1', PVC_BACKUP_DRY_RUN: 'true' } });
    expect(dryRun.code, dryRun.stdout + dryRun.stderr).toBe(0);
    expect(archivesIn(dest)).toEqual(names);

    const verify = await runCli(['verify'], {
      env: { PVC_BACKUP_DEST: dest, PVC_BACKUP_PREFIX: 'envonly', PVC_BACKUP_SCHEDULE: '0 0 * * *', PVC_BACKUP_GRACE: '1h', PVC_BACKUP_LOG_FORMAT: 'json' },
    });
    expect(verify.code, verify.stdout).toBe(0);
    expect(jsonLines(verify.stdout).map((l) => l.event)).toEqual(expect.arrayContaining(['verify.ok', 'verify.fresh']));
  });
});

describe('help and version', () => {
  it.each(COMMANDS)('%s --help lists every flag with its variable', async (command) => {
    const result = await runCli([command, '--help']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    for (const { flag, env } of flagTable(command)) {
      const line = result.stdout.split('\n').find((l) => l.startsWith('  --') && new RegExp(`--(\\[no-\\])?${flag.slice(2)}\\b`).test(l));
      expect(line, `${flag} in ${command} --help`).toBeDefined();
      if (env) expect(line, `${env} in ${command} --help`).toContain(env);
    }
  });

  it('--help lists every command', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    for (const command of COMMANDS) expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: `${packageVersion}\n`, stderr: '' });
  });
});

describe('JSON logs', () => {
  const secrets = { PVC_BACKUP_SECRET_TOKEN: 'tok-5f3a9c1e-do-not-print', AWS_SECRET_ACCESS_KEY: 'aws-7b2d4e6f-do-not-print' };

  function expectWellFormed(stdout: string) {
    const lines = jsonLines(stdout);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(Number.isNaN(Date.parse(line.time)), line.time).toBe(false);
      expect(['info', 'warn', 'error']).toContain(line.level);
      expect(line.event).toMatch(/^[a-z]+(\.[a-z-]+)+$/);
      expect(typeof line.msg).toBe('string');
    }
    return lines;
  }

  it('every stdout line of a backup is JSON, and the last one sums the run up', async () => {
    const result = await runCli(['backup', '--source', source, '--dest', dest, '--log-format', 'json'], { env: secrets });
    expect(result.code, result.stdout).toBe(0);
    expect(result.stderr).toBe('');
    const lines = expectWellFormed(result.stdout);
    const last = lines.at(-1)!;
    const [name] = archivesIn(dest);
    expect(last).toMatchObject({
      event: 'backup.done',
      level: 'info',
      archive: name,
      bytesIn: 4,
      bytesOut: fs.statSync(path.join(dest, name!)).size,
      files: 2,
      durationSeconds: expect.any(Number),
      sha256: fs.readFileSync(path.join(dest, `${name}.sha256`), 'utf8').slice(0, 64),
    });
    for (const secret of Object.values(secrets)) expect(result.stdout + result.stderr).not.toContain(secret);
  });

  it('failures, verify and prune log JSON lines too, without secrets', async () => {
    await populatedDest();
    const empty = await tempDir('empty');
    const runs = [
      await runCli(['backup', '--source', empty, '--dest', dest, '--log-format', 'json'], { env: secrets }),
      await runCli(['verify', '--dest', dest, '--all', '--log-format', 'json'], { env: secrets }),
      await runCli(['prune', '--dest', dest, '--keep-last', '1', '--log-format', 'json'], { env: secrets }),
    ];
    expect(runs.map((r) => r.code)).toEqual([1, 0, 0]);
    for (const run of runs) {
      expectWellFormed(run.stdout);
      for (const secret of Object.values(secrets)) expect(run.stdout + run.stderr).not.toContain(secret);
    }
    expect(jsonLines(runs[0]!.stdout).at(-1)).toMatchObject({ level: 'error', event: 'backup.failed', exitCode: 1 });
  });
});
