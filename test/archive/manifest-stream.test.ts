import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ManifestFile, type ManifestHead, type ManifestTail, ManifestWriter, openManifest, writeManifestWithVerification } from '../../runner/archive/manifest.js';
import { IntegrityError } from '../../runner/errors.js';
import { useTempDirs } from '../helpers/tree.js';

/** The manifest is one JSON document written and read as a stream; format 1 and hand-edited manifests still read. */

const tempDir = useTempDirs();

const head: ManifestHead = { format: 2, prefix: 'p', archive: 'p-20260101T000000Z.tar.zst', createdAt: '2026-01-01T00:00:00.000Z', source: '/data', compression: 'zstd', level: 3, excludes: ['*.tmp'], xattrs: true, runnerVersion: '0.1.0' };

function entry(i: number): ManifestFile {
  return { path: `./dir-${i % 7}/f\udcff-${i}`, type: 'file', size: i, mode: 0o644, mtime: -10 + i, mtimeNsec: i * 3, uid: 0, gid: 0, sha256: 'ab'.repeat(32), offset: i * 1536 };
}

function tail(count: number): ManifestTail {
  return { archiveBytes: 10, sha256: 'cd'.repeat(32), tarBytes: 20, entryCount: count, totalBytes: 30, storedBytes: 30, frames: [[0, 0]], durationSeconds: 1.5, verification: { at: 'now', ok: true }, warnings: [{ path: './x', problem: 'changed while being read' }] };
}

async function written(count: number): Promise<string> {
  const file = path.join(await tempDir('manifest'), 'm.manifest.json');
  const fd = fs.openSync(file, 'w');
  const writer = new ManifestWriter(fd, head);
  for (let i = 0; i < count; i++) writer.file(entry(i));
  writer.finish(tail(count));
  fs.closeSync(fd);
  return file;
}

function all(file: string): ManifestFile[] {
  const reader = openManifest(file).files();
  const out: ManifestFile[] = [];
  for (let f = reader.next(); f; f = reader.next()) out.push(f);
  return out;
}

describe('manifest format 2', () => {
  it('is one JSON document (jq reads it) with non-UTF-8 names as \\udcXX escapes', async () => {
    const file = await written(3);
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { files: ManifestFile[]; format: number; warnings: unknown[] };
    expect(parsed.format).toBe(2);
    expect(parsed.files).toEqual([entry(0), entry(1), entry(2)]);
    expect(fs.readFileSync(file, 'latin1')).toContain('f\\udcff-0');
    expect(execFileSync('jq', ['-r', '.files | length'], { input: fs.readFileSync(file) }).toString().trim()).toBe('3');
  });

  it('is read head and tail only for the summary, and entry by entry for the list, across 1 MiB pieces', async () => {
    const file = await written(30_000);
    expect(fs.statSync(file).size).toBeGreaterThan(4 * 1024 * 1024);
    const opened = openManifest(file);
    expect(opened.layout).toBe('stream');
    expect(opened.manifest).toMatchObject({ ...head, ...tail(30_000) });
    const files = all(file);
    expect(files).toHaveLength(30_000);
    expect(files[29_999]).toEqual(entry(29_999));
  });

  it('reads an empty file list', async () => {
    const file = await written(0);
    expect(all(file)).toEqual([]);
    expect(openManifest(file).manifest.entryCount).toBe(0);
  });

  it('reads a pretty-printed or compact rewrite whole, and refuses a damaged line', async () => {
    const file = await written(5);
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
    fs.writeFileSync(file, JSON.stringify(doc, null, 2));
    expect(openManifest(file).layout).toBe('whole');
    expect(all(file)).toHaveLength(5);
    const damaged = await written(5);
    fs.writeFileSync(damaged, fs.readFileSync(damaged, 'utf8').replace('"path":"./dir-1', '"path":./dir-1'));
    expect(() => all(damaged)).toThrow(IntegrityError);
    const notJson = await written(1);
    fs.writeFileSync(notJson, '{"format": 2,');
    expect(() => openManifest(notJson)).toThrow(/not valid JSON/);
  });

  it('gets a new verification record with the file list copied byte for byte', async () => {
    const file = await written(1000);
    const out = path.join(path.dirname(file), 'new.json');
    const fd = fs.openSync(out, 'w');
    writeManifestWithVerification(file, { at: 'later', ok: false, error: 'bad' }, fd);
    fs.closeSync(fd);
    const before = fs.readFileSync(file, 'utf8');
    const after = fs.readFileSync(out, 'utf8');
    const list = (text: string) => text.slice(text.indexOf('"files": ['), text.indexOf('\n  ],\n'));
    expect(list(after)).toBe(list(before));
    expect(openManifest(out).manifest.verification).toEqual({ at: 'later', ok: false, error: 'bad' });
  });
});

describe('manifest format 1', () => {
  it('is still read, streaming when it has the layout format 1 was written in', async () => {
    const file = path.join(await tempDir('v1'), 'old.manifest.json');
    const files = [{ path: './', type: 'dir', size: 0, mode: 493, mtime: 1, uid: 0, gid: 0 }, { path: './a', type: 'file', size: 1, mode: 420, mtime: 1, uid: 0, gid: 0, sha256: 'ef'.repeat(32) }];
    const headText = JSON.stringify({ format: 1, prefix: 'p', archive: 'a', createdAt: 'x', source: '/s', compression: 'gzip', archiveBytes: 1, sha256: 'cd'.repeat(32), tarBytes: 2, entryCount: 2, totalBytes: 1, excludes: [], warnings: [], runnerVersion: '0.1.0', durationSeconds: 0 }, null, 2);
    fs.writeFileSync(file, `${headText.slice(0, -2)},\n  "files": [\n${files.map((f) => `    ${JSON.stringify(f)}`).join(',\n')}\n  ]\n}\n`);
    const opened = openManifest(file);
    expect(opened.layout).toBe('stream');
    expect(opened.manifest.format).toBe(1);
    expect(opened.manifest.entryCount).toBe(2);
    expect(all(file)).toEqual(files);
  });
});
