import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs, writeTree } from '../helpers/tree.js';
import { cli, describe as describeRun, listing, treeState, writeArchive } from './support.js';

/**
 * verify judges every archive by the rules restore applies: an intact archive that restore
 * would refuse fails verification (exit 3), named, per archive. Absolute symlinks are the real
 * case (`current -> /srv/releases/v2`): refused by default, recreated verbatim with
 * --allow-absolute-symlinks, and never written through either way.
 */

const tempDir = useTempDirs();

async function scene() {
  const source = await tempDir('src');
  const dest = await tempDir('dest');
  const target = await tempDir('target');
  const outside = await tempDir('outside');
  writeTree(source, { 'releases/v2/config.yaml': 'v: 2\n', 'plain.txt': 'plain\n' });
  const good = await cli(['backup', '--source', source, '--dest', dest]);
  expect(good.code, describeRun(good)).toBe(0);
  await new Promise((r) => setTimeout(r, 1100));
  // An absolute link (what a deployment tool writes), and a relative one resolved through it.
  fs.symlinkSync(path.join(outside, 'releases/v2'), path.join(source, 'current'));
  fs.symlinkSync('current/config.yaml', path.join(source, 'config.yaml'));
  const made = await cli(['backup', '--source', source, '--dest', dest]);
  expect(made.code, describeRun(made)).toBe(0);
  expect(made.lines.some((l) => l.level === 'warn' && /absolute path .*--allow-absolute-symlinks/.test(l.msg)), describeRun(made)).toBe(true);
  const archive = made.lines.find((l) => l.event === 'backup.done')!.archive as string;
  const older = good.lines.find((l) => l.event === 'backup.done')!.archive as string;
  return { source, dest, target, outside, archive, older };
}

describe('verify reports what restore would refuse', () => {
  it('an intact archive with an absolute symlink fails verify (exit 3), named per archive; --allow-absolute-symlinks accepts it', async () => {
    const { dest, archive, older } = await scene();
    const all = await cli(['verify', '--dest', dest, '--all']);
    expect(all.code, describeRun(all)).toBe(3);
    const ok = all.lines.find((l) => l.event === 'verify.ok')!;
    expect(ok).toMatchObject({ archive: older, restorable: true });
    const refused = all.lines.find((l) => l.event === 'verify.unrestorable')!;
    expect(refused).toMatchObject({ level: 'error', archive, restorable: false, entry: './current', code: 'UNRESTORABLE' });
    expect(refused.msg).toContain(`${archive} is intact but restore would refuse it: archive entry "./current" is a symlink to the absolute path`);
    expect(refused.msg).toContain('--allow-absolute-symlinks');
    expect(all.lines.find((l) => l.event === 'verify.done')!.msg).toBe("1 of 2 archives verified and restorable, 1 intact but refused by restore's safety rules");
    expect(all.lines.at(-1)).toMatchObject({ event: 'verify.failed', exitCode: 3, code: 'UNRESTORABLE' });

    const latest = await cli(['verify', '--dest', dest]);
    expect(latest.code, describeRun(latest)).toBe(3);
    // The integrity part passed: the manifest records a good verification.
    const listed = await cli(['list', '--dest', dest, '--json']);
    expect((JSON.parse(listed.stdout) as { name: string; verified: string }[]).find((r) => r.name === archive)?.verified).toBe('verified');

    for (const allow of [['--allow-absolute-symlinks'], []]) {
      const run = await cli(['verify', '--dest', dest, '--all', ...allow], allow.length ? {} : { env: { PVC_BACKUP_ALLOW_ABSOLUTE_SYMLINKS: 'true' } });
      expect(run.code, describeRun(run)).toBe(0);
      expect(run.lines.filter((l) => l.event === 'verify.ok').map((l) => l.restorable)).toEqual([true, true]);
    }
  });

  // A relative link out of the volume (`shared -> ../../shared`, as deployment tools write) is
  // refused by restore whatever the flags, so the backup already says so.
  it('a backup warns about a relative link that leaves the source, and verify refuses that archive with any flags', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    writeTree(source, { 'plain.txt': 'plain\n', 'sub/deeper/file.txt': 'file\n' });
    fs.symlinkSync('../../shared', path.join(source, 'shared'));
    fs.symlinkSync('plain.txt', path.join(source, 'inside'));
    fs.symlinkSync('../../plain.txt', path.join(source, 'sub/deeper/up-to-root'));
    fs.symlinkSync('../../../plain.txt', path.join(source, 'sub/deeper/one-too-far'));
    const made = await cli(['backup', '--source', source, '--dest', dest]);
    expect(made.code, describeRun(made)).toBe(0);
    const warned = made.lines.filter((l) => l.level === 'warn' && /points outside the backed-up directory/.test(l.msg)).map((l) => l.path);
    expect(warned).toEqual(['./shared', './sub/deeper/one-too-far']);
    expect(made.lines.find((l) => l.path === './shared')!.msg).toContain('restore refuses an archive with such a link whatever the flags');
    const run = await cli(['verify', '--dest', dest, '--allow-absolute-symlinks']);
    expect(run.code, describeRun(run)).toBe(3);
    expect(run.lines.find((l) => l.event === 'verify.unrestorable')?.msg).toContain('archive entry "./shared" is a symlink to "../../shared", which points outside the target');
  });

  it('other refusals are reported the same way (an archive made by hand with a link out of the target)', async () => {
    const dest = await tempDir('dest');
    writeArchive(dest, 'backup-20240101T000000Z.tar', [{ path: './', type: 'Directory' }, { path: './up', type: 'SymbolicLink', linkpath: '../../etc' }], { sidecars: true });
    const run = await cli(['verify', '--dest', dest, '--allow-absolute-symlinks']);
    expect(run.code, describeRun(run)).toBe(3);
    expect(run.lines.find((l) => l.event === 'verify.unrestorable')?.msg).toContain('archive entry "./up" is a symlink to "../../etc", which points outside the target');
  });
});

