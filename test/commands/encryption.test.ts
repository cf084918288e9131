import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CliKey, ageCli, ageKeygen } from '../helpers/age.js';
import { type LogLine, jsonLines, runCli, shell, shq, tool } from '../helpers/cli.js';
import { snapshotTree, useTempDirs, writeTree } from '../helpers/tree.js';

/**
 * Encrypted archives end to end through the CLI, checked with the real `age`, `sha256sum` and
 * GNU tar: what backup writes, what verify proves with and without the identity, restore's
 * refusals (nothing changes in the target), hand-made `age -r` archives, list and prune.
 */

const tempDir = useTempDirs();

/** Names, types, modes, owners, content and file mtimes of a tree (what a restore must reproduce or leave alone). */
function exactState(dir: string): string {
  return JSON.stringify(snapshotTree(dir, { owner: true }));
}

interface Keys {
  key: CliKey;
  /** The identity file (age-keygen's text, mode 0600). */
  identityFile: string;
}

async function keys(): Promise<Keys> {
  const dir = await tempDir('keys');
  const key = ageKeygen();
  const identityFile = path.join(dir, 'key.txt');
  fs.writeFileSync(identityFile, key.file, { mode: 0o600 });
  return { key, identityFile };
}

async function source(): Promise<string> {
  const dir = await tempDir('src');
  writeTree(dir, {
    'notes/secret-plan.txt': 'the plan\n'.repeat(500),
    // Incompressible: the archive spans several 64 KiB age chunks.
    'big/random.bin': randomBytes(300_000),
    'empty.txt': '',
  });
  return dir;
}

async function cli(args: string[]): Promise<{ code: number | null; lines: LogLine[]; stdout: string }> {
  const result = await runCli([...args, '--log-format', 'json']);
  return { code: result.code, lines: jsonLines(result.stdout), stdout: result.stdout };
}

async function encryptedBackup(src: string, dest: string, recipients: string[], compression = 'zstd'): Promise<string> {
  const result = await cli(['backup', '--source', src, '--dest', dest, '--compression', compression, ...recipients.flatMap((r) => ['--age-recipient', r])]);
  expect(result.code, result.stdout).toBe(0);
  return result.lines.find((l) => l.event === 'backup.done')!.archive as string;
}

function stemOf(name: string): string {
  return name.replace(/\.tar(\.gz|\.zst)?\.age$/, '');
}

function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, offset);
  byte[0]! ^= 0x01;
  fs.writeSync(fd, byte, 0, 1, offset);
  fs.closeSync(fd);
}

const TAR_FLAGS: Record<string, string> = { gzip: '-z', zstd: '--zstd', none: '' };

