import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, repoRoot } from './helpers/cli.js';
import { repoNodeVersion, runtimeConfig } from './helpers/image.js';
import { helmBinaries } from './helpers/helm.js';
import { docker, jobFromCronJob, jobPodMetadata, podSpecOf, runPodInDocker, type DockerRun, type Manifest, type PodMetadata, type PodSpec } from './helpers/pod.js';
import { OTHER_GID, OTHER_UID, snapshotTree, useTempDirs } from './helpers/tree.js';
import { listPodOf, renderNotes, useNotesProbe } from './synth/notes-probe.js';
import { find, podTemplateOf, renderChart, type ValuesOverride } from './synth/rendered-chart.js';

/**
 * The runner image for real (`npm run test:image`, which starts a Docker engine when none runs):
 * `docker build` of the repository's Dockerfile as it is, then the chart's pods, rendered by Helm,
 * run as containers exactly as a kubelet would run them (test/helpers/pod.ts dockerRunArgs: the
 * image's entrypoint and the pods' args, env, user and groups, capabilities, no-new-privileges,
 * read-only root, memory limit, each claim a bind mount, each emptyDir a tmpfs, fsGroup applied
 * the kubelet's way). Baseline and restricted profiles, bind, backup, verify, list, helm test and
 * restore; archives are checked with sha256sum and GNU tar, the restored tree file by file.
 */

const REPOSITORY = 'pvc-backup-image-test';
const TAG = `${process.pid}`;
const IMAGE = `${REPOSITORY}:${TAG}`;
const F = 'shop-pvc-backup';
const SOURCE_CLAIM = 'shop-data';

const tempDir = useTempDirs('file');
useNotesProbe();
let imageBuilt = false;

beforeAll(async () => {
  const info = await docker(['info', '--format', '{{.ServerVersion}}']);
  if (info.code !== 0) throw new Error(`no Docker engine answers (${info.stderr.trim()}); run npm run test:image, which starts one`);
  const logDir = await tempDir('docker-build');
  const build = await docker(['build', '--network', 'host', '--tag', IMAGE, repoRoot], 25 * 60_000);
  fs.writeFileSync(path.join(logDir, 'build.log'), build.stdout + build.stderr);
  if (build.code !== 0) throw new Error(`docker build failed (exit ${build.code}):\n${(build.stdout + build.stderr).slice(-6000)}`);
  imageBuilt = true;
}, 30 * 60_000);

afterAll(async () => {
  if (imageBuilt) await docker(['image', 'rm', '--force', IMAGE]);
});

