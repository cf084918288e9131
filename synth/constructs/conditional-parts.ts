import { HelmPlaceholders, toYamlLines, type HelmValue, type TemplateFile } from '../helm.js';
import { V, type PodKind } from '../values.js';

/**
 * Parts of a runner pod that exist only for some values: the backup volume (not in a bucket-only
 * install), the age identity Secret (only with encryption.existingSecret) and an init container.
 * cdk8s writes every part it is given, so after synthesis each of these is wrapped in an `if`:
 * the volume, every mount of it, and the init container as a whole.
 */

/** Volume names whose parts are written from values. */
export const BACKUP_VOLUME = 'backup';
export const IDENTITY_VOLUME = 'age-identity';
/** Where the age identity Secret is mounted, and the one file in it (the key encryption.identityKey, renamed). */
export const IDENTITY_DIR = '/etc/pvc-backup/age';
export const IDENTITY_FILE = `${IDENTITY_DIR}/identity.txt`;

interface VolumePart {
  when: HelmValue;
  /** The volume as it is rendered, when it is not what cdk8s wrote. */
  volume?: (pod: PodKind, helm: HelmPlaceholders) => Record<string, unknown>;
}

const VOLUME_PARTS: Record<string, VolumePart> = {
  [BACKUP_VOLUME]: { when: V.storage.enabled },
  [IDENTITY_VOLUME]: {
    when: V.encryption.hasIdentity,
    // Only the identity key, under a fixed name, so --age-identity-file never depends on values.
    volume: (pod, helm) => ({
      name: IDENTITY_VOLUME,
      secret: {
        secretName: helm.field(V.encryption.secretName),
        items: [{ key: helm.field(V.encryption.identityKey), path: IDENTITY_FILE.slice(IDENTITY_DIR.length + 1) }],
        defaultMode: helm.field(V.encryption.fileMode(pod)),
      },
    }),
  },
};

export interface ConditionalPartsOptions {
  pod: PodKind;
  /** The condition of the pod's init container, when it has one. */
  initContainerWhen?: HelmValue;
}

/** Wraps the conditional parts of the pod template at `podTemplate` (a JSON pointer, "" for a Pod). */
export function templateConditionalParts(file: TemplateFile, podTemplate: string, options: ConditionalPartsOptions): void {
  const helm = HelmPlaceholders.of(file);
  file.addTransform((manifest) => {
    const spec = (podTemplate === '' ? manifest : pointerGet(manifest, podTemplate)).spec as PodSpecJson;
    spec.volumes = spec.volumes?.map((volume) => {
      const part = isNamed(volume) ? VOLUME_PARTS[volume.name] : undefined;
      return part ? conditionalItem(helm, part.when, part.volume?.(options.pod, helm) ?? volume) : volume;
    });
    // Init containers written from values as a whole (backup.preBackup) are a placeholder, not a list.
    const initContainers = Array.isArray(spec.initContainers) ? spec.initContainers : [];
    for (const container of [...spec.containers, ...initContainers]) {
      container.volumeMounts = container.volumeMounts?.map((mount) => {
        const part = isNamed(mount) ? VOLUME_PARTS[mount.name] : undefined;
        return part ? conditionalItem(helm, part.when, mount) : mount;
      });
    }
    const { initContainerWhen } = options;
    if (initContainerWhen && Array.isArray(spec.initContainers)) {
      (spec as { initContainers: unknown }).initContainers = helm.lines((at) => [`{{- if ${initContainerWhen.expr} }}`, `${at.key}:`, ...toYamlLines(initContainers, 2), '{{- end }}']);
    }
    return manifest;
  });
}

interface PodSpecJson {
  volumes?: unknown[];
  containers: ContainerJson[];
  initContainers?: ContainerJson[];
}

interface ContainerJson {
  volumeMounts?: unknown[];
}

function isNamed(item: unknown): item is { name: string } {
  return typeof item === 'object' && item !== null && typeof (item as { name?: unknown }).name === 'string';
}

/** A list item written only while `when` holds. */
function conditionalItem(helm: HelmPlaceholders, when: HelmValue, item: unknown): string {
  return helm.lines((at) => {
    if (!at.listItem) throw new Error(`a conditional item must stand in a list: ${JSON.stringify(item)}`);
    return [`{{- if ${when.expr} }}`, ...toYamlLines([item], 0), '{{- end }}'];
  });
}

function pointerGet(value: Record<string, unknown>, pointer: string): Record<string, any> {
  return pointer
    .split('/')
    .slice(1)
    .reduce<any>((node, key) => node[key], value);
}
