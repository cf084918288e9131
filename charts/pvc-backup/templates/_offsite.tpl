{{/*
Helpers for the off-site bucket (offsite.*, storage.enabled, restore.from) and age encryption
(encryption.*). Copied from synth/templates by npm run synth.
*/}}

{{/* Where the restore Job reads the archive: restore.from, or (while null) offsite for a bucket-only install, else local. */}}
{{- define "pvc-backup.restoreFrom" -}}
{{- if not (kindIs "invalid" .Values.restore.from) }}
{{- .Values.restore.from }}
{{- else if .Values.storage.enabled }}local
{{- else }}offsite
{{- end }}
{{- end }}

{{/*
The bucket's credentials as container env: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from
offsite.existingSecret, for the pods that talk to the bucket (when is true). Without a Secret the
AWS SDK's chain finds them (IRSA's web identity, for one). Args: context, when.
*/}}
{{- define "pvc-backup.offsiteEnv" -}}
{{- $offsite := .context.Values.offsite }}
{{- if and .when $offsite.enabled $offsite.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $offsite.existingSecret | quote }}
      key: {{ $offsite.secretKeys.accessKeyId | quote }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $offsite.existingSecret | quote }}
      key: {{ $offsite.secretKeys.secretAccessKey | quote }}
{{- end }}
{{- end }}

{{/*
The file mode of the mounted age identity: 0400 (decimal 256) where the pod runs as root or has an
fsGroup (the kubelet then makes the file 0440, group fsGroup: readable by the pod's group); 0440
cannot reach a non-root pod without fsGroup (the restricted restore pod, which must not re-own the
application's volume), so there the file is 0444, readable inside that one-container pod only.
Args: context, component.
*/}}
{{- define "pvc-backup.identityFileMode" -}}
{{- $pod := include "pvc-backup.podSecurityContext" . | fromYaml }}
{{- if or (eq (toString $pod.runAsUser) "0") (not (kindIs "invalid" $pod.fsGroup)) }}256{{ else }}292{{ end }}
{{- end }}

{{/*
Fails the render on combinations the schema cannot check across sections, with one line saying
what to set. Renders nothing otherwise.
*/}}
{{- define "pvc-backup.validateOffsite" -}}
{{- $from := include "pvc-backup.restoreFrom" . }}
{{- if and (not .Values.storage.enabled) (not .Values.offsite.enabled) }}
{{- fail "storage.enabled=false keeps the archives only in a bucket: set offsite.enabled=true and offsite.url=s3://BUCKET/PATH (or storage.enabled=true)" }}
{{- end }}
{{- if and (eq $from "offsite") (not .Values.offsite.enabled) }}
{{- fail "restore.from=offsite reads the archive from the bucket: set offsite.enabled=true and offsite.url=s3://BUCKET/PATH (or restore.from=local)" }}
{{- end }}
{{- if and (eq $from "local") (not .Values.storage.enabled) }}
{{- fail "restore.from=local needs the backup volume, which storage.enabled=false does not have: set restore.from=offsite (or leave it null)" }}
{{- end }}
{{- if and .Values.restore.enabled (hasSuffix ".age" .Values.restore.archive) (not .Values.encryption.existingSecret) }}
{{- fail (printf "restore.archive %s is encrypted: set encryption.existingSecret to a Secret holding its age identity (key encryption.identityKey)" .Values.restore.archive) }}
{{- end }}
{{- if and .Values.offsite.sseKmsKeyId (ne .Values.offsite.sse "aws:kms") }}
{{- fail "offsite.sseKmsKeyId is used only with offsite.sse=aws:kms: set offsite.sse=aws:kms (or remove sseKmsKeyId)" }}
{{- end }}
{{- end }}

{{/*
The runner's flags that name the bucket (no upload settings), as a YAML list, for the commands
NOTES prints; the pods get the same flags from synth/constructs/offsite.ts (a test compares them).
*/}}
{{- define "pvc-backup.bucketArgs" -}}
{{- $offsite := .Values.offsite }}
- --remote
- {{ $offsite.url | quote }}
{{- with $offsite.endpoint }}
- --s3-endpoint
- {{ . | quote }}
{{- end }}
{{- with $offsite.region }}
- --s3-region
- {{ . | quote }}
{{- end }}
{{- if eq (toString $offsite.pathStyle) "true" }}
- --s3-path-style
{{- else if eq (toString $offsite.pathStyle) "false" }}
- --no-s3-path-style
{{- end }}
{{- end }}
