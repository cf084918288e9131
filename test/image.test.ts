import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { cliPath, distDir, ensureBuilt, jsonLines, repoRoot } from './helpers/cli.js';
import { buildContextFiles, finalStage, parseCopy, stage } from './helpers/dockerfile.js';
import {
  buildOutputCopied,
  dockerfile,
  packageJson,
  productionDependencies,
  productionPackagesInLock,
  repoNodeVersion,
  runtimeConfig,
} from './helpers/image.js';
import { type Manifest, type PodSpec, helmTemplate } from './helpers/pod.js';
import { IMAGE_REPOSITORY } from './synth/rendered-chart.js';
import { snapshotTree, useTempDirs } from './helpers/tree.js';

/**
 * The runner image, checked without Docker (no engine or registry is reachable where the tests
 * run): the Dockerfile's stages and runtime configuration, the build context .dockerignore
 * leaves, the chart's pods against what the image expects (entrypoint, mounts, read-only root),
 * and the production dependency set actually starting the CLI.
 */

const df = dockerfile();
const config = runtimeConfig(df);
const chart = parseYaml(fs.readFileSync(path.join(repoRoot, 'charts/pvc-backup/Chart.yaml'), 'utf8')) as { appVersion: string };

function runs(stageName: string): string[] {
  return stage(df, stageName).instructions.filter((i) => i.keyword === 'RUN').map((i) => i.rest);
}

describe('Dockerfile', () => {
  it('needs no frontend from a registry: no # syntax= line, so it builds offline from a local base image', () => {
    expect(fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8')).not.toMatch(/^#\s*syntax\s*=/im);
  });

  it('builds in three stages from one pinned Node 24 image: build (npm ci + npm run build), deps (npm ci --omit=dev), runtime', () => {
    expect(df.stages.map((s) => s.name)).toEqual(['build', 'deps', '2']);
    const images = new Set(df.stages.map((s) => s.from));
    expect(images.size).toBe(1);
    const [image] = [...images];
    // The exact Node.js release the tests run with, on Debian 12 like the CI machine.
    expect(image).toBe(`node:${repoNodeVersion}-bookworm-slim`);
    expect(repoNodeVersion).toMatch(/^24\./);
    expect(runs('build').join('\n')).toMatch(/\bnpm ci\b/);
    expect(runs('build').join('\n')).toMatch(/\bnpm run build\b/);
    expect(runs('deps').join('\n')).toMatch(/\bnpm ci --omit=dev\b/);
    // Build stages produce platform-independent JavaScript, so they run on the builder's platform.
    expect(stage(df, 'build').platform).toBe('$BUILDPLATFORM');
    expect(stage(df, 'deps').platform).toBe('$BUILDPLATFORM');
    expect(finalStage(df).platform).toBeUndefined();
  });

  it('puts only dist/runner, package.json, package-lock.json and the production node_modules into the runtime image', () => {
    const copies = finalStage(df)
      .instructions.filter((i) => i.keyword === 'COPY')
      .map(parseCopy);
    const copied = copies.flatMap((c) => c.sources.map((s) => `${c.from ?? 'context'}:${s}`)).sort();
    expect(copied).toEqual(['build:/src/dist/runner', 'context:package-lock.json', 'context:package.json', 'deps:/app/node_modules']);
    // The build output copied is exactly what `npm run build` writes and package.json ships.
    expect(buildOutputCopied(df)).toEqual(['dist/runner']);
    expect(packageJson.files).toEqual(['dist/runner']);
    // Nothing is installed or built in the runtime stage itself.
    for (const run of runs('2')) expect(run).not.toMatch(/\bnpm (ci|install|i)\b|apt-get|\bcurl\b|\bwget\b/);
  });

  it('starts the CLI that npm run build produces: ENTRYPOINT node /app/<bin>, WORKDIR /app', () => {
    ensureBuilt();
    expect(config.workdir).toBe('/app');
    expect(config.entrypoint).toEqual(['node', `/app/${packageJson.bin['pvc-backup']}`]);
    expect(config.entrypoint[1]).toBe(`/app/${path.relative(repoRoot, cliPath)}`);
    expect(fs.existsSync(cliPath)).toBe(true);
    // The pvc-backup command on PATH is the same file; its shebang runs it with the image's node.
    expect(fs.readFileSync(cliPath, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(runs('2').join('\n')).toContain(`ln -s ${config.entrypoint[1]} /usr/local/bin/pvc-backup`);
    // Without args the container prints the help instead of failing.
    expect(config.cmd).toEqual(['--help']);
  });

  it('runs as a numeric non-root user, logs JSON, and points every place Node could write at /tmp', () => {
    expect(config.user).toMatch(/^[1-9]\d*:\d+$/);
    expect(config.env.PVC_BACKUP_LOG_FORMAT).toBe('json');
    expect(config.env.NODE_ENV).toBe('production');
    expect(config.env.HOME).toBe('/tmp');
    expect(config.env.TMPDIR).toBe('/tmp');
    expect(config.env.NODE_OPTIONS).toBe('--diagnostic-dir=/tmp');
    expect(config.env.NODE_DISABLE_COMPILE_CACHE).toBe('1');
    expect(config.env.NODE_REPL_HISTORY).toBe('');
    // No VOLUME: the chart decides what is mounted; an anonymous volume would hide that.
    expect(df.stages.flatMap((s) => s.instructions).filter((i) => i.keyword === 'VOLUME')).toEqual([]);
  });

  it('carries the OCI labels, with the package version and licence', () => {
    expect(config.labels).toMatchObject({
      'org.opencontainers.image.title': packageJson.name,
      'org.opencontainers.image.version': packageJson.version,
      'org.opencontainers.image.licenses': packageJson.license,
    });
    expect(config.labels['org.opencontainers.image.version']).toBe(chart.appVersion);
    expect(config.labels['org.opencontainers.image.source']).toMatch(/^https:\/\/\S+$/);
    expect(config.labels['org.opencontainers.image.description']?.length).toBeGreaterThan(20);
    expect(config.labels['org.opencontainers.image.base.name']).toBe(`docker.io/library/${finalStage(df).from}`);
    // Every ARG a label uses is in scope (a global ARG must be re-declared inside the stage).
    for (const [key, value] of Object.entries(config.labels)) expect(value, key).toMatch(/^\S.*[^/:]$/);
  });

  describe('build context', () => {
    const tempDir = useTempDirs();

    it('.dockerignore sends only what the Dockerfile copies, and the build stage compiles from it', async () => {
      const files = buildContextFiles(repoRoot);
      const outside = files.filter((f) => !/^(package\.json|package-lock\.json|tsconfig(\.build)?\.json|runner\/.+\.ts)$/.test(f));
      expect(outside).toEqual([]);
      expect(files).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'tsconfig.build.json', 'runner/cli.ts']));
      for (const copy of df.stages.flatMap((s) => s.instructions.filter((i) => i.keyword === 'COPY').map(parseCopy))) {
        if (copy.from !== undefined) continue;
        for (const source of copy.sources) {
          expect(files.some((f) => f === source || f.startsWith(`${source}/`)), `COPY ${source} is in the build context`).toBe(true);
        }
      }

      // The build stage's steps on exactly that context: `npm ci` (stood in for by the
      // repository's node_modules) and `npm run build`.
      const context = await tempDir('context');
      for (const file of files) {
        fs.mkdirSync(path.dirname(path.join(context, file)), { recursive: true });
        fs.copyFileSync(path.join(repoRoot, file), path.join(context, file));
      }
      fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(context, 'node_modules'));
      const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: context, encoding: 'utf8', timeout: 120_000 });
      expect(build.status, build.stdout + build.stderr).toBe(0);
      expect(fs.existsSync(path.join(context, packageJson.bin['pvc-backup']!))).toBe(true);
    });
  });
});

