import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { exactState } from '../helpers/tree.js';
import { bindMount, describeRun, isRoot, runJson, runPlain, seedFor, stateDiff, tally, tempDir, unmount } from './helpers.js';

/**
 * Case 9: hostile input to every command: paths that do not exist, relative paths, paths that
 * are files or symlinks to files, a source equal to, containing or contained in the destination
 * (also through `..` and through symlinks: backing up into itself), absurd numbers and levels,
 * bad prefixes and archive names, the same through environment variables. Every one must exit 2
 * with exactly one line on stderr, print nothing on stdout, and write nothing anywhere.
 */

const seed = seedFor('faults/hostile-input');

let work: string;
let source: string;
let dest: string;
let target: string;
let archive: string;

beforeAll(async () => {
  work = tempDir('hostile');
  source = path.join(work, 'src');
  dest = path.join(work, 'dest');
  target = path.join(work, 'target');
  for (const d of [source, dest, target, path.join(source, 'sub/deeper'), path.join(dest, 'inner'), path.join(target, 'inner')]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(source, 'a.txt'), 'a\n');
  fs.writeFileSync(path.join(source, 'sub/b.txt'), 'b\n');
  fs.writeFileSync(path.join(target, 'live.txt'), 'live\n');
  fs.writeFileSync(path.join(work, 'a-file'), 'not a directory\n');
  fs.symlinkSync(path.join(work, 'a-file'), path.join(work, 'link-to-file'));
  fs.symlinkSync(path.join(work, 'nowhere'), path.join(work, 'dangling'));
  fs.symlinkSync(path.join(source, 'sub'), path.join(work, 'link-into-source'));
  fs.symlinkSync(source, path.join(work, 'link-to-source'));
  fs.symlinkSync(dest, path.join(work, 'link-to-dest'));
  fs.symlinkSync(path.join(dest, 'inner'), path.join(work, 'link-into-dest'));
  fs.symlinkSync(path.join(target, 'inner'), path.join(work, 'link-into-target'));
  fs.symlinkSync(target, path.join(work, 'link-to-target'));
  const made = await runJson(['backup', '--source', source, '--dest', dest]);
  expect(made.code, describeRun(made)).toBe(0);
  archive = made.lines.find((l) => l.event === 'backup.done')!.archive as string;
});

interface Case {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** Relative paths are resolved against this directory (default: the work dir). */
  cwd?: string;
}

/** Placeholders: S source, D dest, T target, W work dir, A archive name. */
function fill(args: string[]): string[] {
  return args.map((a) => a.replace(/^S(?=$|\/)/, source).replace(/^D(?=$|\/)/, dest).replace(/^T(?=$|\/)/, target).replace(/^W(?=$|\/)/, work).replace(/^A$/, archive));
}

const B = ['backup', '--source', 'S', '--dest', 'D'];
const R = ['restore', '--dest', 'D', '--archive', 'A', '--target', 'T'];

