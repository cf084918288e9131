import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, jsonLines } from '../helpers/cli.js';
import type { ImageConfig } from '../helpers/dockerfile.js';
import { type ImageFilesystem, imageFilesystem, runtimeConfig } from '../helpers/image.js';
import { type Manifest, type PodRun, findManifest, helmTemplate, jobFromCronJob, podRunnerUnavailable, podSpecOf, runPod } from '../helpers/pod.js';
import { snapshotTree, useTempDirs, writeTree } from '../helpers/tree.js';

/**
 * The README's restore procedure, with the chart rendered by real Helm and each pod's exact
 * command line run as the kubelet would (test/helpers/pod.ts), around a newer backup:
 *
 * - the restore Job restores; a retry of its pod (same Job UID) restores nothing and succeeds;
 * - the same steps weeks later, without a new nonce, give the same Job name from a new Job (new
 *   UID): the pod fails (exit 2) saying when the request ran and to set restore.nonce, and the
 *   data is untouched — it never ends as a success that restored nothing;
 * - with a new restore.nonce (as the README's step says), the newest archive is restored.
 */

const unavailable = podRunnerUnavailable();
if (unavailable) console.warn(`skipping test/restore/chart-request.test.ts: ${unavailable}`);

const RELEASE = 'shop';
const F = `${RELEASE}-pvc-backup`;
const SOURCE_CLAIM = 'shop-data';
/** The values of the README's step 2 (restore.enabled, archive latest, backups suspended). */
const RESTORE_STEP = ['--set', 'restore.enabled=true', '--set', 'restore.archive=latest', '--set', 'backup.suspend=true'];

describe.skipIf(unavailable !== undefined)('the documented restore, repeated', () => {
  const tempDir = useTempDirs('file');
  let image: ImageConfig;
  let imageFs: ImageFilesystem;
  let claims: Record<string, string>;
  let scratch: string;
  let data: string;

  const render = (...set: string[]) => helmTemplate(RELEASE, ['--namespace', 'apps', '--set', `source.claimName=${SOURCE_CLAIM}`, '--set', 'image.repository=registry.example.com/pvc-backup', ...set]);
  const restoreJobOf = (manifests: Manifest[]) => {
    const jobs = manifests.filter((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`));
    expect(jobs).toHaveLength(1);
    return jobs[0]!;
  };
  const run = (job: Manifest, jobUid?: string) => runPod({ job, image, imageFs, claims, scratch, jobUid, timeoutMs: 120_000 });
  const detail = (r: PodRun) => `${r.argv.join(' ')}\nexit ${r.code} ${r.signal ?? ''}\n${r.stdout}${r.stderr}`;
  /**
   * The command's own last line. The pods post Events by default (events.enabled), and with no
   * API server here that ends in a monitoring.failed warning after it, which leaves the run's
   * result alone.
   */
  const outcome = (r: PodRun, command: 'backup' | 'restore') => {
    const lines = jsonLines(r.stdout);
    expect(lines.filter((l) => typeof l.event === 'string' && l.event.startsWith('monitoring.')).map((l) => l.level)).not.toContain('error');
    return lines.filter((l) => typeof l.event === 'string' && l.event.startsWith(`${command}.`)).at(-1)!;
  };
  const backupNow = async (name: string) => {
    const result = await run(jobFromCronJob(findManifest(render(), 'CronJob', F), name));
    expect(result.code, detail(result)).toBe(0);
    const done = outcome(result, 'backup');
    expect(done.event).toBe('backup.done');
    return done.archive as string;
  };

  beforeAll(async () => {
    ensureBuilt();
    image = runtimeConfig();
    imageFs = imageFilesystem();
    data = await tempDir('pvc-shop-data');
    claims = { [SOURCE_CLAIM]: data, [F]: await tempDir('pvc-backups') };
    scratch = await tempDir('pods');
  });

  it('passes the Job UID to the runner through the downward API', () => {
    const container = podSpecOf(restoreJobOf(render(...RESTORE_STEP))).containers[0]!;
    expect(container.env).toContainEqual({ name: 'PVC_BACKUP_JOB_UID', valueFrom: { fieldRef: { fieldPath: "metadata.labels['batch.kubernetes.io/controller-uid']" } } });
  });

  it('restores once, a retry is a no-op, a repeat without a new nonce fails loudly, a new nonce restores the newest archive', async () => {
    writeTree(data, { 'orders.db': 'orders v1\n', 'config/app.yaml': 'v: 1\n' });
    const first = await backupNow(`${F}-manual-1`);
    const v1 = snapshotTree(data);

    // Step 2 of the README: the restore Job restores the newest archive.
    fs.writeFileSync(path.join(data, 'orders.db'), 'broken\n');
    const job = restoreJobOf(render(...RESTORE_STEP));
    const restored = await run(job, 'job-uid-1');
    expect(restored.code, detail(restored)).toBe(0);
    expect(outcome(restored, 'restore')).toMatchObject({ event: 'restore.done', archive: first });
    expect(snapshotTree(data)).toEqual(v1);

    // The Job's pod runs again (restarted after it had finished): restores nothing, succeeds.
    fs.writeFileSync(path.join(data, 'written-by-the-app.txt'), 'new data\n');
    const retry = await run(job, 'job-uid-1');
    expect(retry.code, detail(retry)).toBe(0);
    expect(jsonLines(retry.stdout).map((l) => l.event)).toContain('restore.already-done');
    expect(fs.existsSync(path.join(data, 'written-by-the-app.txt'))).toBe(true);

    // Weeks later: a newer backup, the data broken again, and the same steps (step 4 turned the
    // restore off, so Helm deleted the Job; step 2 creates it again: same name, new UID).
    await new Promise((r) => setTimeout(r, 1100));
    writeTree(data, { 'orders.db': 'orders v2\n' });
    const newer = await backupNow(`${F}-manual-2`);
    expect(newer).not.toBe(first);
    const v2 = snapshotTree(data);
    fs.writeFileSync(path.join(data, 'orders.db'), 'broken again\n');
    const broken = snapshotTree(data);
    const again = restoreJobOf(render(...RESTORE_STEP));
    expect(again.metadata.name).toBe(job.metadata.name);
    const repeated = await run(again, 'job-uid-2');
    expect(repeated.code, detail(repeated)).toBe(2);
    const failure = outcome(repeated, 'restore');
    expect(failure).toMatchObject({ level: 'error', event: 'restore.failed', code: 'ALREADY_RESTORED', exitCode: 2 });
    expect(failure.msg).toMatch(new RegExp(`already ran at \\S+ from ${first.replace(/\./g, '\\.')} \\(Job job-uid-1\\)`));
    expect(failure.msg).toContain('set restore.nonce to a new value (e.g. --set restore.nonce=$(date +%s)) to restore again');
    expect(snapshotTree(data)).toEqual(broken);

    // The README's step 2 as written, with a new nonce: a new request, the newest archive.
    const withNonce = restoreJobOf(render(...RESTORE_STEP, '--set', 'restore.nonce=1767225600'));
    expect(withNonce.metadata.name).not.toBe(job.metadata.name);
    const fresh = await run(withNonce, 'job-uid-3');
    expect(fresh.code, detail(fresh)).toBe(0);
    expect(outcome(fresh, 'restore')).toMatchObject({ event: 'restore.done', archive: newer });
    expect(snapshotTree(data)).toEqual(v2);
  });
});