describe('chart pods and the image', () => {
  let workloads: Manifest[];
  beforeAll(() => {
    const manifests = helmTemplate('r', ['--set', 'source.claimName=data', '--set', `image.repository=${IMAGE_REPOSITORY}`, '--set', 'restore.enabled=true']);
    workloads = manifests.filter((m) => m.kind === 'CronJob' || m.kind === 'Job' || m.kind === 'Pod');
  });
  const podOf = (m: Manifest): PodSpec => (m.kind === 'CronJob' ? m.spec.jobTemplate.spec.template.spec : m.kind === 'Pod' ? m.spec : m.spec.template.spec);

  it('renders the backup and verify CronJobs, the bind and restore Jobs and the helm test Pod', () => {
    expect(workloads.map((w) => w.kind).sort()).toEqual(['CronJob', 'CronJob', 'Job', 'Job', 'Pod']);
  });

  it('every pod runs the image entrypoint with args only, at the image tag the chart version names', () => {
    for (const workload of workloads) {
      for (const container of podOf(workload).containers) {
        expect(container.command, `${workload.metadata.name}/${container.name}`).toBeUndefined();
        expect(container.args?.length).toBeGreaterThan(0);
        expect(container.image).toBe(`${IMAGE_REPOSITORY}:${config.labels['org.opencontainers.image.version']}`);
      }
    }
  });

  it('mounts /data, /backup and an emptyDir at /tmp, keeps the root filesystem read-only, and hides nothing of /app', () => {
    const writableImagePaths = [config.env.HOME!, config.env.TMPDIR!, config.env.NODE_OPTIONS!.replace('--diagnostic-dir=', '')];
    for (const workload of workloads) {
      const pod = podOf(workload);
      const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
      for (const container of pod.containers) {
        const where = `${workload.metadata.name}/${container.name}`;
        expect(container.securityContext?.readOnlyRootFilesystem, where).toBe(true);
        const mounts = container.volumeMounts ?? [];
        // Backup, bind and restore pods mount /data too; verify and helm test only the archives.
        expect(mounts.map((m) => m.mountPath).filter((p) => p !== '/data').sort(), where).toEqual(['/backup', '/tmp']);
        for (const mount of mounts) {
          const volume = volumes.get(mount.name)!;
          if (mount.mountPath === '/tmp') expect(volume.emptyDir, `${where}: /tmp is an emptyDir`).toBeDefined();
          else expect(volume.persistentVolumeClaim, `${where}: ${mount.mountPath} is a claim`).toBeDefined();
          // A mount over /app or over the entrypoint would hide the CLI.
          expect(config.entrypoint[1]!.startsWith(`${mount.mountPath}/`), where).toBe(false);
          expect(config.workdir === mount.mountPath || config.workdir.startsWith(`${mount.mountPath}/`), where).toBe(false);
        }
        // Wherever the image lets Node write is a writable mount of the pod.
        for (const p of writableImagePaths) {
          const mount = mounts.find((m) => p === m.mountPath || p.startsWith(`${m.mountPath}/`));
          expect(mount && !mount.readOnly, `${where}: ${p} is on a writable volume`).toBe(true);
        }
        // Directory arguments of the runner point into the mounts.
        const args = container.args ?? [];
        for (const flag of ['--source', '--dest', '--target']) {
          const i = args.indexOf(flag);
          if (i === -1) continue;
          expect(mounts.some((m) => args[i + 1] === m.mountPath || args[i + 1]!.startsWith(`${m.mountPath}/`)), `${where}: ${flag} ${args[i + 1]}`).toBe(true);
        }
      }
    }
  });
});

