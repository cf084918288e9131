import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, jsonLines } from '../helpers/cli.js';
import type { ImageConfig } from '../helpers/dockerfile.js';
import { type ImageFilesystem, imageFilesystem, runtimeConfig } from '../helpers/image.js';
import {
  type Manifest,
  type PodRun,
  findManifest,
  helmTemplate,
  jobFromCronJob,
  podRunnerUnavailable,
  podSpecOf,
  runPod,
  validateJob,
} from '../helpers/pod.js';
import { OTHER_GID, OTHER_UID, snapshotTree, useTempDirs } from '../helpers/tree.js';

/**
 * Chart and runner, end to end, without a cluster. The chart is rendered with real Helm; the
 * backup CronJob becomes a Job the way `kubectl create job --from=cronjob/...` makes one; then each
 * pod's container runs the built runner exactly as the pod would — the image's ENTRYPOINT (read
 * from the Dockerfile) plus the container's args, the image ENV plus the container's env, every
 * volumeMount at its mountPath (readOnly and subPath honoured), a read-only root filesystem,
 * /tmp an emptyDir, uid and capabilities from the security contexts — inside a private mount
 * namespace (test/e2e/run-in-pod.sh). No path or argument is rewritten: if chart and runner
 * disagree, a pod fails here.
 */

const unavailable = podRunnerUnavailable();
if (unavailable) console.warn(`skipping test/e2e/chart-runner.test.ts: ${unavailable}`);

const RELEASE = 'r';
const F = `${RELEASE}-pvc-backup`;
const SOURCE_CLAIM = 'data';

/** The application's data: files of several owners and modes, a symlink, nested and empty directories. */
function writeAppData(dir: string): void {
  fs.mkdirSync(path.join(dir, 'db/tables'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'empty'));
  fs.writeFileSync(path.join(dir, 'README'), 'application data\n');
  fs.writeFileSync(path.join(dir, 'db/tables/users.dat'), Buffer.alloc(200_000, 'u'));
  fs.writeFileSync(path.join(dir, 'db/tables/orders.dat'), 'order 1\norder 2\n');
  fs.symlinkSync('tables/users.dat', path.join(dir, 'db/current'));
  // Owned by another user, readable only by that user: the backup pod reads it as root with
  // DAC_OVERRIDE only (the source is mounted read-only), the restore pod writes it back and
  // restores the owner with CHOWN.
  fs.mkdirSync(path.join(dir, 'private'), { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'private/secret.key'), 'k3y\n', { mode: 0o600 });
  for (const p of ['private', 'private/secret.key']) fs.chownSync(path.join(dir, p), OTHER_UID, OTHER_GID);
}

function damage(dir: string): void {
  fs.writeFileSync(path.join(dir, 'db/tables/orders.dat'), 'corrupted\n');
  fs.rmSync(path.join(dir, 'README'));
  fs.writeFileSync(path.join(dir, 'stray.tmp'), 'not in the backup\n');
}

function archivesIn(dir: string, prefix: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.startsWith(`${prefix}-`) && /\.tar(\.gz|\.zst)?$/.test(n))
    .sort();
}

