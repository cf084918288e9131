{{/* The Role and RoleBinding that let the restore Job scale restore.scaleDown's workloads. */}}
{{- define "pvc-backup.scaleDownRoleName" -}}
{{- printf "%s-scale-down" (include "pvc-backup.fullname" .) }}
{{- end }}

{{/*
The Role's rules (the same as scaleDownRbacRules in runner/consistency/scale-down.ts): get and
patch on the scale subresource of only the named Deployments and StatefulSets, list on pods.
*/}}
{{- define "pvc-backup.scaleDownRules" -}}
{{- $names := dict "Deployment" list "StatefulSet" list }}
{{- range .context.Values.restore.scaleDown }}
{{- $_ := set $names .kind (append (get $names .kind) .name) }}
{{- end }}
{{- $rules := list }}
{{- range $kind, $resource := dict "Deployment" "deployments/scale" "StatefulSet" "statefulsets/scale" }}
{{- with get $names $kind }}
{{- $rules = append $rules (dict "apiGroups" (list "apps") "resources" (list $resource) "resourceNames" (. | uniq | sortAlpha) "verbs" (list "get" "patch")) }}
{{- end }}
{{- end }}
{{- $rules = append $rules (dict "apiGroups" (list "") "resources" (list "pods") "verbs" (list "list")) }}
{{- toYaml $rules }}
{{- end }}

{{/* Renders nothing: fails on consistency settings that cannot work together. */}}
{{- define "pvc-backup.validateConsistency" -}}
{{- $values := .Values }}
{{- if and $values.backup.enabled $values.backup.sqlite (not $values.source.claimName) }}
{{- fail "backup.sqlite needs source.claimName: the SQLite databases are read from the source volume" }}
{{- end }}
{{- if and $values.restore.enabled (not $values.restore.targetClaim) (not $values.source.claimName) (not $values.sources) }}
{{- fail "restore.enabled needs restore.targetClaim (or source.claimName): there is no source claim to restore into" }}
{{- end }}
{{- $seen := dict }}
{{- range $values.backup.preBackup }}
{{- if hasKey $seen .name }}
{{- fail (printf "backup.preBackup: the name %q is given twice; each dump needs its own name" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
{{- $seen = dict }}
{{- range $values.restore.scaleDown }}
{{- $key := printf "%s/%s" .kind .name }}
{{- if hasKey $seen $key }}
{{- fail (printf "restore.scaleDown: %s is listed twice" $key) }}
{{- end }}
{{- $_ := set $seen $key true }}
{{- end }}
{{- end }}

{{/* The claim the Events of backup and verify are about: the source, or without one (dumps only) the backup claim. */}}
{{- define "pvc-backup.eventsClaimName" -}}
{{- .Values.source.claimName | default (include "pvc-backup.backupClaimName" .) }}
{{- end }}