describe('production dependencies start the CLI', () => {
  const tempDir = useTempDirs('file');
  let app: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    ensureBuilt();
    // The runtime image's /app: package files, dist/runner, and `npm ci --omit=dev` node_modules.
    app = await tempDir('app');
    fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(app, 'package.json'));
    fs.copyFileSync(path.join(repoRoot, 'package-lock.json'), path.join(app, 'package-lock.json'));
    fs.cpSync(path.join(distDir, 'runner'), path.join(app, 'dist/runner'), { recursive: true });
    fs.cpSync(path.join(productionDependencies(), 'node_modules'), path.join(app, 'node_modules'), { recursive: true, verbatimSymlinks: true });
    // The image's environment, with this machine's PATH so `node` is the repository's Node 24.
    env = { ...config.env, PATH: process.env.PATH ?? '', TMPDIR: await tempDir('tmp'), HOME: await tempDir('home') };
  });

  const cli = (args: string[]) =>
    spawnSync(process.execPath, [path.join(app, 'dist/runner/cli.js'), ...args], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });

  it('installs exactly the lock file\'s production packages, no devDependencies', () => {
    const installed: string[] = [];
    const visit = (dir: string, prefix: string) => {
      for (const name of fs.readdirSync(dir)) {
        if (name.startsWith('.')) continue;
        if (name.startsWith('@')) visit(path.join(dir, name), `${prefix}${name}/`);
        else {
          installed.push(`node_modules/${prefix}${name}`);
          if (fs.existsSync(path.join(dir, name, 'node_modules'))) visit(path.join(dir, name, 'node_modules'), `${prefix}${name}/node_modules/`);
        }
      }
    };
    visit(path.join(app, 'node_modules'), '');
    expect(installed.sort()).toEqual(productionPackagesInLock());
    for (const dev of Object.keys(packageJson.devDependencies)) expect(installed).not.toContain(`node_modules/${dev}`);
    for (const dep of Object.keys(packageJson.dependencies)) expect(installed).toContain(`node_modules/${dep}`);
  });

  it('--help exits 0 and lists every command; --version reads /app/package.json', () => {
    const help = cli(['--help']);
    expect(help.status, help.stderr).toBe(0);
    for (const command of ['backup', 'verify', 'list', 'prune', 'restore']) expect(help.stdout).toMatch(new RegExp(`^\\s+${command}\\s`, 'm'));
    const version = cli(['--version']);
    expect(version.status, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(packageJson.version);
  });

  it('backs up, lists and verifies (gzip and zstd) with JSON logs', async () => {
    const source = await tempDir('source');
    const dest = await tempDir('dest');
    fs.mkdirSync(path.join(source, 'sub'));
    fs.writeFileSync(path.join(source, 'a.txt'), 'alpha\n');
    fs.writeFileSync(path.join(source, 'sub/b.bin'), Buffer.alloc(100_000, 7));
    fs.symlinkSync('a.txt', path.join(source, 'link'));
    const before = snapshotTree(source);

    for (const compression of ['gzip', 'zstd']) {
      const backup = cli(['backup', '--source', source, '--dest', dest, '--prefix', compression, '--compression', compression]);
      expect(backup.status, backup.stdout + backup.stderr).toBe(0);
      const lines = jsonLines(backup.stdout);
      expect(lines.at(-1)).toMatchObject({ level: 'info', files: 2 });
      const verify = cli(['verify', '--dest', dest, '--prefix', compression, '--all']);
      expect(verify.status, verify.stdout + verify.stderr).toBe(0);
      const list = cli(['list', '--dest', dest, '--prefix', compression, '--json']);
      expect(list.status, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout)).toHaveLength(1);
    }
    expect(snapshotTree(source)).toEqual(before);
    expect(fs.readdirSync(dest).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