function expectSucceeded(run: PodRun, what: string): void {
  const detail = `${what}: ${run.argv.join(' ')}\nexit ${run.code} ${run.signal ?? ''}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  expect(run.code, detail).toBe(0);
  // The chart sets PVC_BACKUP_LOG_FORMAT=json: every line on stdout is one JSON object.
  expect(() => jsonLines(run.stdout), detail).not.toThrow();
  expect(jsonLines(run.stdout).length, detail).toBeGreaterThan(0);
}

/** Everything `kubectl create job --from=cronjob/...` needs from a CronJob's jobTemplate alone. */
function expectCompleteJob(job: Manifest, chartClaims: string[]): void {
  validateJob(job);
  const pod = podSpecOf(job);
  expect(['Never', 'OnFailure']).toContain(pod.restartPolicy);
  expect(pod.containers.length).toBeGreaterThan(0);
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  for (const container of pod.containers) {
    expect(container.image, `${job.metadata.name}/${container.name} image`).toMatch(/\S+:\S+/);
    for (const mount of container.volumeMounts ?? []) {
      expect(volumes.has(mount.name), `${job.metadata.name}: volume for mount ${mount.name}`).toBe(true);
    }
  }
  for (const volume of volumes.values()) {
    const claim = volume.persistentVolumeClaim?.claimName;
    if (claim !== undefined) expect([SOURCE_CLAIM, ...chartClaims], `${job.metadata.name}: claim ${claim} exists`).toContain(claim);
  }
}

describe.skipIf(unavailable !== undefined).each([
  { name: 'default values', set: [] as string[], subPath: undefined as string | undefined },
  { name: 'source.subPath', set: ['--set', 'source.subPath=app/state'], subPath: 'app/state' },
])('chart pods run the runner unchanged ($name)', ({ set, subPath }) => {
  const tempDir = useTempDirs('file');
  let image: ImageConfig;
  let imageFs: ImageFilesystem;
  let manifests: Manifest[];
  let claims: Record<string, string>;
  let dataDir: string;
  let scratch: string;
  let original: ReturnType<typeof snapshotTree>;
  const hostPathsBefore = ['/data', '/backup', '/app'].map((p) => fs.existsSync(p));

  beforeAll(async () => {
    ensureBuilt();
    image = runtimeConfig();
    imageFs = imageFilesystem();
    manifests = helmTemplate(RELEASE, ['--namespace', 'apps', '--set', `source.claimName=${SOURCE_CLAIM}`, '--set', 'image.repository=registry.example.com/pvc-backup', '--set', 'restore.enabled=true', ...set]);
    const sourceClaimDir = await tempDir('pvc-data');
    claims = { [SOURCE_CLAIM]: sourceClaimDir, [F]: await tempDir('pvc-backups') };
    scratch = await tempDir('pods');
    dataDir = subPath ? path.join(sourceClaimDir, subPath) : sourceClaimDir;
    fs.mkdirSync(dataDir, { recursive: true });
    writeAppData(dataDir);
    original = snapshotTree(dataDir, { owner: true });
  });

  const chartClaims = () => manifests.filter((m) => m.kind === 'PersistentVolumeClaim').map((m) => m.metadata.name);
  const run = (job: Manifest) => runPod({ job, image, imageFs, claims, scratch });

  it('backup: the CronJob jobTemplate alone is a complete Job, and its pod writes a verified archive', async () => {
    const job = jobFromCronJob(findManifest(manifests, 'CronJob', F), `${F}-manual-1`);
    expect(chartClaims()).toContain(F);
    expectCompleteJob(job, chartClaims());

    const result = await run(job);
    expectSucceeded(result, 'backup pod');
    expect(result.argv.slice(0, 2)).toEqual(image.entrypoint);

    const backups = claims[F]!;
    const archives = archivesIn(backups, RELEASE);
    expect(archives).toHaveLength(1);
    const archive = archives[0]!;
    expect(fs.readdirSync(backups).sort()).toEqual(
      expect.arrayContaining([archive, `${archive}.sha256`, `${archive}.manifest.json`]),
    );
    expect(fs.readdirSync(backups).filter((n) => n.endsWith('.partial') || n === '.pvc-backup.lock')).toEqual([]);
    // Standard tools agree: sha256sum -c and GNU tar.
    execFileSync('sha256sum', ['-c', `${archive}.sha256`], { cwd: backups, stdio: 'pipe' });
    const listed = execFileSync('tar', ['-tzf', path.join(backups, archive)], { encoding: 'utf8' }).split('\n');
    expect(listed).toEqual(expect.arrayContaining(['./README', './db/current', './private/secret.key']));
    const lines = jsonLines(result.stdout);
    const summary = lines.find((l) => l.event === 'backup.done')!;
    expect(summary).toMatchObject({ level: 'info', archive });
    // Only the outcome's Event comes after it, and without an API server it is a warning, not a failure.
    expect(lines.slice(lines.indexOf(summary) + 1).map((l) => [l.level, l.event])).toEqual([['warn', 'monitoring.failed']]);
    // The source claim was mounted read-only and nothing in it changed.
    expect(snapshotTree(dataDir, { owner: true })).toEqual(original);
  });

  it('verify: the verify CronJob, run now, checks every archive and the schedule, with only the backup volume', async () => {
    const job = jobFromCronJob(findManifest(manifests, 'CronJob', `${F}-verify`), `${F}-verify-1`);
    expectCompleteJob(job, chartClaims());
    expect(podSpecOf(job).volumes!.map((v) => v.name).sort()).toEqual(['backup', 'tmp']);
    const result = await run(job);
    expectSucceeded(result, 'verify pod');
    expect(result.argv).toContain('--all');
  });

  it('restore: the restore Job puts the backed-up tree back into the damaged claim', async () => {
    damage(dataDir);
    expect(snapshotTree(dataDir, { owner: true })).not.toEqual(original);
    const restoreJob = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`));
    expect(restoreJob, 'restore.enabled=true renders a restore Job').toBeDefined();
    expect(restoreJob!.metadata.name).toMatch(new RegExp(`^${F}-restore-[0-9a-f]{8}$`));
    validateJob(restoreJob!);

    const result = await run(restoreJob!);
    expectSucceeded(result, 'restore pod');
    expect(snapshotTree(dataDir, { owner: true })).toEqual(original);
    // Nothing the runner used for staging is left in the claim.
    expect(fs.readdirSync(dataDir).sort()).toEqual(['README', 'db', 'empty', 'private']);
    // The same Job running again (a retry) restores nothing twice and still succeeds.
    fs.writeFileSync(path.join(dataDir, 'after-restore.txt'), 'new data written by the app\n');
    const again = await run(restoreJob!);
    expectSucceeded(again, 'restore pod, second run');
    expect(fs.existsSync(path.join(dataDir, 'after-restore.txt'))).toBe(true);
  });

  it('changed nothing on the host outside its temporary directories', () => {
    expect(['/data', '/backup', '/app'].map((p) => fs.existsSync(p))).toEqual(hostPathsBefore);
  });
});
