import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ManifestDocument as Manifest } from '../runner/archive/manifest.js';
import { COMMANDS, type CommandName, flagTable } from '../runner/config.js';
import { REQUIRED_NODE_MAJOR } from '../runner/cli.js';
import { archivesIn, cleanEnv, cliPath, ensureBuilt, jsonLines, packageVersion, repoRoot, runCli } from './helpers/cli.js';
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
    { name: 'a missing --dest inside --source (the relation is the problem, not the missing directory)', args: ['backup', '--source', S, '--dest', `${S}/no/backups`], message: /--dest .*\/no\/backups is inside --source/ },
    { name: 'a missing --target inside --dest', args: ['restore', '--dest', D, '--target', `${D}/no/target`], message: /--target .*\/no\/target is inside --dest/ },
    { name: 'a missing --dest inside --target', args: ['restore', '--dest', `${S}/no/backups`, '--target', S], message: /--dest .*\/no\/backups is inside --target/ },
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
    'keep-hourly': { value: '-1' },
    'keep-daily': { value: '-1' },
    'keep-weekly': { value: 'weekly' },
    'keep-monthly': { value: '1.5' },
    'keep-yearly': { value: '-3' },
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
    'pushgateway-url': { value: 'gw:9091' },
    'notify-url': { value: 'ftp://example.com/hook' },
    'notify-on': { value: 'sometimes' },
    'ping-url': { value: 'not a url' },
    events: { value: 'maybe' },
    'claim-name': { value: 'Not_A_Claim' },
    namespace: { value: 'Not_A_Namespace' },
    'kube-api': { value: 'not a url', extra: ['--events', '--claim-name', 'data', '--namespace', 'apps'] },
    'monitoring-timeout': { value: 'soon' },
    'job-uid': { value: 'not/a/uid' },
    dump: { value: 'Not_A_Dump' },
    'dumps-dir': { value: '/nonexistent/pvc-backup-dumps', extra: ['--dump', 'postgres'] },
    path: { value: '../outside' },
    'scale-down': { value: 'daemonset/web', extra: ['--namespace', 'apps'] },
    'scale-down-timeout': { value: 'soon', extra: ['--scale-down', 'deployment/web', '--namespace', 'apps'] },
    'age-recipient': { value: 'age1notakey' },
    'age-recipients-file': { value: '/nonexistent/pvc-backup-recipients.txt' },
    'age-identity-file': { value: '/nonexistent/pvc-backup-key.txt' },
    remote: { value: 'https://bucket/path' },
    'remote-keep-last': { value: '0', extra: ['--remote', 's3://bucket/path'] },
    's3-endpoint': { value: 'ftp://store.example', extra: ['--remote', 's3://bucket/path'] },
    's3-region': { value: 'not a region', extra: ['--remote', 's3://bucket/path'] },
    's3-path-style': { value: 'maybe', extra: ['--remote', 's3://bucket/path'] },
    's3-storage-class': { value: 'cold storage', extra: ['--remote', 's3://bucket/path'] },
    's3-sse': { value: 'DES', extra: ['--remote', 's3://bucket/path'] },
    's3-sse-kms-key-id': { value: 'key-1', extra: ['--remote', 's3://bucket/path'] },
    's3-max-parts': { value: '5', extra: ['--remote', 's3://bucket/path'] },
  };
  /**
   * Variables checked by a successful run instead (they have no invalid value); service-account-dir
   * in test/monitoring/events.test.ts, sqlite in test/consistency/backup-consistency.test.ts.
   */
  const checkedByRuns = new Set(['exclude', 'service-account-dir', 'allow-absolute-symlinks', 'sqlite']);

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

