import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  archivePartials,
  describeRun,
  isRoot,
  pollUntil,
  pseudoRandomBytes,
  rng,
  runJson,
  seedFor,
  sha256File,
  sizeOf,
  startCli,
  tally,
  tempDir,
  textLikeBytes,
  tool,
} from './helpers.js';

/**
 * Case 5: entries that cannot be archived — files and directories without permission (the CLI
 * runs as "nobody" when the tests run as root), directories that can be listed but not entered,
 * sockets, FIFOs, device nodes — placed at random depths of random trees. Decision (documented
 * in docs/reliability.md): by default the run FAILS (exit 1) before writing anything and names
 * every such entry; with --skip-unreadable it succeeds and names every skipped entry in a
 * warning. Never is data silently missing: every regular file not in the archive is accounted for.
 */

const seed = seedFor('faults/unreadable');
const NOBODY = 65534;
const as = isRoot ? { uid: NOBODY, gid: NOBODY } : {};

type Kind = 'file-000' | 'dir-000' | 'dir-no-exec' | 'fifo' | 'socket' | 'chardev';
const KINDS: Kind[] = ['file-000', 'dir-000', 'dir-no-exec', 'fifo', 'socket', 'chardev'];

interface Planted {
  rel: string;
  kind: Kind;
  /** Regular files that are not archivable because of it (the entry itself, or what it hides). */
  hides: string[];
}

function canMknod(dir: string): boolean {
  const probe = path.join(dir, '.probe-dev');
  const ok = spawnSync('mknod', [probe, 'c', '1', '3']).status === 0;
  fs.rmSync(probe, { force: true });
  return ok;
}