const cases: Case[] = [
  // Paths that do not exist or are not directories, for every command that takes one.
  ...['backup', 'verify', 'list', 'prune', 'restore'].flatMap((command): Case[] => {
    const base = (d: string): string[] =>
      command === 'backup' ? ['backup', '--source', 'S', '--dest', d] : command === 'prune' ? ['prune', '--dest', d, '--keep-last', '1'] : command === 'restore' ? ['restore', '--dest', d, '--target', 'T'] : [command, '--dest', d];
    return [
      { name: `${command}: --dest does not exist (absolute)`, args: base('/nonexistent/pvc-backup') },
      { name: `${command}: --dest does not exist (relative)`, args: base('no/such/dir') },
      { name: `${command}: --dest escapes with .. to nowhere`, args: base('../../../../../../nonexistent') },
      { name: `${command}: --dest is a file`, args: base('W/a-file') },
      { name: `${command}: --dest is a symlink to a file`, args: base('W/link-to-file') },
      { name: `${command}: --dest is a dangling symlink`, args: base('W/dangling') },
      { name: `${command}: --dest is empty`, args: base('') },
      {
        name: `${command}: --dest via the environment does not exist`,
        args: { backup: ['backup', '--source', 'S'], verify: ['verify'], list: ['list'], prune: ['prune', '--keep-last', '1'], restore: ['restore', '--target', 'T'] }[command]!,
        env: { PVC_BACKUP_DEST: '/nonexistent/env' },
      },
    ];
  }),
  // Backing up into itself, or the backups into the source.
  { name: 'backup: source equals dest', args: ['backup', '--source', 'S', '--dest', 'S'] },
  { name: 'backup: dest inside source', args: ['backup', '--source', 'S', '--dest', 'S/sub'] },
  { name: 'backup: dest inside source, relative', args: ['backup', '--source', 'src', '--dest', 'src/sub/deeper'] },
  { name: 'backup: dest inside source through ..', args: ['backup', '--source', 'S', '--dest', 'S/sub/deeper/../../sub'] },
  { name: 'backup: dest is a symlink into the source', args: ['backup', '--source', 'S', '--dest', 'W/link-into-source'] },
  { name: 'backup: source is a symlink to the dest', args: ['backup', '--source', 'W/link-to-dest', '--dest', 'D'] },
  { name: 'backup: source is a symlink to a dir inside dest', args: ['backup', '--source', 'W/link-into-dest', '--dest', 'D'] },
  { name: 'backup: source inside dest', args: ['backup', '--source', 'D/inner', '--dest', 'D'] },
  { name: 'backup: source equals dest through a symlink', args: ['backup', '--source', 'W/link-to-source', '--dest', 'S'] },
  { name: 'backup: source is a file', args: ['backup', '--source', 'W/a-file', '--dest', 'D'] },
  { name: 'backup: source does not exist (relative)', args: ['backup', '--source', 'nope', '--dest', 'D'] },
  // Numbers.
  ...['0', '-1', 'abc', '1.5', '', ' ', '1e3', '0x10', '+-1', '١'].map((v): Case => ({ name: `backup: --keep-last ${JSON.stringify(v)}`, args: [...B, '--keep-last', v] })),
  ...['0', '-1', 'abc', '1.5', '1e3'].map((v): Case => ({ name: `prune: --keep-last ${JSON.stringify(v)}`, args: ['prune', '--dest', 'D', '--keep-last', v] })),
  ...['0', '-1', 'abc'].map((v): Case => ({ name: `backup: PVC_BACKUP_KEEP_LAST=${JSON.stringify(v)}`, args: B, env: { PVC_BACKUP_KEEP_LAST: v } })),
  ...['-1', '0', '10', '3.5', 'max', '1e2', '999999999999', ''].map((v): Case => ({ name: `backup: gzip --level ${JSON.stringify(v)}`, args: [...B, '--compression', 'gzip', '--level', v] })),
  ...['0', '20', '22', '-5', '99999999999999999999'].map((v): Case => ({ name: `backup: zstd --level ${JSON.stringify(v)}`, args: [...B, '--compression', 'zstd', '--level', v] })),
  { name: 'backup: --level with none', args: [...B, '--compression', 'none', '--level', '1'] },
  { name: 'backup: PVC_BACKUP_LEVEL=100', args: B, env: { PVC_BACKUP_LEVEL: '100' } },
  ...['GZIP', 'gzip ', 'lz4', 'zst', ''].map((v): Case => ({ name: `backup: --compression ${JSON.stringify(v)}`, args: [...B, '--compression', v] })),
  // Prefixes.
  ...['../up', 'a/b', '', '.hidden', '-dash', 'x'.repeat(102), 'ünï', 'a b'].map((v): Case => ({ name: `backup: --prefix ${JSON.stringify(v.slice(0, 20))}`, args: [...B, '--prefix', v] })),
  { name: 'prune: --prefix ../up', args: ['prune', '--dest', 'D', '--keep-last', '1', '--prefix', '../up'] },
  // Archive names.
  ...['../../etc/passwd', '..', '.', '', 'backup-20990101T000000Z.tar.gz', 'a-file'].map((v): Case => ({ name: `verify: ARCHIVE ${JSON.stringify(v)}`, args: ['verify', '--dest', 'D', v] })),
  { name: 'verify: ARCHIVE and --all', args: ['verify', '--dest', 'D', 'A', '--all'] },
  { name: 'verify: two archives', args: ['verify', '--dest', 'D', 'A', 'A'] },
  ...['..', '', 'backup-20990101T000000Z.tar.gz', '../dest/A'].map((v): Case => ({ name: `restore: --archive ${JSON.stringify(v)}`, args: ['restore', '--dest', 'D', '--archive', v, '--target', 'T'] })),
  // Restore targets.
  { name: 'restore: --target does not exist', args: ['restore', '--dest', 'D', '--target', '/nonexistent/t'] },
  { name: 'restore: --target is a file', args: ['restore', '--dest', 'D', '--target', 'W/a-file'] },
  { name: 'restore: --target equals dest', args: ['restore', '--dest', 'D', '--target', 'D'] },
  { name: 'restore: --target inside dest', args: ['restore', '--dest', 'D', '--target', 'D/inner'] },
  { name: 'restore: --target is a symlink into dest', args: ['restore', '--dest', 'D', '--target', 'W/link-into-dest'] },
  { name: 'restore: --target is a symlink to dest', args: ['restore', '--dest', 'D', '--target', 'W/link-to-dest'] },
  { name: 'restore: dest inside target', args: ['restore', '--dest', 'T/inner', '--target', 'T'] },
  { name: 'restore: dest is a symlink into target', args: ['restore', '--dest', 'W/link-into-target', '--target', 'T'] },
  { name: 'restore: --mode overwrite', args: [...R, '--mode', 'overwrite'] },
  { name: 'restore: --mode ""', args: [...R, '--mode', ''] },
  // Other flags.
  { name: 'backup: --lock-stale-after 0', args: [...B, '--lock-stale-after', '0'] },
  { name: 'backup: --lock-stale-after -5', args: [...B, '--lock-stale-after', '-5'] },
  { name: 'backup: --progress-interval soon', args: [...B, '--progress-interval', 'soon'] },
  { name: 'backup: unknown flag', args: [...B, '--keep-lats', '3'] },
  { name: 'backup: a flag twice with a bad second value', args: [...B, '--keep-last', '3', '--keep-last', 'x'] },
  { name: 'list: a stray argument', args: ['list', '--dest', 'D', 'extra'] },
  { name: 'an unknown command', args: ['bakcup', '--dest', 'D'] },
];

