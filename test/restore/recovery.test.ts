import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RestoreRun } from '../../runner/restore/staging.js';
import { exactState, isRoot, useTempDirs, writeTree } from '../helpers/tree.js';
import { cli, controlEntries, describe as describeRun, listing, writeArchive } from './support.js';

/**
 * Recovery from an interrupted restore acts only on what restore itself recorded (in DEST, where
 * the application cannot write) and made (directories with the recorded inode on the target's
 * device), never through a symlink. The hostile set-up runs as `nobody`, the owner of the target
 * volume, as an application would; the restore runs as root, as the chart's restore Job does.
 * Entries that merely look like restore's own are the application's data: kept, snapshotted.
 */

const NOBODY = 65534;
const tempDir = useTempDirs();

/** Runs a shell script as nobody (setpriv), in `cwd`. */
function asNobody(cwd: string, script: string): void {
  const run = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', 'sh', '-euc', script], { cwd, encoding: 'utf8' });
  expect(run.status, `as nobody: ${script}\n${run.stderr}`).toBe(0);
}

/**
 * base/ (root, 0755) holds DEST (root) with one archive, a target owned by nobody, and two
 * root-owned directories outside the target that nobody cannot write to: `vault/` with a
 * 0600 secret, and `system/`.
 */
async function scene() {
  const base = await tempDir('recovery');
  fs.chmodSync(base, 0o755);
  const dest = path.join(base, 'dest');
  const target = path.join(base, 'target');
  const vault = path.join(base, 'vault');
  const system = path.join(base, 'system');
  for (const dir of [dest, target, vault, system]) fs.mkdirSync(dir);
  fs.chmodSync(vault, 0o700);
  fs.writeFileSync(path.join(vault, 'secret.key'), 'root only\n', { mode: 0o600 });
  fs.writeFileSync(path.join(system, 'config'), 'root config\n');
  writeArchive(dest, 'backup-20240101T000000Z.tar', [
    { path: './', type: 'Directory', mode: 0o755, uid: NOBODY, gid: NOBODY },
    { path: './restored.txt', data: 'from the archive\n', uid: NOBODY, gid: NOBODY },
  ], { sidecars: true });
  fs.chownSync(target, NOBODY, NOBODY);
  asNobody(target, "printf 'app data\\n' > app.txt");
  const outside = () => [exactState(vault), exactState(system)].join('\n');
  return { base, dest, target, vault, system, outside };
}

const restore = (dest: string, target: string, ...args: string[]) => cli(['restore', '--dest', dest, '--archive', 'latest', '--target', target, ...args]);

