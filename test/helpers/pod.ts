import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Job } from 'kubernetes-models/batch/v1';
import { repoRoot } from './cli.js';
import type { ImageConfig } from './dockerfile.js';
import { helmBinaries, runHelm } from './helm.js';
import type { ImageFilesystem } from './image.js';
import { type Manifest, parseManifests } from '../synth/rendered-chart.js';

/**
 * Rendered chart objects and a kubelet stand-in: runs one container of a rendered pod spec on
 * this machine, unchanged (the image's entrypoint plus the container's args and env, its volume
 * mounts at their mountPaths, read-only root filesystem, user and capabilities), inside a private
 * mount namespace built by test/e2e/run-in-pod.sh. Needs root (for mounts) and util-linux.
 */

export const CHART_DIR = path.join(repoRoot, 'charts/pvc-backup');
export const RUN_IN_POD = path.join(repoRoot, 'test/e2e/run-in-pod.sh');

export type { Manifest };

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
}

export interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: unknown[];
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
  volumeMounts?: VolumeMount[];
  securityContext?: {
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    runAsUser?: number;
    runAsGroup?: number;
    capabilities?: { add?: string[]; drop?: string[] };
  };
  workingDir?: string;
}

export interface Volume {
  name: string;
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
  emptyDir?: { medium?: string; sizeLimit?: string };
  [other: string]: unknown;
}

export interface PodSecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  fsGroup?: number;
  fsGroupChangePolicy?: 'Always' | 'OnRootMismatch';
  supplementalGroups?: number[];
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  restartPolicy?: string;
  securityContext?: PodSecurityContext;
}

/** `helm template RELEASE charts/pvc-backup ARGS...` with Helm 3, parsed. */
export function helmTemplate(release: string, args: string[]): Manifest[] {
  const helm = helmBinaries().find((h) => h.major === 3)!;
  const result = runHelm(helm, ['template', release, CHART_DIR, ...args]);
  if (result.code !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return parseManifests(result.stdout);
}

export function findManifest(manifests: Manifest[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind}/${name} among: ${manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ')}`);
  return found;
}

/**
 * What `kubectl create job NAME --from=cronjob/X` creates: a Job whose spec is exactly the
 * CronJob's jobTemplate.spec, with the template's labels and annotations plus the
 * cronjob.kubernetes.io/instantiate=manual annotation (kubectl's createJobFromCronJob).
 */
export function jobFromCronJob(cronJob: Manifest, name: string): Manifest {
  if (cronJob.kind !== 'CronJob') throw new Error(`${cronJob.kind}/${cronJob.metadata.name} is not a CronJob`);
  const template = cronJob.spec.jobTemplate as { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: unknown };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      labels: template.metadata?.labels,
      annotations: { ...template.metadata?.annotations, 'cronjob.kubernetes.io/instantiate': 'manual' },
    },
    spec: structuredClone(template.spec),
  };
}

/** Validates a Job against the Kubernetes OpenAPI schema (kubernetes-models); throws on the first problem. */
export function validateJob(job: Manifest): void {
  new Job(job as any).validate();
}

export function podSpecOf(job: Manifest): PodSpec {
  if (job.kind !== 'Job') throw new Error(`${job.kind} is not a Job`);
  return job.spec.template.spec as PodSpec;
}