describe('prefixes: the default, and a DEST that holds other ones', () => {
  it('with several other prefixes, list, verify and restore name them and say how to pick one', async () => {
    for (const prefix of ['shop', 'db']) expect((await runCli(['backup', '--source', source, '--dest', dest, '--prefix', prefix])).code).toBe(0);
    const target = await tempDir('target');
    const hint = `${dest} holds archives with prefix db (1), shop (1): pick one with --prefix NAME (or PVC_BACKUP_PREFIX)`;
    const list = await runCli(['list', '--dest', dest]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toBe(`no archives with prefix backup in ${dest}; ${hint}\n`);
    for (const args of [['verify', '--dest', dest], ['restore', '--dest', dest, '--target', target]]) {
      const run = await runCli(args);
      expect(run.code, run.stdout + run.stderr).toBe(2);
      expect(run.stdout).toContain(`no archive with prefix backup in ${dest}; ${hint}`);
    }
    expect(fs.readdirSync(target)).toEqual([]);
    // An explicit prefix is never replaced by another one.
    const explicit = await runCli(['list', '--dest', dest, '--prefix', 'web']);
    expect(explicit.stdout).toContain(`no archives with prefix web in ${dest}; ${hint}`);
  });

  it('with exactly one prefix, list, verify and restore use it without --prefix and say so', async () => {
    expect((await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop'])).code).toBe(0);
    const target = await tempDir('target');
    const note = `no --prefix given and ${dest} holds no archives with prefix backup; using prefix shop, the only one there`;
    const list = await runCli(['list', '--dest', dest]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(note);
    expect(list.stdout).toMatch(/^shop-\d{8}T\d{6}Z\.tar\.gz /m);
    const json = await runCli(['list', '--dest', dest, '--json']);
    expect((JSON.parse(json.stdout) as { name: string }[]).map((r) => r.name)).toEqual([expect.stringMatching(/^shop-/)]);
    const verify = await runCli(['verify', '--dest', dest, '--log-format', 'json']);
    expect(verify.code, verify.stdout).toBe(0);
    expect(jsonLines(verify.stdout).map((l) => l.event)).toEqual(expect.arrayContaining(['verify.prefix', 'verify.ok']));
    const restore = await runCli(['restore', '--dest', dest, '--target', target, '--log-format', 'json']);
    expect(restore.code, restore.stdout).toBe(0);
    expect(jsonLines(restore.stdout)[0]).toMatchObject({ event: 'restore.prefix', msg: note, prefix: 'shop' });
    expect(fs.readdirSync(target).sort()).toEqual(['a.txt', 'sub']);
  });
});

describe('words: files are regular files, entries are everything in an archive; numbers agree with their nouns', () => {
  it('backup, list, verify and restore count the same things the same way', async () => {
    const one = await tempDir('one');
    writeTree(one, { 'only.txt': 'x\n' });
    const made = await runCli(['backup', '--source', one, '--dest', dest, '--log-format', 'json']);
    expect(made.code, made.stdout).toBe(0);
    const lines = jsonLines(made.stdout);
    expect(lines.find((l) => l.event === 'backup.start')!.msg).toContain('(2 B in 1 file)');
    expect(lines.find((l) => l.event === 'backup.verified')!.msg).toContain('verified: 2 entries,');
    expect(lines.at(-1)!.msg).toMatch(/complete: 2 B in 1 file -> /);

    const list = await runCli(['list', '--dest', dest, '--json']);
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ files: 1, entries: 2 })]);
    const table = await runCli(['list', '--dest', dest]);
    expect(table.stdout.split('\n').at(-2)).toMatch(/^1 archive, /);
    const verify = await runCli(['verify', '--dest', dest, '--log-format', 'json']);
    expect(jsonLines(verify.stdout).find((l) => l.event === 'verify.done')!.msg).toBe('1 of 1 archive verified and restorable');

    writeTree(source, { 'c.txt': 'c\n' }); // 3 files, 5 entries with ./ and sub/
    const other = await tempDir('dest');
    expect((await runCli(['backup', '--source', source, '--dest', other])).code).toBe(0);
    const rows = JSON.parse((await runCli(['list', '--dest', other, '--json'])).stdout) as { files: number; entries: number }[];
    expect(rows[0]).toMatchObject({ files: 3, entries: 5 });
    const target = await tempDir('target');
    const restore = await runCli(['restore', '--dest', other, '--target', target, '--log-format', 'json']);
    expect(jsonLines(restore.stdout).at(-1)!.msg).toMatch(/: 6 B in 3 files, 5 entries in [\d.]+s \((\d+ B|\d+\.\d [KMG]iB)\/s\)$/);
  });
});