describe('restore --allow-absolute-symlinks', () => {
  it('refused without it (exit 3, nothing changed); with it, replace and merge recreate the links verbatim and write nothing outside', async () => {
    const { dest, target, outside, archive } = await scene();
    writeTree(target, { 'old.txt': 'old\n' });
    const before = treeState(target);
    const refused = await cli(['restore', '--dest', dest, '--archive', archive, '--target', target]);
    expect(refused.code, describeRun(refused)).toBe(3);
    expect(refused.lines.at(-1)!.msg).toContain('--allow-absolute-symlinks recreates such links as they are');
    expect(treeState(target)).toBe(before);

    for (const mode of ['replace', 'merge']) {
      const run = await cli(['restore', '--dest', dest, '--archive', archive, '--target', target, '--mode', mode, '--allow-absolute-symlinks', '--no-snapshot']);
      expect(run.code, `${mode}\n${describeRun(run)}`).toBe(0);
      expect(fs.readlinkSync(path.join(target, 'current'))).toBe(path.join(outside, 'releases/v2'));
      expect(fs.readlinkSync(path.join(target, 'config.yaml'))).toBe('current/config.yaml');
      expect(fs.readFileSync(path.join(target, 'releases/v2/config.yaml'), 'utf8')).toBe('v: 2\n');
      expect(listing(outside), mode).toEqual([]);
    }
    const dryRun = await cli(['restore', '--dest', dest, '--archive', archive, '--target', target, '--dry-run'], { env: { PVC_BACKUP_ALLOW_ABSOLUTE_SYMLINKS: '1' } });
    expect(dryRun.code, describeRun(dryRun)).toBe(0);
    expect(dryRun.lines.at(-1)!.msg).toMatch(/would add 0 .*replace 0 .*remove 0 .*; 6 unchanged/);
  });

  it('never writes through an absolute link: an entry below one is still refused', async () => {
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    const outside = await tempDir('outside');
    writeArchive(dest, 'backup-20240101T000000Z.tar', [
      { path: './', type: 'Directory' },
      { path: './abs', type: 'SymbolicLink', linkpath: outside },
      { path: './abs/planted.txt', data: 'must not land outside' },
    ], { sidecars: true });
    for (const mode of ['replace', 'merge']) {
      const run = await cli(['restore', '--dest', dest, '--archive', 'latest', '--target', target, '--mode', mode, '--allow-absolute-symlinks']);
      expect(run.code, describeRun(run)).toBe(3);
      expect(run.lines.at(-1)!.msg).toContain('would be written through the symlink ./abs');
      expect(listing(outside)).toEqual([]);
      expect(listing(target)).toEqual([]);
    }
  });
});