/** What a pod knows about itself: the downward API's source. */
export interface PodMetadata {
  name: string;
  namespace: string;
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/**
 * The metadata of a pod the Job controller makes for `job`: the template's labels plus the
 * controller's own (`batch.kubernetes.io/controller-uid` = the Job's UID, `job-name`, and their
 * legacy forms), a generated pod name.
 */
export function jobPodMetadata(job: Manifest, jobUid: string, namespace = 'default'): PodMetadata {
  const template = (job.spec.template?.metadata ?? {}) as { labels?: Record<string, string>; annotations?: Record<string, string> };
  const name = job.metadata.name;
  return {
    name: `${name}-${jobUid.slice(0, 5)}`,
    namespace,
    uid: `pod-of-${jobUid}`,
    labels: { ...template.labels, 'batch.kubernetes.io/controller-uid': jobUid, 'batch.kubernetes.io/job-name': name, 'controller-uid': jobUid, 'job-name': name },
    annotations: { ...template.annotations },
  };
}

/** A valueFrom.fieldRef resolved as the kubelet does (metadata.name/namespace/uid, metadata.labels['k'], metadata.annotations['k']). */
function fieldRefValue(variable: EnvVar, pod: PodMetadata): string {
  const fieldPath = (variable.valueFrom as { fieldRef?: { fieldPath?: string } } | undefined)?.fieldRef?.fieldPath;
  if (fieldPath === undefined) throw new Error(`env ${variable.name} uses a valueFrom other than fieldRef, which the test kubelet cannot resolve`);
  const keyed = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(fieldPath);
  if (keyed) return pod[keyed[1] as 'labels' | 'annotations'][keyed[2]!] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
  }
  throw new Error(`env ${variable.name}: fieldRef ${fieldPath} is not emulated by the test kubelet`);
}

/** The container's environment as its process sees it: image ENV, then the container's env (values and fieldRefs) on top. */
export function containerEnvironment(image: ImageConfig, container: Container, pod: PodMetadata): Record<string, string> {
  const env: Record<string, string> = { ...image.env, HOSTNAME: pod.name };
  for (const variable of container.env ?? []) {
    env[variable.name] = variable.valueFrom !== undefined ? fieldRefValue(variable, pod) : (variable.value ?? '');
  }
  return env;
}

export interface PodRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The exact command line the container ran (entrypoint + args). */
  argv: string[];
  env: Record<string, string>;
}

export interface RunPodOptions {
  job: Manifest;
  image: ImageConfig;
  imageFs: ImageFilesystem;
  /** Host directory that stands in for each PersistentVolumeClaim, by claim name. */
  claims: Record<string, string>;
  /** Scratch directory for the root filesystem and the env file (created if missing). */
  scratch: string;
  timeoutMs?: number;
  /**
   * The UID the Job was created with. Running the same manifest twice with the same UID is a
   * retry of one Job (a second pod); another UID is the Job deleted and created again.
   * Default: one fixed UID per Job name.
   */
  jobUid?: string;
}

/** Kubernetes capability names as setpriv wants them (DAC_READ_SEARCH -> dac_read_search). */
function capabilityNames(container: Container): string[] {
  const drop = container.securityContext?.capabilities?.drop ?? [];
  const add = container.securityContext?.capabilities?.add ?? [];
  if (!drop.includes('ALL')) throw new Error(`container ${container.name} does not drop ALL capabilities; the test kubelet only emulates drop ALL + add`);
  return add.map((c) => c.replace(/^CAP_/, '').toLowerCase());
}

