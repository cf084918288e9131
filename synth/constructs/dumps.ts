import type { ApiObject } from 'cdk8s';
import { DUMPS_MOUNT_PATH, dumpContainerCommand } from '../../runner/consistency/dumps.js';
import { HelmPlaceholders, setFields, toYamlLines } from '../helm.js';
import { V } from '../values.js';
import { MOUNT_PATHS } from './runner-pod.js';

/**
 * backup.preBackup in a backup pod template: one init container per dump, each running the dump
 * wrapper (runner/consistency/dump-wrapper.ts) around the user's command, all writing into one
 * emptyDir mounted at DUMPS_MOUNT_PATH, which the runner container mounts read-only. The runner
 * gets `--dump NAME` per dump (backupArgs) and refuses to archive when one failed or is empty.
 */
export function templateDumps(apiObject: ApiObject, podTemplate: string): void {
  const helm = HelmPlaceholders.of(apiObject);
  const pod = `${podTemplate}/spec`;
  const preBackup = V.backup.preBackup.expr;
  const initContainers = helm.lines((at) => [
    `{{- with ${preBackup} }}`,
    `${at.key}:`,
    '{{- range . }}',
    '  - name: {{ printf "dump-%s" .name | quote }}',
    '    image: {{ .image | quote }}',
    '    command:',
    ...toYamlLines(dumpContainerCommand(), 6),
    '    args:',
    `      {{- toYaml (concat .command (.args | default list)) | nindent ${at.indent + 6} }}`,
    '    env:',
    '      - name: PVC_BACKUP_DUMP_NAME',
    '        value: {{ .name | quote }}',
    '      - name: PVC_BACKUP_DUMP_DIR',
    `        value: {{ printf "${DUMPS_MOUNT_PATH}/%s" .name | quote }}`,
    '      {{- with .env }}',
    `      {{- toYaml . | nindent ${at.indent + 6} }}`,
    '      {{- end }}',
    '    {{- with .envFrom }}',
    '    envFrom:',
    `      {{- toYaml . | nindent ${at.indent + 6} }}`,
    '    {{- end }}',
    '    {{- with .resources }}',
    '    resources:',
    `      {{- toYaml . | nindent ${at.indent + 6} }}`,
    '    {{- end }}',
    // The shared securityContext, without the capabilities the runner adds to read every file.
    '    {{- with $.Values.securityContext }}',
    '    securityContext:',
    `      {{- toYaml . | nindent ${at.indent + 6} }}`,
    '    {{- end }}',
    '    volumeMounts:',
    ...toYamlLines(
      [
        { name: 'dumps', mountPath: DUMPS_MOUNT_PATH },
        { name: 'tmp', mountPath: MOUNT_PATHS.tmp },
      ],
      6,
    ),
    '{{- end }}',
    '{{- end }}',
  ]);
  setFields(apiObject, {
    [`${pod}/initContainers`]: initContainers,
    [`${pod}/volumes/-`]: helm.itemsWhen(V.backup.hasDumps, [{ name: 'dumps', emptyDir: {} }]),
    [`${pod}/containers/0/volumeMounts/-`]: helm.itemsWhen(V.backup.hasDumps, [{ name: 'dumps', mountPath: DUMPS_MOUNT_PATH, readOnly: true }]),
  });
}
