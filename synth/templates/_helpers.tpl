{{/*
Hand-written helpers of the pvc-backup chart (copied from synth/templates by npm run synth).
Helpers that take arguments get a dict: "context" is the root context (.), the rest are named.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "pvc-backup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The resource name prefix ("F" in the docs): fullnameOverride, or the release name plus the chart
name unless the release name already contains it. 63 characters at most.
*/}}
{{- define "pvc-backup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "pvc-backup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* CronJob names are limited to 52 characters (the Jobs they create append 11). */}}
{{- define "pvc-backup.backupCronJobName" -}}
{{- include "pvc-backup.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "pvc-backup.verifyCronJobName" -}}
{{- printf "%s-verify" (include "pvc-backup.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}

{{/* The backup claim: storage.existingClaim, or the one the chart creates. */}}
{{- define "pvc-backup.backupClaimName" -}}
{{- .Values.storage.existingClaim | default (include "pvc-backup.fullname" .) }}
{{- end }}

{{- define "pvc-backup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pvc-backup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pvc-backup.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The archive name prefix: backup.prefix, or the release name. */}}
{{- define "pvc-backup.prefix" -}}
{{- .Values.backup.prefix | default .Release.Name }}
{{- end }}

{{/* Labels of every resource, quoted so that a release named 2024 stays a string. Args: context, component (optional). */}}
{{- define "pvc-backup.labels" -}}
helm.sh/chart: {{ include "pvc-backup.chart" .context | quote }}
app.kubernetes.io/name: {{ include "pvc-backup.name" .context | quote }}
app.kubernetes.io/instance: {{ .context.Release.Name | quote }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service | quote }}
{{- with .component }}
app.kubernetes.io/component: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Labels of every pod: the resource labels plus podLabels. Args: context, component. */}}
{{- define "pvc-backup.podLabels" -}}
{{- $labels := include "pvc-backup.labels" . | fromYaml }}
{{- toYaml (merge $labels (deepCopy .context.Values.podLabels)) }}
{{- end }}

{{/*
The pod affinity: the affinity value, plus (when colocate is true and source.colocateWith is set)
a required podAffinity term that puts the pod on the node of the application's pod, where a
ReadWriteOnce source volume is attached. Args: context, colocate.
*/}}
{{- define "pvc-backup.affinity" -}}
{{- $affinity := deepCopy (.context.Values.affinity | default dict) }}
{{- if and .colocate .context.Values.source.colocateWith }}
{{- $podAffinity := get $affinity "podAffinity" | default dict }}
{{- $required := get $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" | default list }}
{{- $term := dict "labelSelector" (dict "matchLabels" .context.Values.source.colocateWith) "topologyKey" "kubernetes.io/hostname" }}
{{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append $required $term) }}
{{- $_ := set $affinity "podAffinity" $podAffinity }}
{{- end }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- end }}
{{- end }}

{{/*
A container securityContext: the securityContext value with the component's capabilities added
to capabilities.add. Args: context, add.
*/}}
{{- define "pvc-backup.containerSecurityContext" -}}
{{- $securityContext := deepCopy .context.Values.securityContext }}
{{- if .add }}
{{- $capabilities := get $securityContext "capabilities" | default dict }}
{{- $add := concat (get $capabilities "add" | default list) .add | uniq }}
{{- $_ := set $capabilities "add" $add }}
{{- $_ := set $securityContext "capabilities" $capabilities }}
{{- end }}
{{- if $securityContext }}
{{- toYaml $securityContext }}
{{- end }}
{{- end }}

{{/* Annotations of the backup claim. Args: context. */}}
{{- define "pvc-backup.backupClaimAnnotations" -}}
{{- $annotations := deepCopy .context.Values.storage.annotations }}
{{- if .context.Values.storage.keepOnUninstall }}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" }}
{{- end }}
{{- if $annotations }}
{{- toYaml $annotations }}
{{- end }}
{{- end }}

{{/* The claim restored into: restore.targetClaim, or the source claim. */}}
{{- define "pvc-backup.restoreTargetClaim" -}}
{{- .Values.restore.targetClaim | default .Values.source.claimName }}
{{- end }}

{{/* The directory of the target restored into: restore.targetSubPath, or (when null) source.subPath. */}}
{{- define "pvc-backup.restoreTargetSubPath" -}}
{{- if kindIs "invalid" .Values.restore.targetSubPath }}
{{- .Values.source.subPath }}
{{- else }}
{{- .Values.restore.targetSubPath }}
{{- end }}
{{- end }}

{{/*
The restore request id: 8 hex characters of a hash over everything that makes a restore request
distinct. The same request always gets the same id (and Job name); the runner records completed
ids in the backup directory and never runs one twice.
*/}}
{{- define "pvc-backup.restoreRequestId" -}}
{{- $request := list
      (include "pvc-backup.prefix" .)
      .Values.restore.archive
      .Values.restore.mode
      (include "pvc-backup.restoreTargetClaim" .)
      (include "pvc-backup.restoreTargetSubPath" .)
      .Values.restore.nonce }}
{{- $request | toJson | sha256sum | trunc 8 }}
{{- end }}

{{/* The restore Job name, 63 characters at most. */}}
{{- define "pvc-backup.restoreJobName" -}}
{{- printf "%s-restore-%s" (include "pvc-backup.fullname" . | trunc 46 | trimSuffix "-") (include "pvc-backup.restoreRequestId" .) }}
{{- end }}

{{/* Annotations of the restore Job: the request, readable in kubectl describe. Args: context. */}}
{{- define "pvc-backup.restoreAnnotations" -}}
{{- with .context }}
pvc-backup.io/restore-archive: {{ .Values.restore.archive | quote }}
pvc-backup.io/restore-mode: {{ .Values.restore.mode | quote }}
pvc-backup.io/restore-target: {{ printf "%s/%s" (include "pvc-backup.restoreTargetClaim" .) (include "pvc-backup.restoreTargetSubPath" .) | trimSuffix "/" | quote }}
pvc-backup.io/restore-request-id: {{ include "pvc-backup.restoreRequestId" . | quote }}
{{- end }}
{{- end }}
