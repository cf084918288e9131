import type { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile, type HelmValue } from '../helm.js';
import { POD_COMPONENT, V, type PodKind } from '../values.js';
import { templateMonitoring } from './monitoring.js';
import { BACKUP_VOLUME, IDENTITY_DIR, IDENTITY_VOLUME, templateConditionalParts } from './conditional-parts.js';

/** Where the runner pods mount their volumes; the runner's flags refer to these paths. */
export const MOUNT_PATHS = {
  source: '/data',
  target: '/data',
  backup: '/backup',
  tmp: '/tmp',
  /** The age identity Secret (encryption.existingSecret), read-only. */
  identity: IDENTITY_DIR,
} as const;

/** A child construct created once per scope, so that several containers of a pod can share a volume. */
function once<T>(scope: Construct, id: string, make: () => T): T {
  const existing = scope.node.tryFindChild(id) as unknown as T | undefined;
  return existing ?? make();
}

/** The runner's log format in every pod (one JSON object per line, for log collectors). */
export const RUNNER_ENV = { PVC_BACKUP_LOG_FORMAT: 'json' } as const;

/**
 * The source claim, read-only (at the volume too, so no mount can write to it), in a pod
 * template's volumes and its runner container's mounts. Left out without source.claimName (a
 * backup of pre-backup dumps only).
 */
export function templateSourceMount(apiObject: ApiObject, podTemplate: string): void {
  const helm = HelmPlaceholders.of(apiObject);
  setFields(apiObject, {
    [`${podTemplate}/spec/volumes/-`]: helm.itemsWhen(V.source.given, [{ name: 'source', persistentVolumeClaim: { claimName: helm.field(V.source.claimName), readOnly: true } }]),
    [`${podTemplate}/spec/containers/0/volumeMounts/-`]: helm.itemsWhen(V.source.given, [
      { name: 'source', mountPath: MOUNT_PATHS.source, readOnly: true, subPath: helm.field(V.source.subPath) },
    ]),
  });
}

/** The claim holding the archives, read-write in every pod. */
export function backupMount(scope: Construct): kplus.VolumeMount {
  const helm = HelmPlaceholders.of(scope);
  const volume = once(scope, 'BackupVolume', () => {
    const claim = kplus.PersistentVolumeClaim.fromClaimName(scope, 'BackupClaim', helm.field(V.names.backupClaim));
    return kplus.Volume.fromPersistentVolumeClaim(scope, 'BackupVolume', claim, { name: BACKUP_VOLUME });
  });
  return { volume, path: MOUNT_PATHS.backup };
}

/**
 * The age identity, read-only. The volume here only names it: templateRunnerPod writes the Secret
 * volume (its key and file mode come from values) and leaves it out without encryption.existingSecret.
 */
export function identityMount(scope: Construct): kplus.VolumeMount {
  const volume = once(scope, 'IdentityVolume', () => kplus.Volume.fromEmptyDir(scope, 'IdentityVolume', IDENTITY_VOLUME));
  return { volume, path: MOUNT_PATHS.identity, readOnly: true };
}

/** The claim a restore writes into, read-write. */
export function targetMount(scope: Construct): kplus.VolumeMount {
  const helm = HelmPlaceholders.of(scope);
  const claim = kplus.PersistentVolumeClaim.fromClaimName(scope, 'TargetClaim', helm.field(V.restore.targetClaim));
  const volume = kplus.Volume.fromPersistentVolumeClaim(scope, 'TargetVolume', claim, { name: 'target' });
  return { volume, path: MOUNT_PATHS.target, subPath: helm.field(V.restore.targetSubPath) };
}

export interface RunnerContainerProps {
  /** The container's name: the pod kind, or another name for a second runner container. */
  name: PodKind | `${PodKind}-${string}`;
  /** The runner's arguments; the image's entrypoint is the pvc-backup CLI, so no command is set. */
  args: string[];
  mounts: kplus.VolumeMount[];
  /** Variables of this component beside RUNNER_ENV (e.g. from the downward API). */
  env?: Record<string, kplus.EnvValue>;
}