/** A random tree of readable files with `count` problem entries planted at random places. */
function buildTree(root: string, trial: number, count: number): { files: string[]; planted: Planted[] } {
  const r = rng(seed + trial);
  const files: string[] = [];
  const dirs = ['.'];
  for (let i = 0; i < 12; i++) {
    const d = path.posix.join(r.pick(dirs), `dir-${i}`);
    fs.mkdirSync(path.join(root, d), { recursive: true });
    dirs.push(d);
  }
  for (let i = 0; i < 120; i++) {
    const rel = path.posix.join(r.pick(dirs), `file-${i}.txt`);
    fs.writeFileSync(path.join(root, rel), i % 10 === 0 ? pseudoRandomBytes(seed, 64 * 1024, i) : textLikeBytes(r, r.int(0, 3000)));
    files.push(rel);
  }
  const kinds = isRoot && canMknod(root) ? KINDS : KINDS.filter((k) => k !== 'chardev');
  const planted: Planted[] = [];
  for (let i = 0; i < count; i++) {
    const kind = r.pick(kinds);
    const rel = path.posix.join(r.pick(dirs.filter((d) => !planted.some((p) => p.kind.startsWith('dir') && (d === p.rel || d.startsWith(`${p.rel}/`))))), `bad-${i}-${kind}`);
    const abs = path.join(root, rel);
    const hides: string[] = [];
    switch (kind) {
      case 'file-000':
        fs.writeFileSync(abs, 'secret\n');
        fs.chmodSync(abs, 0o000);
        hides.push(rel);
        break;
      case 'dir-000':
      case 'dir-no-exec':
        fs.mkdirSync(abs);
        for (let k = 0; k < 3; k++) {
          fs.writeFileSync(path.join(abs, `hidden-${k}.txt`), `hidden ${k}\n`);
          hides.push(`${rel}/hidden-${k}.txt`);
        }
        fs.chmodSync(abs, kind === 'dir-000' ? 0o000 : 0o644);
        break;
      case 'fifo':
        tool('mkfifo', [abs]);
        break;
      case 'socket': {
        // A socket file outlives the process that bound it.
        const made = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(abs)}, () => process.exit(0))`]);
        if (made.status !== 0) throw new Error(`could not create a socket: ${made.stderr}`);
        break;
      }
      case 'chardev':
        tool('mknod', [abs, 'c', '1', '3']);
        break;
    }
    planted.push({ rel, kind, hides });
  }
  return { files, planted };
}

/** Source readable by the CLI's user, DEST writable by it. */
function prepare(label: string): { source: string; dest: string } {
  const source = tempDir(`${label}-src`);
  const dest = tempDir(`${label}-dest`);
  if (isRoot) fs.chownSync(dest, NOBODY, NOBODY);
  return { source, dest };
}

describe('unreadable entries and special files in the source', () => {
  it('fail the run by default, naming every one, and writing nothing; --skip-unreadable skips exactly them with a warning each', async () => {
    let trials = 0;
    for (let trial = 0; trial < 6; trial++) {
      const { source, dest } = prepare(`t${trial}`);
      const { files, planted } = buildTree(source, trial, 1 + (trial % 5));
      const label = `seed ${seed}, trial ${trial}, planted ${planted.map((p) => `${p.rel} (${p.kind})`).join(', ')}`;

      // Default: refused before anything is written, every entry named in the log.
      const refused = await runJson(['backup', '--source', source, '--dest', dest, '--keep-last', '1'], as);
      const context = `${label}\n${describeRun(refused)}`;
      expect(refused.code, context).toBe(1);
      const failure = refused.lines.find((l) => l.event === 'backup.failed')!;
      expect(failure.msg, context).toMatch(/\d+ entr(y|ies) in .* cannot be archived/);
      // One line per entry (a directory that cannot be entered shows up as its unreadable contents).
      expect(refused.lines.filter((l) => l.event === 'backup.cannot-archive').length, context).toBeGreaterThanOrEqual(planted.length);
      expect(failure.msg, context).toMatch(/--skip-unreadable/);
      const logged = refused.lines.map((l) => l.msg).join('\n');
      for (const p of planted) expect(logged, `${context}\n${p.rel} not named`).toContain(`./${p.rel}`);
      expect(fs.readdirSync(dest), context).toEqual([]);

      // --skip-unreadable: exit 0, each skipped entry named in a warning, nothing else missing.
      const skipped = await runJson(['backup', '--source', source, '--dest', dest, '--skip-unreadable'], as);
      const sContext = `${label}\n${describeRun(skipped)}`;
      expect(skipped.code, sContext).toBe(0);
      const warnings = skipped.lines.filter((l) => l.level === 'warn').map((l) => l.msg).join('\n');
      for (const p of planted) expect(warnings, `${sContext}\n${p.rel} skipped silently`).toContain(`./${p.rel}`);
      const name = skipped.lines.find((l) => l.event === 'backup.done')!.archive as string;
      const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${name}.manifest.json`), 'utf8')) as { files: { path: string; sha256?: string }[]; warnings: { path: string }[] };
      const archived = new Map(manifest.files.map((f) => [f.path, f.sha256]));
      for (const rel of files) expect(archived.get(`./${rel}`), `${sContext}\n./${rel} missing or wrong`).toBe(sha256File(path.join(source, rel)));
      for (const p of planted) {
        // Named itself, or (a directory that can be listed but not entered) by its contents.
        expect(manifest.warnings.some((w) => w.path === `./${p.rel}` || w.path.startsWith(`./${p.rel}/`)), `${sContext}\n./${p.rel} not in the manifest's warnings`).toBe(true);
        for (const h of p.hides) expect(archived.has(`./${h}`), `${sContext}\n./${h}`).toBe(false);
      }
      const verify = await runJson(['verify', '--dest', dest, '--latest'], as);
      expect(verify.code, describeRun(verify)).toBe(0);
      trials++;
    }
    tally('5 unreadable / special entries (fail by default, skip with a flag)', trials, trials);
  }, 120_000);

  it('names more than three problems in full (one log line each), not only in a truncated summary', async () => {
    const { source, dest } = prepare('many');
    fs.writeFileSync(path.join(source, 'ok.txt'), 'ok\n');
    const names = Array.from({ length: 7 }, (_, i) => `pipe-${i}`);
    tool('mkfifo', names.map((n) => path.join(source, n)));
    const refused = await runJson(['backup', '--source', source, '--dest', dest], as);
    expect(refused.code, describeRun(refused)).toBe(1);
    const text = refused.lines.map((l) => l.msg).join('\n');
    for (const n of names) expect(text, describeRun(refused)).toContain(`./${n}`);
    tally('5 seven problems all named', 1, 1);
  }, 30_000);

  it('a file that becomes unreadable after the preflight scan: exit 1 naming it and nothing left; skipped with a warning under --skip-unreadable', async () => {
    let trials = 0;
    for (const skip of [false, true]) {
      const { source, dest } = prepare(`race-${skip}`);
      // Read in name order: a large first file gives time to take the permission away from the last one.
      fs.writeFileSync(path.join(source, 'a-large.bin'), pseudoRandomBytes(seed, 64 * 1024 * 1024, 1));
      fs.writeFileSync(path.join(source, 'z-victim.txt'), 'readable at first\n');
      const args = ['backup', '--source', source, '--dest', dest, '--compression', 'none', '--keep-last', '1'];
      if (skip) args.push('--skip-unreadable');
      const run = startCli(args, as);
      const partialAppeared = await pollUntil(() => archivePartials(dest).some((n) => sizeOf(path.join(dest, n)) > 0), run.exited);
      fs.chmodSync(path.join(source, 'z-victim.txt'), 0o000);
      const exit = await run.exited;
      const context = `seed ${seed}, skip ${skip}, partial seen ${partialAppeared}\n${describeRun({ code: exit.code, signal: exit.signal, stdout: run.stdout(), stderr: run.stderr() })}`;
      expect(partialAppeared, context).toBe(true);
      if (skip) {
        expect(exit.code, context).toBe(0);
        expect(run.lines.some((l) => l.level === 'warn' && l.msg.includes('./z-victim.txt')), context).toBe(true);
      } else {
        expect(exit.code, context).toBe(1);
        expect(run.lines.find((l) => l.event === 'backup.failed')?.msg, context).toContain('./z-victim.txt');
        expect(fs.readdirSync(dest), context).toEqual([]);
      }
      fs.chmodSync(path.join(source, 'z-victim.txt'), 0o644);
      trials++;
    }
    tally('5 permission lost between preflight and reading', trials, trials);
  }, 60_000);
});