describe('encrypted backups', () => {
  it.each(['gzip', 'zstd', 'none'])('%s: age -d | tar -x gives the source back; sha256sum -c works without the key; the manifest is encrypted, the info record is plain', async (compression) => {
    const { key, identityFile } = await keys();
    const [src, dest, out] = [await source(), await tempDir('dest'), await tempDir('out')];
    const name = await encryptedBackup(src, dest, [key.recipient], compression);
    const stem = stemOf(name);
    expect(name).toMatch(new RegExp(`^backup-\\d{8}T\\d{6}Z\\${{ gzip: '.tar.gz', zstd: '.tar.zst', none: '.tar' }[compression]}\\.age$`));
    expect(fs.readdirSync(dest).sort()).toEqual([`${stem}.info.json`, `${stem}.manifest.json.age`, name, `${name}.sha256`].sort());

    expect(shell(`cd ${shq(dest)} && sha256sum -c ${shq(name + '.sha256')}`).toString()).toContain(`${name}: OK`);
    shell(`age -d -i ${shq(identityFile)} ${shq(path.join(dest, name))} | tar ${TAR_FLAGS[compression]} -xf - -C ${shq(out)}`);
    expect(exactState(out)).toBe(exactState(src));

    const archiveBytes = fs.readFileSync(path.join(dest, name));
    expect(archiveBytes.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    expect(archiveBytes.includes(Buffer.from('secret-plan'))).toBe(false);
    const manifestFile = fs.readFileSync(path.join(dest, `${stem}.manifest.json.age`));
    expect(manifestFile.includes(Buffer.from('secret-plan'))).toBe(false);
    const manifest = JSON.parse(ageCli(['-d', '-i', identityFile], manifestFile).toString()) as { files: { path: string }[]; sha256: string; archiveBytes: number };
    expect(manifest.files.map((f) => f.path)).toContain('./notes/secret-plan.txt');
    expect(manifest.archiveBytes).toBe(archiveBytes.length);

    const infoText = fs.readFileSync(path.join(dest, `${stem}.info.json`), 'utf8');
    expect(infoText).not.toContain('secret-plan');
    expect(JSON.parse(infoText)).toMatchObject({ encrypted: true, archive: name, compression, sha256: manifest.sha256, archiveBytes: archiveBytes.length, fileCount: 3 });

    const list = await runCli(['list', '--dest', dest, '--json']);
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({ name, encrypted: true, files: 3, verified: 'verified', bytes: archiveBytes.length, infoFile: `${stem}.info.json`, manifestFile: `${stem}.manifest.json.age` }),
    ]);
  });

  it('the plain manifest goes only to a private temporary directory, and no decrypted copy outlives backup, verify or restore', async () => {
    const { key, identityFile } = await keys();
    const [src, dest, tmp, target] = [await source(), await tempDir('dest'), await tempDir('tmp'), await tempDir('target')];
    const env = { TMPDIR: tmp };
    const run = async (args: string[]) => {
      const result = await runCli([...args, '--log-format', 'json'], { env });
      expect(result.code, result.stdout).toBe(0);
      expect(fs.readdirSync(tmp)).toEqual([]);
    };
    await run(['backup', '--source', src, '--dest', dest, '--compression', 'gzip', '--age-recipient', key.recipient]);
    await run(['verify', '--dest', dest, '--age-identity-file', identityFile]);
    await run(['restore', '--dest', dest, '--target', target, '--age-identity-file', identityFile, '--dry-run']);
    await run(['restore', '--dest', dest, '--target', target, '--age-identity-file', identityFile]);
    for (const name of fs.readdirSync(dest)) expect(fs.readFileSync(path.join(dest, name)).includes(Buffer.from('secret-plan')), name).toBe(false);
    expect(exactState(target)).toBe(exactState(src));
  });

  it('refuses a bad recipient with one line (exit 2) before anything is written', async () => {
    const { key, identityFile } = await keys();
    const [src, dest] = [await source(), await tempDir('dest')];
    for (const bad of [['--age-recipient', 'age1notakey'], ['--age-recipient', key.file.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-'))!], ['--age-recipients-file', identityFile]]) {
      const result = await runCli(['backup', '--source', src, '--dest', dest, ...bad]);
      expect(result.code).toBe(2);
      expect(result.stdout.trim().split('\n')).toHaveLength(1);
      expect(result.stdout).not.toContain('AGE-SECRET-KEY-1');
    }
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it('several recipients (flags and a recipients file): each identity alone verifies and restores', async () => {
    const [a, b, c] = [await keys(), await keys(), await keys()];
    const [src, dest] = [await source(), await tempDir('dest')];
    const recipientsFile = path.join(await tempDir('r'), 'recipients.txt');
    fs.writeFileSync(recipientsFile, `# team\n${c.key.recipient}\n\n`);
    const result = await cli(['backup', '--source', src, '--dest', dest, '--age-recipient', a.key.recipient, '--age-recipient', b.key.recipient, '--age-recipients-file', recipientsFile]);
    expect(result.code, result.stdout).toBe(0);
    for (const k of [a, b, c]) {
      const verified = await cli(['verify', '--dest', dest, '--age-identity-file', k.identityFile]);
      expect(verified.code, verified.stdout).toBe(0);
      expect(verified.lines.some((l) => l.event === 'verify.ok')).toBe(true);
    }
    const target = await tempDir('target');
    const restored = await cli(['restore', '--dest', dest, '--target', target, '--age-identity-file', c.identityFile]);
    expect(restored.code, restored.stdout).toBe(0);
    expect(exactState(target)).toBe(exactState(src));
  });
});

describe('verify of encrypted archives', () => {
  it('without the identity checks the checksum only and says so; with it, the full check; a wrong one fails with one line and records nothing', async () => {
    const { key, identityFile } = await keys();
    const other = await keys();
    const [src, dest] = [await source(), await tempDir('dest')];
    const name = await encryptedBackup(src, dest, [key.recipient]);
    const infoFile = path.join(dest, `${stemOf(name)}.info.json`);

    const plain = await cli(['verify', '--dest', dest]);
    expect(plain.code, plain.stdout).toBe(0);
    const note = plain.lines.find((l) => l.event === 'verify.checksum-only')!;
    expect(note.msg).toContain('checked its checksum and age header only');
    expect(note.msg).toContain('NOT checked');
    expect(plain.lines.some((l) => l.event === 'verify.ok')).toBe(false);

    const full = await cli(['verify', '--dest', dest, '--age-identity-file', identityFile]);
    expect(full.code, full.stdout).toBe(0);
    expect(full.lines.find((l) => l.event === 'verify.ok')).toMatchObject({ archive: name, restorable: true, entries: 6 });

    // A lost info record is made again from the decrypted manifest; the manifest stays encrypted.
    fs.rmSync(infoFile);
    expect((await cli(['verify', '--dest', dest, '--age-identity-file', identityFile])).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(infoFile, 'utf8'))).toMatchObject({ encrypted: true, archive: name, fileCount: 3, verification: { ok: true } });
    expect(fs.readFileSync(path.join(dest, `${stemOf(name)}.manifest.json.age`)).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const infoAfterFull = fs.readFileSync(infoFile, 'utf8');

    const wrong = await runCli(['verify', '--dest', dest, '--age-identity-file', other.identityFile]);
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).toContain("no identity matches this archive's recipients");
    expect(wrong.stdout).not.toContain('AGE-SECRET-KEY');
    expect(fs.readFileSync(infoFile, 'utf8')).toBe(infoAfterFull);
  });

  it('a flipped byte fails both ways; an archive whose payload is damaged but whose checksum was recomputed fails the full check', async () => {
    const { key, identityFile } = await keys();
    const [src, dest] = [await source(), await tempDir('dest')];
    const name = await encryptedBackup(src, dest, [key.recipient]);
    const file = path.join(dest, name);
    flipByte(file, fs.statSync(file).size - 100);
    const withoutKey = await cli(['verify', '--dest', dest]);
    expect(withoutKey.code).toBe(3);
    expect(withoutKey.lines.find((l) => l.event === 'verify.failed')!.msg).toContain('checksum mismatch');
    expect(JSON.parse(fs.readFileSync(path.join(dest, `${stemOf(name)}.info.json`), 'utf8')).verification.ok).toBe(false);

    // Someone "repairs" the sidecars to match the damaged file: only the key can tell.
    const sha = tool('sha256sum', [file]).toString().split(' ')[0]!;
    fs.writeFileSync(`${file}.sha256`, `${sha}  ${name}\n`);
    const info = JSON.parse(fs.readFileSync(path.join(dest, `${stemOf(name)}.info.json`), 'utf8'));
    fs.writeFileSync(path.join(dest, `${stemOf(name)}.info.json`), JSON.stringify({ ...info, sha256: sha }));
    expect((await cli(['verify', '--dest', dest])).code).toBe(0);
    const withKey = await cli(['verify', '--dest', dest, '--age-identity-file', identityFile]);
    expect(withKey.code).toBe(3);
    expect(withKey.lines.find((l) => l.event === 'verify.failed')!.msg).toMatch(/age payload is corrupt|checksum/);
  });
});

describe('restore of encrypted archives', () => {
  async function targetWithData(): Promise<string> {
    const target = await tempDir('target');
    writeTree(target, { 'current.txt': 'current data\n', 'dir/keep.bin': Buffer.alloc(5000, 7) });
    return target;
  }

  it('needs the identity (exit 2), refuses a wrong one (exit 3), and changes nothing in either case', async () => {
    const { key } = await keys();
    const other = await keys();
    const [src, dest, target] = [await source(), await tempDir('dest'), await targetWithData()];
    await encryptedBackup(src, dest, [key.recipient]);
    const before = exactState(target);
    const destBefore = fs.readdirSync(dest).sort();

    const missing = await runCli(['restore', '--dest', dest, '--target', target]);
    expect(missing.code).toBe(2);
    expect(missing.stdout.trim().split('\n')).toHaveLength(1);
    expect(missing.stdout).toContain('--age-identity-file');
    expect(missing.stdout).toContain('encryption.existingSecret');

    const wrong = await runCli(['restore', '--dest', dest, '--target', target, '--age-identity-file', other.identityFile]);
    expect(wrong.code).toBe(3);
    expect(wrong.stdout.trim().split('\n')).toHaveLength(1);
    expect(wrong.stdout).toContain("no identity matches this archive's recipients");

    expect(exactState(target)).toBe(before);
    expect(fs.readdirSync(dest).sort()).toEqual(destBefore);
  });

  it('restores with the identity; the pre-restore snapshot is encrypted to the same key and restores too', async () => {
    const { key, identityFile } = await keys();
    const [src, dest, target] = [await source(), await tempDir('dest'), await targetWithData()];
    await encryptedBackup(src, dest, [key.recipient]);
    const before = exactState(target);
    const restored = await cli(['restore', '--dest', dest, '--target', target, '--age-identity-file', identityFile]);
    expect(restored.code, restored.stdout).toBe(0);
    expect(exactState(target)).toBe(exactState(src));
    const snapshot = restored.lines.find((l) => l.event === 'restore.done')!.snapshot as string;
    expect(snapshot).toMatch(/^backup-pre-restore-.*\.tar\.zst\.age$/);
    const back = await cli(['restore', '--dest', dest, '--archive', snapshot, '--target', target, '--age-identity-file', identityFile, '--no-snapshot']);
    expect(back.code, back.stdout).toBe(0);
    expect(exactState(target)).toBe(before);
  });

  it('a truncated or flipped encrypted archive is refused with nothing changed', async () => {
    const { key, identityFile } = await keys();
    const [src, dest, target] = [await source(), await tempDir('dest'), await targetWithData()];
    const name = await encryptedBackup(src, dest, [key.recipient]);
    const file = path.join(dest, name);
    const original = fs.readFileSync(file);
    const before = exactState(target);
    for (const damage of ['flip', 'truncate'] as const) {
      fs.writeFileSync(file, original);
      if (damage === 'flip') flipByte(file, Math.floor(original.length / 2));
      else fs.truncateSync(file, original.length - 1000);
      for (const mode of ['replace', 'merge']) {
        const result = await runCli(['restore', '--dest', dest, '--target', target, '--mode', mode, '--age-identity-file', identityFile]);
        expect(result.code, `${damage} ${mode}: ${result.stdout}`).toBe(3);
        expect(exactState(target)).toBe(before);
      }
    }
  });

  it('an archive encrypted by hand with age -r restores with --allow-unverified; truncated at a chunk boundary it is refused with nothing changed', async () => {
    const { key, identityFile } = await keys();
    const [src, dest, target] = [await source(), await tempDir('dest'), await targetWithData()];
    const name = 'by-hand.tar.zst.age';
    shell(`tar --zstd -cf - -C ${shq(src)} . | age -r ${shq(key.recipient)} > ${shq(path.join(dest, name))}`);
    const refused = await runCli(['restore', '--dest', dest, '--archive', name, '--target', target, '--age-identity-file', identityFile]);
    expect(refused.code).toBe(3);
    expect(refused.stdout).toContain('--allow-unverified');

    const whole = fs.readFileSync(path.join(dest, name));
    // Header, then payload chunks of 64 KiB + 16: cut right after the first full chunk.
    const headerEnd = whole.indexOf('\n---') + 1;
    const payloadStart = whole.indexOf(0x0a, headerEnd) + 1 + 16;
    fs.writeFileSync(path.join(dest, 'cut.tar.zst.age'), whole.subarray(0, payloadStart + 65536 + 16));
    const before = exactState(target);
    const cut = await runCli(['restore', '--dest', dest, '--archive', 'cut.tar.zst.age', '--target', target, '--allow-unverified', '--no-snapshot', '--age-identity-file', identityFile]);
    expect(cut.code, cut.stdout).toBe(3);
    expect(cut.stdout).toContain('age payload is corrupt');
    expect(exactState(target)).toBe(before);

    const restored = await cli(['restore', '--dest', dest, '--archive', name, '--target', target, '--allow-unverified', '--no-snapshot', '--age-identity-file', identityFile]);
    expect(restored.code, restored.stdout).toBe(0);
    expect(exactState(target)).toBe(exactState(src));
  });
});

describe('list and prune with encrypted archives', () => {
  it('keep-last counts encrypted and plain archives of the prefix alike and deletes every sidecar; orphans of encrypted archives are cleaned', async () => {
    const { key } = await keys();
    const [src, dest] = [await source(), await tempDir('dest')];
    const first = await encryptedBackup(src, dest, [key.recipient]);
    const plainRun = await cli(['backup', '--source', src, '--dest', dest, '--compression', 'zstd']);
    expect(plainRun.code, plainRun.stdout).toBe(0);
    const plain = plainRun.lines.find((l) => l.event === 'backup.done')!.archive as string;
    const third = await encryptedBackup(src, dest, [key.recipient]);
    const list = JSON.parse((await runCli(['list', '--dest', dest, '--json'])).stdout) as { name: string; encrypted: boolean }[];
    expect(list.map((a) => [a.name, a.encrypted])).toEqual([
      [third, true],
      [plain, false],
      [first, true],
    ]);
    // An orphaned info record and encrypted manifest (an interrupted prune's leftovers), and a stranger.
    const orphanStem = 'backup-20200101T000000Z';
    fs.writeFileSync(path.join(dest, `${orphanStem}.info.json`), '{}');
    fs.writeFileSync(path.join(dest, `${orphanStem}.manifest.json.age`), 'x');
    fs.writeFileSync(path.join(dest, 'notes.info.json'), 'mine');

    const pruned = await cli(['prune', '--dest', dest, '--keep-last', '1']);
    expect(pruned.code, pruned.stdout).toBe(0);
    const stem = stemOf(third);
    expect(fs.readdirSync(dest).sort()).toEqual([`${stem}.info.json`, `${stem}.manifest.json.age`, third, `${third}.sha256`, 'notes.info.json'].sort());
  });
});