describe('the built image', () => {
  it("has the configuration the Dockerfile declares (entrypoint, cmd, user, workdir, env, labels)", async () => {
    const inspect = await docker(['image', 'inspect', IMAGE, '--format', '{{json .Config}}']);
    expect(inspect.code, inspect.stderr).toBe(0);
    const config = JSON.parse(inspect.stdout) as { Entrypoint: string[]; Cmd: string[]; User: string; WorkingDir: string; Env: string[]; Labels: Record<string, string> };
    const declared = runtimeConfig();
    expect(config.Entrypoint).toEqual(declared.entrypoint);
    expect(config.Cmd).toEqual(declared.cmd);
    expect(config.User).toBe(declared.user);
    expect(config.WorkingDir).toBe(declared.workdir);
    const env = Object.fromEntries(config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    expect(env).toMatchObject(declared.env);
    expect(config.Labels).toMatchObject(declared.labels);
  });

  it('runs its CLI: --version, and --help without arguments', async () => {
    const version = await docker(['run', '--rm', '--network', 'none', '--read-only', IMAGE, '--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version);
    const help = await docker(['run', '--rm', '--network', 'none', '--read-only', IMAGE]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^\s+backup\s/m);
    // On the Node.js release the tests run with (the one the Dockerfile pins).
    const node = await docker(['run', '--rm', '--network', 'none', '--entrypoint', 'node', IMAGE, '--version']);
    expect(node.stdout.trim()).toBe(`v${repoNodeVersion}`);
  });
});

/** The application's data: files of several owners and modes, a symlink, nested and empty directories. */
function writeAppData(dir: string, owner: { uid: number; gid: number }, privateOwner: { uid: number; gid: number }): void {
  fs.mkdirSync(path.join(dir, 'db/tables'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'empty'));
  fs.writeFileSync(path.join(dir, 'README'), 'application data\n');
  fs.writeFileSync(path.join(dir, 'db/tables/users.dat'), Buffer.alloc(300_000, 'u'));
  fs.writeFileSync(path.join(dir, 'db/tables/orders.dat'), 'order 1\norder 2\n');
  fs.symlinkSync('tables/users.dat', path.join(dir, 'db/current'));
  fs.mkdirSync(path.join(dir, 'private'), { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'private/secret.key'), 'k3y\n', { mode: 0o600 });
  execFileSync('chown', ['-R', '--no-dereference', `${owner.uid}:${owner.gid}`, dir]);
  execFileSync('chown', ['-R', `${privateOwner.uid}:${privateOwner.gid}`, path.join(dir, 'private')]);
}

function damage(dir: string): void {
  fs.writeFileSync(path.join(dir, 'db/tables/orders.dat'), 'corrupted\n');
  fs.rmSync(path.join(dir, 'README'));
  fs.writeFileSync(path.join(dir, 'stray.tmp'), 'not in the backup\n');
}

function archivesIn(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /^shop-\d{8}T\d{6}Z(-\d+)?\.tar\.gz$/.test(n)).sort();
}

/** Exit 0; the runner's logs are JSON lines (list prints its table as text). */
function expectRan(run: DockerRun, what: string, logs: 'json' | 'text' = 'json'): void {
  const detail = `${what}: ${run.command.join(' ')}\nexit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  expect(run.code, detail).toBe(0);
  if (logs === 'json') expect(() => jsonLines(run.stdout), detail).not.toThrow();
}

interface RenderedPods {
  bind: PodSpec;
  backup: PodSpec;
  verify: PodSpec;
  test: PodSpec;
  restore: PodSpec;
  /** The restore pod's metadata: its Job UID reaches the runner through the downward API. */
  restoreMetadata: PodMetadata;
  list: PodSpec;
}

function renderPods(values: ValuesOverride): RenderedPods {
  const helm = helmBinaries().find((h) => h.major === 3)!;
  const all: ValuesOverride = { ...values, source: { claimName: SOURCE_CLAIM }, image: { repository: REPOSITORY, tag: TAG, pullPolicy: 'Never' }, restore: { enabled: true } };
  const manifests = renderChart(helm, all);
  const job = (prefix: string): Manifest => manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(prefix))!;
  return {
    bind: podTemplateOf(job(`${F}-bind-`)).spec,
    backup: podSpecOf(jobFromCronJob(find(manifests, 'CronJob', F), `${F}-manual-1`)),
    verify: podSpecOf(jobFromCronJob(find(manifests, 'CronJob', `${F}-verify`), `${F}-verify-1`)),
    test: podTemplateOf(find(manifests, 'Pod', `${F}-test`)).spec,
    restore: podTemplateOf(job(`${F}-restore-`)).spec,
    restoreMetadata: jobPodMetadata(job(`${F}-restore-`), 'image-test-restore-job'),
    list: { ...listPodOf(renderNotes(helm, all)).spec, restartPolicy: 'Never' },
  };
}

describe.each([
  { profile: 'baseline', values: {}, owner: { uid: 0, gid: 0 }, privateOwner: { uid: OTHER_UID, gid: OTHER_GID } },
  { profile: 'restricted', values: { securityProfile: 'restricted', nonRoot: { runAsUser: OTHER_UID, runAsGroup: OTHER_GID } }, owner: { uid: OTHER_UID, gid: OTHER_GID }, privateOwner: { uid: OTHER_UID, gid: OTHER_GID } },
] as const)('the chart\'s pods in the image, $profile profile', ({ profile, values, owner, privateOwner }) => {
  let pods: RenderedPods;
  let claims: Record<string, string>;
  let data: string;
  let backups: string;
  let original: ReturnType<typeof snapshotTree>;

  beforeAll(async () => {
    pods = renderPods(values as ValuesOverride);
    data = await tempDir(`${profile}-app-volume`);
    backups = await tempDir(`${profile}-backup-volume`);
    claims = { [SOURCE_CLAIM]: data, [F]: backups };
    writeAppData(data, owner, privateOwner);
    original = snapshotTree(data, { owner: true });
  });

  const run = (spec: PodSpec, name: string, metadata?: PodMetadata) => runPodInDocker({ spec, name, claims, metadata });

  it('bind Job: its pod starts on the new claim and lists it (empty)', async () => {
    const bind = await run(pods.bind, `${F}-bind`);
    expectRan(bind, 'bind pod', 'text');
    expect(bind.stdout).toContain('no archives with prefix shop');
    // The kubelet's fsGroup never touches the application's volume: it is mounted read-only.
    expect(snapshotTree(data, { owner: true })).toEqual(original);
  });

  it('backup: writes one verified archive that sha256sum and GNU tar accept, and leaves the source as it was', async () => {
    const result = await run(pods.backup, `${F}-manual-1`);
    expectRan(result, 'backup pod');
    const archives = archivesIn(backups);
    expect(archives).toHaveLength(1);
    const archive = archives[0]!;
    expect(fs.readdirSync(backups)).toEqual(expect.arrayContaining([`${archive}.sha256`, `${archive}.manifest.json`]));
    expect(fs.readdirSync(backups).filter((n) => n.endsWith('.partial') || n === '.pvc-backup.lock')).toEqual([]);
    execFileSync('sha256sum', ['-c', `${archive}.sha256`], { cwd: backups, stdio: 'pipe' });
    const listed = execFileSync('tar', ['-tzf', path.join(backups, archive)], { encoding: 'utf8' }).split('\n');
    expect(listed).toEqual(expect.arrayContaining(['./README', './db/current', './db/tables/users.dat', './private/secret.key']));
    expect(jsonLines(result.stdout).filter((l) => l.event === 'backup.done')).toMatchObject([{ level: 'info', archive }]);
    // The pod posts an Event (events.enabled by default); with no API server here, one warning.
    expect(jsonLines(result.stdout).filter((l) => l.level === 'warn').map((l) => l.event)).toEqual(['monitoring.failed']);
    expect(snapshotTree(data, { owner: true })).toEqual(original);
  });

  it('verify CronJob, helm test Pod and the NOTES list pod: check and list the archive with only the backup volume', async () => {
    for (const spec of [pods.verify, pods.test, pods.list]) expect(spec.volumes!.map((v) => v.name).sort()).toEqual(['backup', 'tmp']);
    expectRan(await run(pods.verify, `${F}-verify-1`), 'verify pod');
    expectRan(await run(pods.test, `${F}-test`), 'helm test pod');
    const list = await run(pods.list, `${F}-list`);
    expect(list.code, list.stderr + list.stdout).toBe(0);
    expect(list.stdout).toContain(archivesIn(backups)[0]);
  });

  it('restore: puts the backed-up tree, owners included, back into the damaged claim', async () => {
    damage(data);
    expect(snapshotTree(data, { owner: true })).not.toEqual(original);
    const restored = await run(pods.restore, `${F}-restore`, pods.restoreMetadata);
    expectRan(restored, 'restore pod');
    expect(jsonLines(restored.stdout).filter((l) => l.event === 'restore.done')).toHaveLength(1);
    expect(snapshotTree(data, { owner: true })).toEqual(original);
    expect(fs.readdirSync(data).sort()).toEqual(['README', 'db', 'empty', 'private']);
  });

  if (profile === 'restricted') {
    it('backup: a file the non-root user cannot read fails the run in one line naming it', async () => {
      const locked = path.join(data, 'root-only.key');
      fs.writeFileSync(locked, 'x\n', { mode: 0o600 }); // owned by root
      try {
        const result = await run(pods.backup, `${F}-manual-2`);
        expect(result.code, result.stdout + result.stderr).toBe(1);
        expect(result.stdout).toContain('root-only.key');
        expect(archivesIn(backups)).toHaveLength(1);
      } finally {
        fs.rmSync(locked);
      }
    });
  }
});