describe.skipIf(!isRoot)('recovery trusts nothing it did not record', () => {
  it("a journal and staging entries planted in the target (symlinks into root's directories) are data: never followed, never acted on", async () => {
    const { dest, target, vault, system, outside } = await scene();
    const before = outside();
    // What the previous recovery acted on: a journal in the target, "staging" and ".old" symlinks
    // into directories nobody may not write to, in both phases and both journal formats.
    const journal = (id: string, phase: string, format: number) => JSON.stringify({ format, id, mode: 'replace', phase, archive: 'x', target, startedAt: new Date().toISOString(), chown: true });
    asNobody(
      target,
      [
        `ln -s ${vault} .pvc-backup-restore-aaa`,
        `ln -s ${system} .pvc-backup-restore-aaa.old`,
        `printf '%s' '${journal('aaa', 'install', 1)}' > .pvc-backup-restore-aaa.journal`,
        `ln -s ${vault} .pvc-backup-restore-bbb`,
        `ln -s ${system} .pvc-backup-restore-bbb.old`,
        `printf '%s' '${journal('bbb', 'evacuate', 2)}' > .pvc-backup-restore-bbb.journal`,
        "printf 'planted by nobody\\n' > planted.txt",
      ].join(' && '),
    );
    const planted = listing(target);

    const merge = await restore(dest, target, '--mode', 'merge');
    expect(merge.code, describeRun(merge)).toBe(0);
    expect(outside(), 'nothing moved into or out of the root-owned directories').toBe(before);
    expect(listing(target), 'merge keeps every planted entry as it is').toEqual([...planted, 'restored.txt'].sort());
    expect(fs.readlinkSync(path.join(target, '.pvc-backup-restore-aaa'))).toBe(vault);

    const replace = await restore(dest, target);
    expect(replace.code, describeRun(replace)).toBe(0);
    expect(outside()).toBe(before);
    expect(listing(target), 'replace leaves exactly the archive').toEqual(['restored.txt']);
    expect(fs.readdirSync(vault)).toEqual(['secret.key']);
    expect(fs.readdirSync(system)).toEqual(['config']);
    // The planted entries were data: they are in the pre-restore snapshot, as symlinks.
    const snapshot = replace.lines.find((l) => l.event === 'restore.done')!.snapshot as string;
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${snapshot}.manifest.json`), 'utf8')) as { files: { path: string; type: string; linkTarget?: string }[] };
    expect(manifest.files.find((f) => f.path === './.pvc-backup-restore-aaa')).toMatchObject({ type: 'symlink', linkTarget: vault });
    expect(manifest.files.find((f) => f.path === './.pvc-backup-restore-bbb.journal')).toMatchObject({ type: 'file' });
  });

  it('a recorded run whose staging directory was swapped for a symlink, or for another directory, is refused and nothing changes', async () => {
    for (const swap of ['symlink', 'directory'] as const) {
      const { dest, target, vault, outside } = await scene();
      // A run killed while extracting: its journal in DEST, its staging directory in the target.
      const run = RestoreRun.begin(dest, target, { mode: 'replace', archive: 'backup-20240101T000000Z.tar', chown: true });
      const staging = listing(target).find((n) => n.startsWith('.pvc-backup-restore-'))!;
      fs.writeFileSync(path.join(run.stagingPath, 'half.txt'), 'extracted before the kill\n');
      fs.chownSync(target, NOBODY, NOBODY);
      // The application moves it away and puts its own entry under that name.
      asNobody(target, swap === 'symlink' ? `mv ${staging} moved-away && ln -s ${vault} ${staging}` : `mv ${staging} moved-away && mkdir ${staging} && touch ${staging}/mine`);
      const before = outside();
      const targetBefore = exactState(target);
      const destBefore = listing(dest);

      const next = await restore(dest, target);
      const context = `${swap}\n${describeRun(next)}`;
      expect(next.code, context).toBe(1);
      const failure = next.lines.at(-1)!;
      expect(failure, context).toMatchObject({ level: 'error', code: 'RECOVERY_REFUSED' });
      expect(failure.msg, context).toContain(`${target}/${staging}`);
      expect(failure.msg, context).toMatch(swap === 'symlink' ? /is not a directory \(a symlink or a file\)/ : /is not the directory the restore made/);
      expect(failure.msg, context).toContain('nothing was changed');
      expect(outside(), context).toBe(before);
      expect(exactState(target), context).toBe(targetBefore);
      expect(listing(dest), context).toEqual(destBefore);
    }
  });

  it('a run works through its own directories: replacing one with a symlink meanwhile redirects nothing', async () => {
    // The run itself keeps its directories open: renaming the staging directory away and putting a
    // symlink in its place mid-run redirects none of its writes.
    const { dest, target, vault, outside } = await scene();
    const before = outside();
    const run = RestoreRun.begin(dest, target, { mode: 'replace', archive: 'backup-20240101T000000Z.tar', chown: true });
    const staging = listing(target).find((n) => n.startsWith('.pvc-backup-restore-'))!;
    fs.chownSync(target, NOBODY, NOBODY);
    asNobody(target, `mv ${staging} moved-away && ln -s ${vault} ${staging}`);
    fs.writeFileSync(path.join(run.stagingPath, 'written-after.txt'), 'lands in the real staging directory\n');
    expect(outside()).toBe(before);
    expect(fs.readFileSync(path.join(target, 'moved-away/written-after.txt'), 'utf8')).toBe('lands in the real staging directory\n');
    // Discarding empties the real directory and leaves the application's symlink alone.
    run.discard();
    expect(outside()).toBe(before);
    expect(fs.readdirSync(path.join(target, 'moved-away'))).toEqual([]);
    expect(fs.readlinkSync(path.join(target, staging))).toBe(vault);
    expect(listing(dest).filter((n) => n.endsWith('.journal'))).toEqual([]);
  });

  it('a run killed while extracting is cleaned up by the next restore, which then restores', async () => {
    const { dest, target, outside } = await scene();
    const before = outside();
    const run = RestoreRun.begin(dest, target, { mode: 'replace', archive: 'backup-20240101T000000Z.tar', chown: true });
    fs.writeFileSync(path.join(run.stagingPath, 'half.txt'), 'extracted before the kill\n');
    expect(controlEntries(target)).toHaveLength(1);
    const next = await restore(dest, target);
    expect(next.code, describeRun(next)).toBe(0);
    expect(next.lines.some((l) => l.event === 'restore.leftovers-removed'), describeRun(next)).toBe(true);
    expect(listing(target)).toEqual(['restored.txt']);
    expect(listing(dest).filter((n) => n.endsWith('.journal'))).toEqual([]);
    expect(outside()).toBe(before);
  });

  it('a killed merge: the next restore removes its temporary file wherever it is, and nothing else', async () => {
    const { dest, target } = await scene();
    fs.mkdirSync(path.join(target, 'deep/er'), { recursive: true });
    const run = RestoreRun.begin(dest, target, { mode: 'merge', archive: 'backup-20240101T000000Z.tar', chown: true });
    fs.writeFileSync(path.join(target, `deep/er/.pvc-backup-restore-${run.id}.tmp7`), 'half-written');
    fs.writeFileSync(path.join(target, 'deep/.pvc-backup-restore-someoneelse.tmp1'), 'the application\'s');
    const next = await restore(dest, target, '--mode', 'merge');
    expect(next.code, describeRun(next)).toBe(0);
    expect(next.lines.find((l) => l.event === 'restore.recovered'), describeRun(next)).toMatchObject({ level: 'warn', removed: 1 });
    expect(fs.readdirSync(path.join(target, 'deep/er'))).toEqual([]);
    expect(listing(path.join(target, 'deep'))).toEqual(['.pvc-backup-restore-someoneelse.tmp1', 'er']);
    expect(controlEntries(target)).toEqual([]);
    expect(listing(dest).filter((n) => n.endsWith('.journal'))).toEqual([]);
  });

  it('a journal of a run into another target is kept, with a warning, and nothing here is touched', async () => {
    const { base, dest, target } = await scene();
    const other = path.join(base, 'other-target');
    fs.mkdirSync(other);
    RestoreRun.begin(dest, other, { mode: 'replace', archive: 'backup-20240101T000000Z.tar', chown: true });
    const journals = listing(dest).filter((n) => n.endsWith('.journal'));
    const run = await restore(dest, target, '--no-snapshot');
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.lines.filter((l) => l.event === 'restore.recorded-elsewhere')).toHaveLength(1);
    expect(listing(dest).filter((n) => n.endsWith('.journal'))).toEqual(journals);
    expect(controlEntries(other)).toHaveLength(1);
  });
});

describe('entries named like restore\'s own are data', () => {
  it('a refused archive, a merge and a dry run leave them alone; a replace snapshots them first', async () => {
    const base = await tempDir('names');
    const dest = path.join(base, 'dest');
    const target = path.join(base, 'target');
    fs.mkdirSync(dest);
    fs.mkdirSync(target);
    writeTree(target, { '.pvc-backup-restore-notes.txt': 'my notes\n', '.pvc-backup-restore-cache/data.bin': 'cached\n', 'app.txt': 'app\n' });
    writeArchive(dest, 'backup-20240101T000000Z.tar', [{ path: './restored.txt', data: 'restored\n' }], { sidecars: true });
    writeArchive(dest, 'hostile.tar', [{ path: '../escape.txt', data: 'x' }], { sidecars: true });

    const before = exactState(target);
    for (const mode of ['replace', 'merge']) {
      const refused = await cli(['restore', '--dest', dest, '--archive', 'hostile.tar', '--target', target, '--mode', mode]);
      expect(refused.code, describeRun(refused)).toBe(3);
      expect(exactState(target), mode).toBe(before);
    }
    const dryRun = await restore(dest, target, '--dry-run');
    expect(dryRun.code, describeRun(dryRun)).toBe(0);
    expect(dryRun.lines.filter((l) => l.event === 'restore.plan.remove').map((l) => l.path)).toEqual(
      expect.arrayContaining(['./.pvc-backup-restore-notes.txt', './.pvc-backup-restore-cache/']),
    );
    expect(exactState(target)).toBe(before);

    const merge = await restore(dest, target, '--mode', 'merge', '--no-snapshot');
    expect(merge.code, describeRun(merge)).toBe(0);
    expect(fs.readFileSync(path.join(target, '.pvc-backup-restore-notes.txt'), 'utf8')).toBe('my notes\n');
    expect(fs.readFileSync(path.join(target, '.pvc-backup-restore-cache/data.bin'), 'utf8')).toBe('cached\n');

    const replace = await restore(dest, target);
    expect(replace.code, describeRun(replace)).toBe(0);
    expect(listing(target)).toEqual(['restored.txt']);
    const snapshot = replace.lines.find((l) => l.event === 'restore.done')!.snapshot as string;
    const back = await cli(['restore', '--dest', dest, '--archive', snapshot, '--target', target, '--no-snapshot']);
    expect(back.code, describeRun(back)).toBe(0);
    expect(listing(target)).toEqual(['.pvc-backup-restore-cache', '.pvc-backup-restore-notes.txt', 'app.txt', 'restored.txt']);
    expect(fs.readFileSync(path.join(target, '.pvc-backup-restore-cache/data.bin'), 'utf8')).toBe('cached\n');
  });
});