describe('misspelled PVC_BACKUP_* variables', () => {
  it.each([
    ['PVC_BACKUP_KEEPLAST', '3', 'PVC_BACKUP_KEEP_LAST'],
    ['PVC_BACKUP_COMPRESION', 'zstd', 'PVC_BACKUP_COMPRESSION'],
    ['PVC_BACKUP_EXCLUDES', '*.log', 'PVC_BACKUP_EXCLUDE'],
    ['PVC_BACKUP_DESTINATION', '/backup', 'PVC_BACKUP_DEST'],
  ])('%s is a usage error naming %s, before anything is written', async (variable, value, closest) => {
    const before = exactState(source);
    const result = await runCli(['backup', '--source', source, '--dest', dest], { env: { [variable]: value } });
    expect(result.code, result.stdout + result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^pvc-backup: [^\n]+\n$/);
    expect(result.stderr).toContain(`unknown variable ${variable}`);
    expect(result.stderr).toContain(`closest known one is ${closest};`);
    expect(result.stdout).toBe('');
    expect(fs.readdirSync(dest)).toEqual([]);
    expect(exactState(source)).toBe(before);
  });

  it('every unknown variable is named, not only the first', async () => {
    const result = await runCli(['list', '--dest', dest], { env: { PVC_BACKUP_KEEPLAST: '3', PVC_BACKUP_JSON_OUTPUT: 'true' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('PVC_BACKUP_JSON_OUTPUT');
    expect(result.stderr).toContain('PVC_BACKUP_KEEPLAST');
  });

  it("a variable of another command is no error (the chart's extraEnv reaches every pod), nor are Kubernetes service links", async () => {
    const result = await runCli(['list', '--dest', dest], {
      env: { PVC_BACKUP_KEEP_LAST: '3', PVC_BACKUP_SOURCE: '/nowhere', PVC_BACKUP_SERVICE_HOST: '10.0.0.1', PVC_BACKUP_SERVICE_PORT: '80', PVC_BACKUP_PORT: 'tcp://10.0.0.1:80', PVC_BACKUP_PORT_80_TCP_ADDR: '10.0.0.1' },
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });
});

describe('an old Node.js', () => {
  const systemNode = ['/usr/bin/node', '/usr/local/bin/node'].find((file) => {
    const probe = spawnSync(file, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' });
    return probe.status === 0 && Number(probe.stdout) < REQUIRED_NODE_MAJOR;
  });
  if (!systemNode) console.warn(`skipping the old-Node test: no Node.js older than ${REQUIRED_NODE_MAJOR} at /usr/bin/node or /usr/local/bin/node`);

  it('the required version is the one package.json declares', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${REQUIRED_NODE_MAJOR}`);
  });

  it.skipIf(!systemNode)('gets one line naming the required version and how to get it, and nothing runs', async () => {
    ensureBuilt();
    const before = exactState(source);
    const result = spawnSync(systemNode!, [cliPath, 'backup', '--source', source, '--dest', dest], { encoding: 'utf8', env: cleanEnv() });
    expect(result.status, result.stderr).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^pvc-backup: [^\n]+\n$/);
    expect(result.stderr).toContain(`needs Node.js ${REQUIRED_NODE_MAJOR} or newer`);
    expect(result.stderr).toMatch(/is Node\.js v\d+\./);
    expect(result.stderr).toContain('npm ci');
    expect(result.stderr).not.toMatch(/TypeError|at file:/);
    expect(fs.readdirSync(dest)).toEqual([]);
    expect(exactState(source)).toBe(before);
  });
});

describe('help and version', () => {
  it.each(COMMANDS)('%s --help lists every flag with its variable', async (command) => {
    const result = await runCli([command, '--help']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    for (const { flag, env } of flagTable(command)) {
      // The flag's own line, not another flag's help that mentions it.
      const line = result.stdout.split('\n').find((l) => new RegExp(`^  --(\\[no-\\])?${flag.slice(2)}\\b`).test(l));
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
  const secrets = { AWS_SESSION_TOKEN: 'tok-5f3a9c1e-do-not-print', AWS_SECRET_ACCESS_KEY: 'aws-7b2d4e6f-do-not-print' };

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
