import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, jsonLines } from '../helpers/cli.js';
import type { ImageConfig } from '../helpers/dockerfile.js';
import { type ImageFilesystem, imageFilesystem, runtimeConfig } from '../helpers/image.js';
import { type Manifest, type PodRun, findManifest, helmTemplate, jobFromCronJob, jobOfContainer, podRunnerUnavailable, podSpecOf, runPod } from '../helpers/pod.js';
import { snapshotTree, useTempDirs } from '../helpers/tree.js';

/**
 * Two volumes in one release (sources), end to end without a cluster, in the harness of
 * chart-runner.test.ts: both backup CronJobs write into the one backup claim under their own
 * prefixes, the verify CronJob's containers check both, and restore.source restores one of them.
 */

const unavailable = podRunnerUnavailable();
if (unavailable) console.warn(`skipping test/e2e/sources.test.ts: ${unavailable}`);

const RELEASE = 'r';
const F = `${RELEASE}-pvc-backup`;

function expectSucceeded(run: PodRun, what: string): void {
  expect(run.code, `${what}: ${run.argv.join(' ')}\nexit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0);
}

function archivesIn(dir: string, prefix: string): string[] {
  return fs.readdirSync(dir).filter((n) => new RegExp(`^${prefix}-\\d`).test(n) && /\.tar(\.gz|\.zst)?$/.test(n));
}

describe.skipIf(unavailable !== undefined)('two sources in one release', () => {
  const tempDir = useTempDirs('file');
  let image: ImageConfig;
  let imageFs: ImageFilesystem;
  let manifests: Manifest[];
  let claims: Record<string, string>;
  let scratch: string;

  beforeAll(async () => {
    ensureBuilt();
    image = runtimeConfig();
    imageFs = imageFilesystem();
    manifests = helmTemplate(RELEASE, [
      '--namespace', 'apps',
      '--set', 'image.repository=registry.example.com/pvc-backup',
      '--set', 'sources[0].name=db', '--set', 'sources[0].claimName=db-data',
      '--set', 'sources[1].name=media', '--set', 'sources[1].claimName=media-data',
      '--set', 'restore.enabled=true', '--set', 'restore.source=media',
    ]);
    claims = { 'db-data': await tempDir('pvc-db'), 'media-data': await tempDir('pvc-media'), [F]: await tempDir('pvc-backups') };
    scratch = await tempDir('pods');
    fs.writeFileSync(path.join(claims['db-data']!, 'table.dat'), 'rows\n');
    fs.mkdirSync(path.join(claims['media-data']!, 'img'));
    fs.writeFileSync(path.join(claims['media-data']!, 'img/cat.png'), Buffer.alloc(50_000, 'c'));
  });

  const run = (job: Manifest) => runPod({ job, image, imageFs, claims, scratch });

  it('each backup CronJob writes a verified archive of its own claim under its own prefix, in the one backup claim', async () => {
    for (const name of ['db', 'media']) {
      const result = await run(jobFromCronJob(findManifest(manifests, 'CronJob', `${F}-${name}`), `${F}-${name}-manual-1`));
      expectSucceeded(result, `backup of ${name}`);
    }
    const backups = claims[F]!;
    const [db] = archivesIn(backups, `${RELEASE}-db`);
    const [media] = archivesIn(backups, `${RELEASE}-media`);
    expect([db, media].every(Boolean), fs.readdirSync(backups).join(', ')).toBe(true);
    const listing = (archive: string) => execFileSync('tar', ['-tzf', path.join(backups, archive)], { encoding: 'utf8' }).split('\n').filter((l) => l && !l.startsWith('./.pvc-backup'));
    expect(listing(db!)).toEqual(expect.arrayContaining(['./table.dat']));
    expect(listing(db!)).not.toContain('./img/cat.png');
    expect(listing(media!)).toEqual(expect.arrayContaining(['./img/cat.png']));
    expect(listing(media!)).not.toContain('./table.dat');
  });

  it('the verify CronJob checks both prefixes, one container each', async () => {
    const job = jobFromCronJob(findManifest(manifests, 'CronJob', `${F}-verify`), `${F}-verify-1`);
    const names = [...(podSpecOf(job).initContainers ?? []), ...podSpecOf(job).containers].map((c) => c.name);
    expect(names).toEqual(['verify-db', 'verify']);
    const checked: string[] = [];
    for (const name of names) {
      const result = await run(jobOfContainer(job, name));
      expectSucceeded(result, `verify container ${name}`);
      checked.push(...jsonLines(result.stdout).filter((l) => typeof l.archive === 'string').map((l) => String(l.archive)));
    }
    expect(checked.some((a) => a.startsWith(`${RELEASE}-db-`))).toBe(true);
    expect(checked.some((a) => a.startsWith(`${RELEASE}-media-`))).toBe(true);
  });

  it('restore.source=media restores the media archive into the media claim and leaves the db claim alone', async () => {
    const media = claims['media-data']!;
    const before = snapshotTree(media);
    const db = snapshotTree(claims['db-data']!);
    fs.rmSync(path.join(media, 'img/cat.png'));
    const restore = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
    expectSucceeded(await run(restore), 'restore of media');
    expect(snapshotTree(media)).toEqual(before);
    expect(snapshotTree(claims['db-data']!)).toEqual(db);
  });
});
