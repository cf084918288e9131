import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NO_MATCH_MESSAGE } from '../../runner/archive/age/index.js';
import { EncryptStage, checkHeadWithoutKey, decryptToTemporaryFile, decryptedHead, encryptFileInto, proveEncryptedFile, readHead } from '../../runner/archive/encryption.js';
import { ageCli, ageKeygen, identityOf } from '../helpers/age.js';
import { useTempDirs } from '../helpers/tree.js';

/** The age stage of the archive pipelines and its file helpers, against the real age CLI. */

const tempDir = useTempDirs();

function temporaryCopies(): string[] {
  return fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('pvc-backup-decrypted-'));
}

describe('archive encryption stage', () => {
  it('what the stage writes decrypts with age -d; its self-check authenticates the stored file and refuses a flipped byte or a cut', async () => {
    const key = ageKeygen();
    const dir = await tempDir('enc');
    const file = path.join(dir, 'a.tar.age');
    const plaintext = randomBytes(3 * 65536 + 777);
    const fd = fs.openSync(file, 'w');
    const stage = new EncryptStage({ recipients: [identityOf(key).recipient], sinkCopies: true }, (chunk) => void fs.writeSync(fd, chunk));
    for (let at = 0; at < plaintext.length; at += 100_000) stage.append(plaintext.subarray(at, at + 100_000));
    stage.end();
    fs.closeSync(fd);
    fs.writeFileSync(path.join(dir, 'key.txt'), key.file);
    expect(ageCli(['-d', '-i', path.join(dir, 'key.txt'), file]).equals(plaintext)).toBe(true);

    const self = stage.selfCheck();
    const proof = await proveEncryptedFile(file, self);
    expect(proof).toMatchObject({ bytes: fs.statSync(file).size, plaintextBytes: plaintext.length });
    const stored = fs.readFileSync(file);
    const flipped = Buffer.from(stored);
    flipped[stored.length - 5]! ^= 1;
    fs.writeFileSync(file, flipped);
    await expect(proveEncryptedFile(file, self)).rejects.toThrow(/age payload is corrupt/);
    fs.writeFileSync(file, stored.subarray(0, stored.length - 65536 - 16));
    await expect(proveEncryptedFile(file, self)).rejects.toThrow(/age payload is corrupt/);
    self.destroy();
    expect(() => stage.selfCheck()).toThrow();
  });

  it('without a key: a well-formed header passes, a plain or damaged file does not', async () => {
    const key = ageKeygen();
    const dir = await tempDir('hdr');
    const file = path.join(dir, 'x.age');
    fs.writeFileSync(file, ageCli(['-r', key.recipient, '-r', ageKeygen().recipient], Buffer.from('data')));
    expect(checkHeadWithoutKey(readHead(file), 'x.age').stanzas).toHaveLength(2);
    fs.writeFileSync(file, 'plain text');
    expect(() => checkHeadWithoutKey(readHead(file), 'x.age')).toThrow(/does not start with an age header/);
  });

  it('the first plaintext bytes of a long or short file made by age -r, for sniffing', async () => {
    const key = ageKeygen();
    const dir = await tempDir('head');
    for (const size of [10, 300_000]) {
      const data = randomBytes(size);
      const file = path.join(dir, `f${size}.age`);
      fs.writeFileSync(file, ageCli(['-r', key.recipient], data));
      const head = await decryptedHead(file, [identityOf(key)]);
      expect(head.length).toBeGreaterThan(0);
      expect(data.subarray(0, head.length).equals(head)).toBe(true);
    }
  });

  it('a file encrypted into a descriptor decrypts with age -d; a temporary decrypted copy is private and removed, also when the identity does not match', async () => {
    const key = ageKeygen();
    const dir = await tempDir('files');
    const plain = path.join(dir, 'manifest.json');
    fs.writeFileSync(plain, randomBytes(2 * 1024 * 1024 + 3));
    const sealed = path.join(dir, 'manifest.json.age');
    const fd = fs.openSync(sealed, 'w');
    encryptFileInto(fd, plain, [identityOf(key).recipient]);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(dir, 'key.txt'), key.file);
    expect(ageCli(['-d', '-i', path.join(dir, 'key.txt'), sealed]).equals(fs.readFileSync(plain))).toBe(true);

    const before = temporaryCopies();
    const copy = await decryptToTemporaryFile(sealed, [identityOf(key)], 'manifest.json');
    expect(fs.readFileSync(copy.file).equals(fs.readFileSync(plain))).toBe(true);
    expect(fs.statSync(path.dirname(copy.file)).mode & 0o777).toBe(0o700);
    copy.remove();
    expect(fs.existsSync(copy.file)).toBe(false);
    await expect(decryptToTemporaryFile(sealed, [identityOf(ageKeygen())], 'manifest.json')).rejects.toThrow(NO_MATCH_MESSAGE);
    expect(temporaryCopies()).toEqual(before);
  });
});
