import { createHash } from 'node:crypto';
import { parseChecksumFile } from '../archive/hash.js';
import { IntegrityError, OperationError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import { infoName, isEncryptedName, manifestName, sha256Name } from '../store/naming.js';
import type { Repository, StoredArchive } from './repository.js';

/**
 * Copies one archive with its sidecars from one repository to another: the off-site copy of
 * an archive already made and proven in the backup directory, or a download from the bucket.
 * The archive streams through (bounded memory) and is hashed on the way; the copy is committed
 * only if its bytes have the SHA-256 of the source's `.sha256` sidecar, so the target never
 * holds a copy that differs from what was verified. The target announces that hash at the start
 * (a bucket then stores its sha256 metadata with the upload itself).
 */
export async function copyArchive(from: Repository, to: Repository, name: string, options: { signal?: AbortSignal } = {}): Promise<StoredArchive> {
  const checksum = await from.readSmall(sha256Name(name));
  if (checksum === undefined) throw new OperationError(`${name} in ${from.location} has no ${sha256Name(name)}; only verified archives are copied`, 'NO_SIDECAR');
  const sha256 = parseChecksumFile(checksum.toString('utf8'), name);
  if ((await from.stat(manifestName(name))) === undefined) {
    throw new OperationError(`${name} in ${from.location} has no ${manifestName(name)}; only verified archives are copied`, 'NO_SIDECAR');
  }
  const source = await from.read(name, { signal: options.signal });
  const sink = await to.createArchive(name, { sizeHint: source.size, sha256, signal: options.signal });
  const hash = createHash('sha256');
  const governor = new GarbageGovernor();
  try {
    for await (const chunk of source.stream) {
      hash.update(chunk as Buffer);
      sink.append(chunk as Buffer);
      governor.processed((chunk as Buffer).length);
      await sink.drain();
    }
    const copied = hash.digest('hex');
    if (copied !== sha256 || sink.bytes !== source.size) {
      throw new IntegrityError(
        `${name} in ${from.location} does not match its checksum (${sink.bytes} bytes read, sha256 ${copied}, expected ${source.size} bytes, ${sha256}); nothing was copied to ${to.location}`,
        'CHECKSUM',
      );
    }
    const manifest = await from.read(manifestName(name), { signal: options.signal });
    const info = isEncryptedName(name) ? (await from.readSmall(infoName(name)))?.toString('utf8') : undefined;
    return await sink.commit({ sha256, manifest: { stream: manifest.stream }, ...(info !== undefined ? { info } : {}) });
  } catch (error) {
    source.stream.destroy();
    await sink.abort();
    throw error;
  }
}