/** Is this machine able to run pods: root, unshare, setpriv and a working private mount namespace? Returns why not. */
export function podRunnerUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the chart/runner end-to-end test needs root (mount namespaces and bind mounts); run it as root, as CI does';
  for (const tool of ['unshare', 'setpriv', 'chroot', 'mount']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing (util-linux / coreutils)`;
  }
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs probe "$1" && umount "$1"', 'sh', os.tmpdir()], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) return `cannot mount inside a private mount namespace here (no CAP_SYS_ADMIN?): ${probe.stderr.trim()}`;
  return undefined;
}

/**
 * Runs the Job's single container as its pod would: command = image ENTRYPOINT (the chart sets
 * no command) + the container's args, env = image ENV + container env, every volumeMount at its
 * mountPath (PVC -> the claim's host directory, with subPath and readOnly; emptyDir -> a fresh
 * tmpfs), root filesystem read-only when the container asks for it, user from the security
 * contexts (else the image's USER), capabilities = drop ALL + add. Nothing is rewritten.
 */
export function runPod(options: RunPodOptions): Promise<PodRun> {
  const { job, image, imageFs, claims } = options;
  const pod = podSpecOf(job);
  if (pod.containers.length !== 1) throw new Error(`${job.metadata.name}: expected one container`);
  const container = pod.containers[0]!;
  if (container.command !== undefined) throw new Error(`${job.metadata.name}: the container sets command; the image entrypoint would not run`);
  const argv = [...image.entrypoint, ...(container.args ?? image.cmd)];

  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const mountArgs: string[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = volumes.get(mount.name);
    if (!volume) throw new Error(`${job.metadata.name}: volumeMount ${mount.name} has no volume`);
    if (volume.persistentVolumeClaim) {
      const claimDir = claims[volume.persistentVolumeClaim.claimName];
      if (!claimDir) throw new Error(`${job.metadata.name}: no stand-in directory for claim ${volume.persistentVolumeClaim.claimName}`);
      let host = claimDir;
      if (mount.subPath) {
        host = path.join(claimDir, mount.subPath);
        fs.mkdirSync(host, { recursive: true }); // the kubelet creates a missing subPath directory
      }
      const readOnly = mount.readOnly === true || volume.persistentVolumeClaim.readOnly === true;
      mountArgs.push('--volume', `${host}:${mount.mountPath}:${readOnly ? 'ro' : 'rw'}`);
    } else if (volume.emptyDir) {
      if (mount.subPath) throw new Error(`${job.metadata.name}: subPath on an emptyDir is not emulated`);
      mountArgs.push('--tmpfs', mount.mountPath);
    } else {
      throw new Error(`${job.metadata.name}: volume ${volume.name} is neither a PVC nor an emptyDir`);
    }
  }

  const security = container.securityContext ?? {};
  const uid = security.runAsUser ?? pod.securityContext?.runAsUser ?? Number(image.user?.split(':')[0] ?? 0);
  const gid = security.runAsGroup ?? pod.securityContext?.runAsGroup ?? Number(image.user?.split(':')[1] ?? 0);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error(`cannot work out a numeric user from ${image.user}`);

  fs.mkdirSync(options.scratch, { recursive: true });
  const root = fs.mkdtempSync(path.join(options.scratch, 'rootfs-'));
  const jobUid = options.jobUid ?? `uid-${createHash('sha256').update(job.metadata.name).digest('hex').slice(0, 24)}`;
  const env = containerEnvironment(image, container, jobPodMetadata(job, jobUid));
  const envFile = path.join(options.scratch, `env-${path.basename(root)}`);
  fs.writeFileSync(envFile, Object.entries(env).map(([k, v]) => `${k}=${v}\0`).join(''));

  const scriptArgs = [
    '--root', root,
    ...imageFs.files.flatMap((f) => ['--image-file', `${f.host}:${f.path}`]),
    ...imageFs.symlinks.flatMap((l) => ['--symlink', `${l.target}:${l.path}`]),
    ...mountArgs,
    '--env-file', envFile,
    '--workdir', container.workingDir ?? image.workdir,
    '--user', `${uid}:${gid}`,
    '--caps', capabilityNames(container).join(','),
    ...(security.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []),
    ...(security.readOnlyRootFilesystem ? ['--read-only-root'] : []),
    '--',
    ...argv,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'bash', RUN_IN_POD, ...scriptArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
      timeout: options.timeoutMs ?? 60_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      fs.rmSync(envFile, { force: true });
      try {
        fs.rmdirSync(root); // empty again: everything in it lived in the namespace's tmpfs
      } catch {
        /* left for the scratch cleanup */
      }
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), argv, env });
    });
  });
}

/**
 * The ownership change the kubelet makes for a pod's fsGroup (pkg/volume/volume_linux.go,
 * SetVolumeOwnership): every file and directory of the volume gets group fsGroup and group
 * read-write (directories also group search and setgid). It is applied to no read-only volume
 * (CSI: csi_mounter.go supportsFSGroup), and with OnRootMismatch only when the volume root does
 * not already have that group and those bits. Returns the claim directories it changed.
 */
export function applyFsGroup(pod: PodSpec, claims: Record<string, string>): string[] {
  const fsGroup = pod.securityContext?.fsGroup;
  if (fsGroup === undefined) return [];
  const changed: string[] = [];
  for (const volume of pod.volumes ?? []) {
    const claim = volume.persistentVolumeClaim;
    if (!claim || claim.readOnly) continue;
    const root = claims[claim.claimName];
    if (!root) throw new Error(`no stand-in directory for claim ${claim.claimName}`);
    const top = fs.statSync(root);
    const dirMask = 0o2770;
    if (pod.securityContext?.fsGroupChangePolicy === 'OnRootMismatch' && top.gid === fsGroup && (top.mode & dirMask) === dirMask) continue;
    const visit = (file: string) => {
      const info = fs.lstatSync(file);
      fs.lchownSync(file, info.uid, fsGroup);
      if (info.isSymbolicLink()) return;
      fs.chmodSync(file, (info.mode & 0o7777) | (info.isDirectory() ? dirMask : 0o660));
      if (info.isDirectory()) for (const name of fs.readdirSync(file)) visit(path.join(file, name));
    };
    visit(root);
    changed.push(root);
  }
  return changed;
}

/** Kubernetes quantity of memory (e.g. 512Mi, 1G) in bytes, for docker run --memory. */
function memoryBytes(quantity: string | number): number {
  const match = /^([0-9.]+)([KMGTPE]i?|[kmM])?$/.exec(String(quantity));
  if (!match) throw new Error(`cannot read memory quantity ${quantity}`);
  const units: Record<string, number> = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  const unit = units[match[2] ?? ''];
  if (unit === undefined) throw new Error(`unsupported memory unit in ${quantity}`);
  return Math.round(Number(match[1]) * unit);
}

export interface DockerPodOptions {
  spec: PodSpec;
  /** The pod's name, also its hostname. */
  name: string;
  /** Host directory that stands in for each PersistentVolumeClaim, by claim name. */
  claims: Record<string, string>;
  /** What the pod knows about itself, for env from the downward API (fieldRef); none by default. */
  metadata?: PodMetadata;
}

/**
 * `docker run` arguments for the pod's one container, as the kubelet would run it: the image's
 * entrypoint (the chart sets no command) with the container's args, its env (fieldRefs resolved
 * from `metadata`), the user and groups of the security contexts (fsGroup and supplementalGroups
 * as extra groups), drop ALL and the added capabilities, no-new-privileges, a read-only root
 * filesystem, each PVC mount as a bind mount (subPath and readOnly honoured), each emptyDir as a
 * tmpfs, the memory and CPU limits, and no network (the runner needs none besides the Kubernetes
 * API for Events, which is not there: the runner warns and the run's result stands).
 */
export function dockerRunArgs({ spec, name, claims, metadata }: DockerPodOptions): string[] {
  if (spec.containers.length !== 1) throw new Error(`${name}: expected one container`);
  const container = spec.containers[0]!;
  if (container.command !== undefined) throw new Error(`${name}: the container sets command; the image entrypoint would not run`);
  if (container.envFrom !== undefined) throw new Error(`${name}: envFrom cannot be run without a cluster`);
  const security = container.securityContext ?? {};
  const podSecurity = spec.securityContext ?? {};
  const args = ['run', '--rm', '--name', `${name}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`, '--hostname', name, '--network', 'none'];

  const uid = security.runAsUser ?? podSecurity.runAsUser;
  const gid = security.runAsGroup ?? podSecurity.runAsGroup;
  if (uid !== undefined) args.push('--user', gid === undefined ? String(uid) : `${uid}:${gid}`);
  for (const group of [...(podSecurity.fsGroup === undefined ? [] : [podSecurity.fsGroup]), ...(podSecurity.supplementalGroups ?? [])]) args.push('--group-add', String(group));

  const capabilities = security.capabilities ?? {};
  for (const cap of capabilities.drop ?? []) args.push('--cap-drop', cap);
  for (const cap of capabilities.add ?? []) args.push('--cap-add', cap);
  if (security.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');
  if (security.readOnlyRootFilesystem) args.push('--read-only');

  const limits = container.resources?.limits ?? {};
  if (limits.memory !== undefined) args.push('--memory', String(memoryBytes(limits.memory)));
  if (limits.cpu !== undefined) args.push('--cpus', String(limits.cpu).endsWith('m') ? String(Number.parseInt(String(limits.cpu), 10) / 1000) : String(limits.cpu));

  for (const variable of container.env ?? []) {
    if (variable.valueFrom !== undefined && metadata === undefined) throw new Error(`${name}: env ${variable.name} uses valueFrom; pass the pod's metadata to resolve it`);
    args.push('--env', `${variable.name}=${variable.valueFrom !== undefined ? fieldRefValue(variable, metadata!) : (variable.value ?? '')}`);
  }

  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  for (const mount of container.volumeMounts ?? []) {
    const volume = volumes.get(mount.name);
    if (!volume) throw new Error(`${name}: volumeMount ${mount.name} has no volume`);
    if (volume.persistentVolumeClaim) {
      const claimDir = claims[volume.persistentVolumeClaim.claimName];
      if (!claimDir) throw new Error(`${name}: no stand-in directory for claim ${volume.persistentVolumeClaim.claimName}`);
      let host = claimDir;
      if (mount.subPath) {
        host = path.join(claimDir, mount.subPath);
        fs.mkdirSync(host, { recursive: true }); // the kubelet creates a missing subPath directory
      }
      const readOnly = mount.readOnly === true || volume.persistentVolumeClaim.readOnly === true;
      args.push('--mount', `type=bind,source=${host},target=${mount.mountPath}${readOnly ? ',readonly' : ''}`);
    } else if (volume.emptyDir) {
      args.push('--tmpfs', `${mount.mountPath}:rw,mode=1777`);
    } else {
      throw new Error(`${name}: volume ${volume.name} is neither a PVC nor an emptyDir`);
    }
  }
  args.push(container.image, ...(container.args ?? []));
  return args;
}