describe('hostile input to every command', () => {
  it(`exits 2 with one clear line and writes nothing, for each of ${cases.length} inputs`, async () => {
    const dirs = [source, dest, target, work];
    // Content, names, modes and times of everything; the directories' own mtimes are left out for
    // DEST (and its entry in the work dir): a command that takes the lock before it finds out the
    // archive does not exist creates and removes the lock file, which changes nothing but that.
    const picture = () =>
      dirs.map((d) => {
        const entries = JSON.parse(exactState(d)) as { path: string; mtimeNs?: string }[];
        for (const e of entries) if ((d === dest && e.path === '.') || (d === work && e.path === 'dest')) delete e.mtimeNs;
        return JSON.stringify(entries);
      });
    const before = picture();
    const problems: string[] = [];
    // Four at a time: each is a separate process and must not write anything anyway. Restores
    // run alone: restore takes the directory lock before it looks the archive up, so two at
    // once could meet each other's lock (exit 4) instead of their own usage error.
    const batches: Case[][] = [];
    for (const c of cases) {
      const last = batches.at(-1);
      const alone = c.args[0] === 'restore';
      if (!last || last.length === 4 || alone || last[0]!.args[0] === 'restore') batches.push([c]);
      else last.push(c);
    }
    for (const batch of batches) {
      const results = await Promise.all(batch.map((c) => runPlain(fill(c.args), { env: c.env, cwd: c.cwd ?? work })));
      for (const [k, result] of results.entries()) {
        const c = batch[k]!;
        const where = `${c.name}: ${JSON.stringify(fill(c.args))}${c.env ? ` env ${JSON.stringify(c.env)}` : ''} -> exit ${result.code}, stderr ${JSON.stringify(result.stderr)}, stdout ${JSON.stringify(result.stdout.slice(0, 300))}`;
        // Bad flags are refused while parsing: one line on stderr. A name that is well-formed but
        // not in DEST is found while running: one ERROR log line on stdout. Never more.
        const parseError = /^pvc-backup: [^\n]+\n$/.test(result.stderr) && result.stdout === '';
        const runError = result.stderr === '' && /^\S+ ERROR [^\n]+\n$/.test(result.stdout);
        if (result.code !== 2) problems.push(`exit is not 2: ${where}`);
        else if (!parseError && !runError) problems.push(`not exactly one line: ${where}`);
      }
      const now = picture();
      const changed = dirs.map((d, j) => (now[j] === before[j] ? '' : `${d}: ${stateDiff(before[j]!, now[j]!)}`)).filter(Boolean);
      if (changed.length > 0) {
        problems.push(`wrote something (cases ${batch.map((c) => c.name).join(' | ')}): ${changed.join('; ')}`);
        break;
      }
    }
    expect(problems, `seed ${seed}`).toEqual([]);
    tally('9 hostile input (all commands)', cases.length, cases.length - problems.length);
  }, 120_000);

  it.skipIf(!isRoot)('refuses a DEST that is inside SOURCE through a bind mount (no path check can see it): exit 2, nothing archived', async () => {
    const at = path.join(source, 'sub', 'bound');
    fs.mkdirSync(at);
    bindMount(dest, at);
    try {
      const before = Object.fromEntries(fs.readdirSync(dest).map((n) => [n, fs.statSync(path.join(dest, n)).mtimeMs]));
      const run = await runJson(['backup', '--source', source, '--dest', dest]);
      const context = describeRun(run);
      expect(run.code, context).toBe(2);
      expect(run.lines.filter((l) => l.level === 'error').at(-1)?.msg, context).toMatch(/--dest .* is inside --source .* as \.\/sub\/bound/);
      expect(Object.fromEntries(fs.readdirSync(dest).map((n) => [n, fs.statSync(path.join(dest, n)).mtimeMs])), context).toEqual(before);
      // Excluding it is the way out.
      const excluded = await runJson(['backup', '--source', source, '--dest', dest, '--exclude', 'sub/bound']);
      expect(excluded.code, describeRun(excluded)).toBe(0);
    } finally {
      unmount(at);
      fs.rmdirSync(at);
    }
    tally('9 DEST inside SOURCE through a bind mount', 2, 2);
  }, 60_000);
});