/** The one container of a runner pod. Its read-only root filesystem gets a writable /tmp. */
export function runnerContainer(scope: Construct, props: RunnerContainerProps): kplus.ContainerProps {
  const helm = HelmPlaceholders.of(scope);
  const tmp = once(scope, 'TmpVolume', () => kplus.Volume.fromEmptyDir(scope, 'TmpVolume', 'tmp'));
  return {
    name: props.name,
    image: helm.field(V.container.image),
    args: props.args,
    envVariables: { ...Object.fromEntries(Object.entries(RUNNER_ENV).map(([name, value]) => [name, kplus.EnvValue.fromValue(value)])), ...props.env },
    volumeMounts: [...props.mounts, { volume: tmp, path: MOUNT_PATHS.tmp }],
  };
}

export interface RunnerPodOptions {
  pod: PodKind;
  /** Whether source.colocateWith applies (pods that mount the source volume). */
  colocate: boolean;
  /**
   * Whether the pod reports its run (metrics, Events, notifications): then it gets the
   * ServiceAccount token while events.enabled, and the notification URLs. The bind Job and the
   * helm test pod report nothing and never get the token.
   */
  reports: boolean;
  /** The pod's annotations; podAnnotations by default. */
  annotations?: HelmValue;
  /**
   * The condition of the pod's one init container (a runner container too, with the same
   * settings), which is left out while it is false.
   */
  initContainerWhen?: HelmValue;
}

/**
 * Fills the parts of a runner pod that come from values, replacing what cdk8s-plus generated
 * there (its default labels, security contexts and resources). `podTemplate` is the JSON pointer
 * of the pod template inside `apiObject` ("" for a Pod). Every runner pod gets its settings here,
 * so a value that applies to all of them is added once, in this function.
 */
export function templateRunnerPod(apiObject: ApiObject, podTemplate: string, options: RunnerPodOptions): void {
  const helm = HelmPlaceholders.of(apiObject);
  const { pod: kind } = options;
  const pod = `${podTemplate}/spec`;
  setFields(apiObject, {
    [`${podTemplate}/metadata/labels`]: helm.field(V.pod.labels(kind)),
    [`${podTemplate}/metadata/annotations`]: helm.field(options.annotations ?? V.pod.annotations),
    [`${pod}/imagePullSecrets`]: helm.field(V.pod.imagePullSecrets),
    [`${pod}/securityContext`]: helm.field(V.pod.securityContext(kind)),
    [`${pod}/nodeSelector`]: helm.field(V.pod.nodeSelector(kind)),
    [`${pod}/tolerations`]: helm.field(V.pod.tolerations(kind)),
    [`${pod}/affinity`]: helm.field(V.pod.affinity(kind, options.colocate)),
    [`${pod}/priorityClassName`]: helm.field(V.pod.priorityClassName),
    [`${pod}/runtimeClassName`]: helm.field(V.pod.runtimeClassName),
    [`${pod}/terminationGracePeriodSeconds`]: helm.field(V.pod.terminationGracePeriodSeconds),
    [`${pod}/volumes/-`]: helm.appendItems(V.pod.extraVolumes),
  });
  const containers = [`${pod}/containers/0`, ...(options.initContainerWhen ? [`${pod}/initContainers/0`] : [])];
  for (const container of containers) {
    setFields(apiObject, {
      [`${container}/imagePullPolicy`]: helm.field(V.container.imagePullPolicy),
      [`${container}/resources`]: helm.field(V.container.resources(kind)),
      [`${container}/securityContext`]: helm.field(V.container.securityContext(kind)),
      [`${container}/env/-`]: helm.appendItems(V.container.extraEnv),
      [`${container}/envFrom`]: helm.field(V.container.extraEnvFrom),
      [`${container}/volumeMounts/-`]: helm.appendItems(V.container.extraVolumeMounts),
    });
  }
  if (options.reports) templateMonitoring(apiObject, podTemplate, POD_COMPONENT[kind], containers);
  templateConditionalParts(TemplateFile.ofConstruct(apiObject), podTemplate, { pod: kind, initContainerWhen: options.initContainerWhen });
}

/** Metadata every resource of the chart gets: its namespace, labels and annotations. */
export function resourceMetadata(apiObject: ApiObject, labels: HelmValue, annotations: HelmValue = V.annotations): void {
  const helm = HelmPlaceholders.of(apiObject);
  setFields(apiObject, {
    '/metadata/namespace': helm.field(V.namespace),
    '/metadata/labels': helm.field(labels),
    '/metadata/annotations': helm.field(annotations),
  });
}