export interface DockerRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The docker run command line, for messages. */
  command: string[];
}

/**
 * Runs `docker ARGS` (the CLI in PVC_BACKUP_DOCKER, else docker on PATH; scripts/test-image.sh
 * picks one that builds with BuildKit), collecting its output; never rejects for a non-zero exit.
 */
export function docker(args: string[], timeoutMs = 120_000): Promise<DockerRun> {
  return new Promise((resolve, reject) => {
    const cli = process.env.PVC_BACKUP_DOCKER || 'docker';
    const child = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, env: { ...process.env, DOCKER_BUILDKIT: '1' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), command: [cli, ...args] }));
  });
}

/** Runs the pod's container in Docker after the kubelet's fsGroup ownership change. */
export function runPodInDocker(options: DockerPodOptions, timeoutMs?: number): Promise<DockerRun> {
  applyFsGroup(options.spec, options.claims);
  return docker(dockerRunArgs(options), timeoutMs);
}

/**
 * One container of a Job's pod (an init container too) as the Job's only container, so runPod
 * runs it with the pod's volumes and security contexts; init containers run in order, each after
 * the one before it succeeded, so a test runs them one by one in that order.
 */
export function jobOfContainer(job: Manifest, name: string): Manifest {
  const pod = podSpecOf(job);
  const container = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === name);
  if (!container) throw new Error(`${job.metadata.name} has no container ${name}`);
  const template = job.spec.template as { spec: Record<string, unknown> };
  const { initContainers: _init, ...spec } = template.spec;
  return { ...job, spec: { ...job.spec, template: { ...template, spec: { ...spec, containers: [container] } } } };
}
