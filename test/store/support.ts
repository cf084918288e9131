import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';

/** Real temporary directories, removed after each test. */
export function useTempDirs(): (label?: string) => Promise<string> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  return async (label = 'dir') => {
    const dir = await mkdtemp(path.join(os.tmpdir(), `pvc-backup-${label}-`));
    dirs.push(dir);
    return dir;
  };
}

export interface FakeArchive {
  /** Archive size in bytes (content is that many 'x'). */
  bytes?: number;
  sha256?: boolean;
  /** false: no manifest; a string: raw manifest text; an object: merged into a minimal manifest. */
  manifest?: false | string | Record<string, unknown>;
  /** Set the archive's mtime (to prove ordering never uses it). */
  mtime?: Date;
}

/** Writes an archive file (content is not a real tar: the store layer never reads it) and its sidecars. */
export async function makeArchive(dir: string, name: string, options: FakeArchive = {}): Promise<void> {
  const file = path.join(dir, name);
  await writeFile(file, 'x'.repeat(options.bytes ?? 10));
  if (options.mtime) await utimes(file, options.mtime, options.mtime);
  if (options.sha256 ?? true) await writeFile(`${file}.sha256`, `${'0'.repeat(64)}  ${name}\n`);
  const manifest = options.manifest ?? {};
  if (manifest !== false) {
    const text =
      typeof manifest === 'string'
        ? manifest
        : JSON.stringify({ format: 1, archive: name, entryCount: 3, totalBytes: 100, files: [], ...manifest });
    await writeFile(`${file}.manifest.json`, text);
  }
}

export async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}
