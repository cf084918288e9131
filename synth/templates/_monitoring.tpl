{{/*
Hand-written helpers for the metrics and alerts of the pvc-backup chart (copied from
synth/templates by npm run synth). The alerts are written out here as YAML because PromQL with a
few interpolated names reads best as itself.
*/}}

{{/* The PromQL matchers of this release's pushed series (the Pushgateway group minus the command). */}}
{{- define "pvc-backup.metricSelector" -}}
job="pvc-backup",namespace={{ include "pvc-backup.namespace" . | quote }},prefix={{ include "pvc-backup.prefix" . | quote }}
{{- end }}

{{/* Seconds in a Prometheus duration such as 1h30m (milliseconds are dropped). */}}
{{- define "pvc-backup.durationSeconds" -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 "y" 31536000 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" . -1 }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- if ne $unit "ms" }}
{{- $total = add $total (mul (regexFind "^[0-9]+" . | int64) (get $units $unit)) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
An upper bound of the longest gap between two runs of backup.schedule, in seconds. Helm cannot
evaluate cron, so it is read from the fields: macros exactly; otherwise a month field bounds it
by a year, a day-of-month field by 62 days, a day-of-week field by a week, an hour field by a day,
and a schedule that names only minutes by an hour. It only sets how long the metrics may be
absent; the overdue alert uses the exact next-due time the runner computes from the schedule.
*/}}
{{- define "pvc-backup.scheduleGapSeconds" -}}
{{- $schedule := .Values.backup.schedule | trim }}
{{- $macros := dict "@yearly" 31622400 "@annually" 31622400 "@monthly" 2678400 "@weekly" 604800 "@daily" 86400 "@midnight" 86400 "@hourly" 3600 }}
{{- $any := list "*" "?" }}
{{- $fields := regexSplit "\\s+" $schedule -1 }}
{{- if hasKey $macros $schedule }}
{{- get $macros $schedule }}
{{- else if ne (len $fields) 5 }}31622400
{{- else if not (has (index $fields 3) $any) }}31622400
{{- else if not (has (index $fields 2) $any) }}5356800
{{- else if not (has (index $fields 4) $any) }}604800
{{- else if not (has (index $fields 1) $any) }}86400
{{- else }}3600
{{- end }}
{{- end }}

{{/* How long PvcBackupMetricsAbsent waits: metrics.prometheusRule.absentFor, or the schedule's longest gap plus the grace. */}}
{{- define "pvc-backup.absentFor" -}}
{{- with .Values.metrics.prometheusRule.absentFor }}
{{- . }}
{{- else }}
{{- add (include "pvc-backup.scheduleGapSeconds" . | int64) (include "pvc-backup.durationSeconds" .Values.metrics.prometheusRule.grace | int64) }}s
{{- end }}
{{- end }}

{{/* Labels of the PrometheusRule: the chart's plus metrics.prometheusRule.labels. Args: context. */}}
{{- define "pvc-backup.prometheusRuleLabels" -}}
{{- $labels := include "pvc-backup.labels" (dict "context" .context "component" "monitoring") | fromYaml }}
{{- toYaml (merge $labels (deepCopy .context.Values.metrics.prometheusRule.labels)) }}
{{- end }}

{{/*
The PrometheusRule's spec: one group with the alerts on this release's series. The overdue and
absent alerts only while backups are scheduled; the verify alert only with the verify CronJob.
Args: context.
*/}}
{{- define "pvc-backup.prometheusRuleSpec" -}}
{{- with .context }}
{{- $selector := include "pvc-backup.metricSelector" . }}
{{- $prefix := include "pvc-backup.prefix" . }}
{{- $ns := include "pvc-backup.namespace" . }}
{{- $where := printf "prefix %s in namespace %s" $prefix $ns }}
{{- $claim := .Values.source.claimName }}
{{- $cronJob := include "pvc-backup.backupCronJobName" . }}
{{- $critical := merge (deepCopy .Values.metrics.prometheusRule.alertLabels) (dict "severity" "critical") }}
{{- $warning := merge (deepCopy .Values.metrics.prometheusRule.alertLabels) (dict "severity" "warning") }}
groups:
  - name: {{ include "pvc-backup.fullname" . | quote }}
    rules:
      - alert: PvcBackupFailed
        expr: {{ printf "pvc_backup_last_run_success{%s,command=\"backup\"} == 0" $selector | quote }}
        labels:
          {{- toYaml $critical | nindent 10 }}
        annotations:
          summary: {{ printf "The last backup of PVC %s failed" $claim | quote }}
          description: {{ printf "The last backup run of %s failed. kubectl -n %s describe pvc %s shows the reason; the logs of the latest failed Job of CronJob %s show the details." $where $ns $claim $cronJob | quote }}
      {{- if and .Values.backup.enabled (not .Values.backup.suspend) }}
      - alert: PvcBackupOverdue
        expr: {{ printf "time() > pvc_backup_next_due_timestamp_seconds{%s,command=\"backup\"}" $selector | quote }}
        for: {{ .Values.metrics.prometheusRule.grace | quote }}
        labels:
          {{- toYaml $critical | nindent 10 }}
        annotations:
          summary: {{ printf "No backup of PVC %s since the schedule expected one" $claim | quote }}
          description: {{ printf "Schedule %q (%s) expected a backup of %s more than %s ago, and none has succeeded since. Check CronJob %s and its recent Jobs." .Values.backup.schedule .Values.backup.timeZone $where .Values.metrics.prometheusRule.grace $cronJob | quote }}
      - alert: PvcBackupMetricsAbsent
        expr: {{ printf "absent(pvc_backup_last_success_timestamp_seconds{%s,command=\"backup\"})" $selector | quote }}
        for: {{ include "pvc-backup.absentFor" . | quote }}
        labels:
          {{- toYaml $warning | nindent 10 }}
        annotations:
          summary: {{ printf "No successful backup of PVC %s is recorded" $claim | quote }}
          description: {{ printf "The Pushgateway has no successful backup of %s: backups never succeeded or never ran, the runner cannot reach the Pushgateway (see the backup logs), or the Pushgateway lost its data." $where | quote }}
      {{- end }}
      {{- if .Values.verify.enabled }}
      - alert: PvcBackupVerifyFailed
        expr: {{ printf "pvc_backup_last_run_success{%s,command=\"verify\"} == 0" $selector | quote }}
        labels:
          {{- toYaml $critical | nindent 10 }}
        annotations:
          summary: {{ printf "The backups of PVC %s failed their check" $claim | quote }}
          description: {{ printf "The last verify run of %s failed: an archive is corrupt or the newest backup is missing. kubectl -n %s describe pvc %s shows the reason; the logs of the latest failed Job of CronJob %s show the details." $where $ns $claim (include "pvc-backup.verifyCronJobName" .) | quote }}
      {{- end }}
{{- end }}
{{- end }}

{{/* The variable that hands the runner the notification URLs from notify.urls' Secret (a list, empty without a Secret). */}}
{{- define "pvc-backup.notifyUrlsEnv" -}}
{{- with .Values.notify.urls.existingSecret }}
- name: PVC_BACKUP_NOTIFY_URL
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.notify.urls.key | quote }}
{{- end }}
{{- end }}
