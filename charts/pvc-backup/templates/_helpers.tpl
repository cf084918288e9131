{{/*
Hand-written helpers of the pvc-backup chart (copied from synth/templates by npm run synth).
Helpers that take arguments get a dict: "context" is the root context (.), the rest are named.
"component" is the component whose settings a pod uses: backup (also the bind Job), verify (also
the helm test and list pods) or restore.
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

{{/* The namespace of every resource: namespaceOverride, or the release namespace. */}}
{{- define "pvc-backup.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "pvc-backup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* CronJob names are limited to 52 characters (the Jobs they create append 11); a source of sources appends "-" and its name. */}}
{{- define "pvc-backup.backupCronJobName" -}}
{{- with get . "SourceName" }}
{{- printf "%s-%s" (include "pvc-backup.fullname" $ | trunc (int (sub 51 (len .))) | trimSuffix "-") . }}
{{- else }}
{{- include "pvc-backup.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "pvc-backup.verifyCronJobName" -}}
{{- printf "%s-verify" (include "pvc-backup.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}

{{/* The helm test Pod. */}}
{{- define "pvc-backup.testPodName" -}}
{{- printf "%s-test" (include "pvc-backup.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{/*
The bind Job: its name ends in a hash of the values and chart version, so an upgrade that changes
anything replaces the Job (whose pod template is immutable) instead of failing to patch it, and an
upgrade that changes nothing leaves it alone.
*/}}
{{- define "pvc-backup.bindJobName" -}}
{{- printf "%s-bind-%s" (include "pvc-backup.fullname" . | trunc 49 | trimSuffix "-") (list .Values .Chart.Version | toJson | sha256sum | trunc 8) }}
{{- end }}

{{/* The backup claim: storage.existingClaim, or the one the chart creates. */}}
{{- define "pvc-backup.backupClaimName" -}}
{{- .Values.storage.existingClaim | default (include "pvc-backup.fullname" .) }}
{{- end }}

{{/*
The backup claim's storage class as a quoted YAML scalar, or nothing (the cluster's default class):
storage.storageClassName when set (not null), else global.storageClass ("-" meaning no class, "").
*/}}
{{- define "pvc-backup.storageClassName" -}}
{{- if not (kindIs "invalid" .Values.storage.storageClassName) }}
{{- .Values.storage.storageClassName | quote }}
{{- else if (.Values.global).storageClass }}
{{- ternary "" .Values.global.storageClass (eq .Values.global.storageClass "-") | quote }}
{{- end }}
{{- end }}

{{- define "pvc-backup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pvc-backup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: global.imageRegistry/, image.repository, :image.tag (default: the chart's appVersion). */}}
{{- define "pvc-backup.image" -}}
{{- $registry := (.Values.global).imageRegistry | default "" | trimSuffix "/" }}
{{- $repository := .Values.image.repository }}
{{- if $registry }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* imagePullSecrets plus global.imagePullSecrets, names or {name: ...}, as a list of {name: ...}. Args: context. */}}
{{- define "pvc-backup.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat ((.context.Values.global).imagePullSecrets | default list) .context.Values.imagePullSecrets }}
{{- $name := ternary . (get (kindIs "map" . | ternary . dict) "name") (kindIs "string" .) }}
{{- $names = append $names $name }}
{{- end }}
{{- $secrets := list }}
{{- range $names | uniq }}
{{- $secrets = append $secrets (dict "name" .) }}
{{- end }}
{{- if $secrets }}
{{- toYaml $secrets }}
{{- end }}
{{- end }}

{{/* The archive name prefix: backup.prefix, or the release name. */}}
{{- define "pvc-backup.prefix" -}}
{{- .Values.backup.prefix | default .Release.Name }}
{{- end }}

{{/* Labels of every resource: commonLabels, then the chart's own (quoted, so that a release named 2024 stays a string). Args: context, component (optional). */}}
{{- define "pvc-backup.labels" -}}
{{- $labels := deepCopy (.context.Values.commonLabels | default dict) }}
{{- $_ := set $labels "helm.sh/chart" (include "pvc-backup.chart" .context) }}
{{- $_ := set $labels "app.kubernetes.io/name" (include "pvc-backup.name" .context) }}
{{- $_ := set $labels "app.kubernetes.io/instance" .context.Release.Name }}
{{- $_ := set $labels "app.kubernetes.io/version" .context.Chart.AppVersion }}
{{- $_ := set $labels "app.kubernetes.io/managed-by" .context.Release.Service }}
{{- with .component }}
{{- $_ := set $labels "app.kubernetes.io/component" . }}
{{- end }}
{{- range $key, $value := $labels }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Labels of every pod: podLabels, then the resource labels. Args: context, component. */}}
{{- define "pvc-backup.podLabels" -}}
{{- $labels := include "pvc-backup.labels" . | fromYaml }}
{{- toYaml (merge $labels (deepCopy .context.Values.podLabels)) }}
{{- end }}

{{/* Annotations of a resource: commonAnnotations plus the given ones. Args: context, extra (optional dict). */}}
{{- define "pvc-backup.annotations" -}}
{{- $annotations := merge (deepCopy (.extra | default dict)) (deepCopy .context.Values.commonAnnotations) }}
{{- if $annotations }}
{{- toYaml $annotations }}
{{- end }}
{{- end }}

{{/* The component's own setting KEY, or the shared one while the component's is null. Args: context, component, key. */}}
{{- define "pvc-backup.componentValue" -}}
{{- $own := index .context.Values .component .key }}
{{- toYaml (ternary (index .context.Values .key) $own (kindIs "invalid" $own)) }}
{{- end }}

{{/*
The pod affinity: the component's affinity (or affinity), plus (when colocate is true and
source.colocateWith is set) a required podAffinity term that puts the pod on the node of the
application's pod, where a ReadWriteOnce source volume is attached. Args: context, component, colocate.
*/}}
{{- define "pvc-backup.affinity" -}}
{{- $affinity := include "pvc-backup.componentValue" (dict "context" .context "component" .component "key" "affinity") | fromYaml | default dict }}
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
The pod securityContext: the security profile's, with podSecurityContext merged over it.
restricted: nonRoot's uid and gid; pods that mount the application's volume read-only or not at
all (all but restore) also get that gid as fsGroup, so the kubelet makes the backup claim
group-writable. Kubernetes applies no fsGroup to a read-only volume, so the application's volume
is never re-owned. Args: context, component.
*/}}
{{- define "pvc-backup.podSecurityContext" -}}
{{- $values := .context.Values }}
{{- $profile := dict "runAsUser" 0 "runAsGroup" 0 "runAsNonRoot" false "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- if eq $values.securityProfile "restricted" }}
{{- $profile = dict "runAsUser" ($values.nonRoot.runAsUser | int64) "runAsGroup" ($values.nonRoot.runAsGroup | int64) "runAsNonRoot" true "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- if ne .component "restore" }}
{{- $_ := set $profile "fsGroup" ($values.nonRoot.runAsGroup | int64) }}
{{- $_ := set $profile "fsGroupChangePolicy" "OnRootMismatch" }}
{{- end }}
{{- end }}
{{- toYaml (mergeOverwrite $profile (deepCopy $values.podSecurityContext)) }}
{{- end }}

{{/*
The capabilities a component adds after dropping ALL: <component>.addCapabilities, or (while null)
the security profile's. Baseline: backup DAC_OVERRIDE (read every file; the source is mounted
read-only), restore CHOWN DAC_OVERRIDE FOWNER FSETID, verify none. Restricted: none. Args: context, component.
*/}}
{{- define "pvc-backup.capabilities" -}}
{{- $own := index .context.Values .component "addCapabilities" }}
{{- $profile := dict "backup" (list "DAC_OVERRIDE") "restore" (list "CHOWN" "DAC_OVERRIDE" "FOWNER" "FSETID") "verify" list }}
{{- $add := ternary (ternary (get $profile .component) list (eq .context.Values.securityProfile "baseline")) $own (kindIs "invalid" $own) }}
{{- toYaml (dict "add" $add) }}
{{- end }}

{{/* A container securityContext: securityContext with the component's capabilities added to capabilities.add. Args: context, component. */}}
{{- define "pvc-backup.containerSecurityContext" -}}
{{- $securityContext := deepCopy .context.Values.securityContext }}
{{- $add := (include "pvc-backup.capabilities" . | fromYaml).add }}
{{- if $add }}
{{- $capabilities := get $securityContext "capabilities" | default dict }}
{{- $_ := set $capabilities "add" (concat (get $capabilities "add" | default list) $add | uniq) }}
{{- $_ := set $securityContext "capabilities" $capabilities }}
{{- end }}
{{- if $securityContext }}
{{- toYaml $securityContext }}
{{- end }}
{{- end }}

{{/*
The Pod Security Standard level (restricted, baseline or privileged) a component's pods meet,
by the published rules for every field the chart lets values set (pod and container security
contexts, extra volumes, AppArmor annotations; version 1.28). Args: context, component.
*/}}
{{- define "pvc-backup.securityLevel" -}}
{{- $pod := include "pvc-backup.podSecurityContext" . | fromYaml }}
{{- $container := include "pvc-backup.containerSecurityContext" . | fromYaml }}
{{- $baseline := true }}
{{- $restricted := true }}
{{- $capabilities := $container.capabilities | default dict }}
{{- $baselineCapabilities := list "AUDIT_WRITE" "CHOWN" "DAC_OVERRIDE" "FOWNER" "FSETID" "KILL" "MKNOD" "NET_BIND_SERVICE" "SETFCAP" "SETGID" "SETPCAP" "SETUID" "SYS_CHROOT" }}
{{- range $capabilities.add | default list }}
{{- if not (has . $baselineCapabilities) }}{{ $baseline = false }}{{ end }}
{{- if ne . "NET_BIND_SERVICE" }}{{ $restricted = false }}{{ end }}
{{- end }}
{{- if not (has "ALL" ($capabilities.drop | default list)) }}{{ $restricted = false }}{{ end }}
{{- if $container.privileged }}{{ $baseline = false }}{{ end }}
{{- if not (eq ($container.procMount | default "Default") "Default") }}{{ $baseline = false }}{{ end }}
{{- range list $pod $container }}
{{- with .seLinuxOptions }}
{{- if or .user .role (not (has (.type | default "") (list "" "container_t" "container_init_t" "container_kvm_t"))) }}{{ $baseline = false }}{{ end }}
{{- end }}
{{- if eq ((.seccompProfile).type | default "") "Unconfined" }}{{ $baseline = false }}{{ end }}
{{- if eq ((.appArmorProfile).type | default "") "Unconfined" }}{{ $baseline = false }}{{ end }}
{{- if eq (toString .runAsUser) "0" }}{{ $restricted = false }}{{ end }}
{{- end }}
{{- range $key, $value := .context.Values.podAnnotations }}
{{- if and (hasPrefix "container.apparmor.security.beta.kubernetes.io/" $key) $value (ne $value "runtime/default") (not (hasPrefix "localhost/" $value)) }}{{ $baseline = false }}{{ end }}
{{- end }}
{{- $coreVolumes := list "name" "configMap" "downwardAPI" "emptyDir" "projected" "secret" "csi" "persistentVolumeClaim" "ephemeral" "image" }}
{{- range .context.Values.extraVolumes }}
{{- if hasKey . "hostPath" }}{{ $baseline = false }}{{ end }}
{{- range $key, $_ := . }}{{ if not (has $key $coreVolumes) }}{{ $restricted = false }}{{ end }}{{ end }}
{{- end }}
{{- if not (eq (toString $container.allowPrivilegeEscalation) "false") }}{{ $restricted = false }}{{ end }}
{{- $nonRoot := ternary $pod.runAsNonRoot $container.runAsNonRoot (kindIs "invalid" $container.runAsNonRoot) }}
{{- if or (not $nonRoot) (eq (toString $pod.runAsNonRoot) "false") }}{{ $restricted = false }}{{ end }}
{{- $seccomp := ($container.seccompProfile).type | default ($pod.seccompProfile).type | default "" }}
{{- if not (has $seccomp (list "RuntimeDefault" "Localhost")) }}{{ $restricted = false }}{{ end }}
{{- ternary (ternary "restricted" "baseline" $restricted) "privileged" $baseline }}
{{- end }}

{{/* The lowest level any rendered pod meets (see pvc-backup.securityLevel). */}}
{{- define "pvc-backup.releaseSecurityLevel" -}}
{{- $levels := list }}
{{- range $component := list "backup" "verify" "restore" }}
{{- $levels = append $levels (include "pvc-backup.securityLevel" (dict "context" $ "component" $component)) }}
{{- end }}
{{- if has "privileged" $levels }}privileged{{ else if has "baseline" $levels }}baseline{{ else }}restricted{{ end }}
{{- end }}

{{/* Annotations of the backup claim. Args: context. */}}
{{- define "pvc-backup.backupClaimAnnotations" -}}
{{- $annotations := deepCopy .context.Values.storage.annotations }}
{{- if .context.Values.storage.keepOnUninstall }}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" }}
{{- end }}
{{- include "pvc-backup.annotations" (dict "context" .context "extra" $annotations) }}
{{- end }}

{{/* Annotations of the ServiceAccount. Args: context. */}}
{{- define "pvc-backup.serviceAccountAnnotations" -}}
{{- include "pvc-backup.annotations" (dict "context" .context "extra" .context.Values.serviceAccount.annotations) }}
{{- end }}

{{/* Annotations of the helm test Pod: the hook, podAnnotations and commonAnnotations. Args: context. */}}
{{- define "pvc-backup.testPodAnnotations" -}}
{{- $hook := dict "helm.sh/hook" "test" "helm.sh/hook-delete-policy" "before-hook-creation" }}
{{- include "pvc-backup.annotations" (dict "context" .context "extra" (merge $hook (deepCopy .context.Values.podAnnotations))) }}
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
distinct (the archive's source too: a restore from the bucket is another request). The same request always gets the same id (and Job name); the runner records completed
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
{{- /* Appended only for the bucket, so that ids of restores from the volume stay what they were. */}}
{{- if eq (include "pvc-backup.restoreFrom" .) "offsite" }}
{{- $request = append $request "offsite" }}
{{- end }}
{{- /* Likewise only when restore.paths selects part of the archive. */}}
{{- with .Values.restore.paths }}
{{- $request = append $request (dict "paths" .) }}
{{- end }}
{{- $request | toJson | sha256sum | trunc 8 }}
{{- end }}

{{/* The restore Job name, 63 characters at most. */}}
{{- define "pvc-backup.restoreJobName" -}}
{{- printf "%s-restore-%s" (include "pvc-backup.fullname" . | trunc 46 | trimSuffix "-") (include "pvc-backup.restoreRequestId" .) }}
{{- end }}

{{/* Annotations of the restore Job: the request, readable in kubectl describe, and commonAnnotations. Args: context. */}}
{{- define "pvc-backup.restoreAnnotations" -}}
{{- with .context }}
{{- $request := dict
      "pvc-backup.io/restore-archive" .Values.restore.archive
      "pvc-backup.io/restore-mode" .Values.restore.mode
      "pvc-backup.io/restore-target" (printf "%s/%s" (include "pvc-backup.restoreTargetClaim" .) (include "pvc-backup.restoreTargetSubPath" .) | trimSuffix "/")
      "pvc-backup.io/restore-request-id" (include "pvc-backup.restoreRequestId" .) }}
{{- if eq (include "pvc-backup.restoreFrom" .) "offsite" }}
{{- $_ := set $request "pvc-backup.io/restore-from" .Values.offsite.url }}
{{- end }}
{{- with .Values.restore.paths }}
{{- $_ := set $request "pvc-backup.io/restore-paths" (join "\n" .) }}
{{- $_ := set $request "pvc-backup.io/restore-mode" "merge" }}
{{- end }}
{{- include "pvc-backup.annotations" (dict "context" . "extra" $request) }}
{{- end }}
{{- end }}
