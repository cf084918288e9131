{{/*
Several source volumes in one release (sources:). Sets, in the dict .out, "all": one context per
source, and "restore": the context restore.source names (the first without one). A source's
context is the root context with a copy of .Values in which source.* is that source's claim,
subPath and colocateWith, backup.prefix its prefix (default: the backup prefix, "-" and its name),
backup.schedule its schedule (default: see pvc-backup.staggeredSchedule) and backup.exclude its
excludes (when given), plus SourceName. Without sources the one context is the root context
itself, unchanged. Args: context, out.
*/}}
{{- define "pvc-backup.sourceContexts" -}}
{{- $root := .context }}
{{- $all := list $root }}
{{- $restore := $root }}
{{- with $root.Values.sources }}
{{- $all = list }}
{{- $base := include "pvc-backup.prefix" $root }}
{{- range $index, $source := . }}
{{- $values := deepCopy $root.Values }}
{{- $_ := set $values "source" (dict "claimName" $source.claimName "subPath" ($source.subPath | default "") "colocateWith" ($source.colocateWith | default (dict))) }}
{{- $_ = set $values.backup "prefix" ($source.prefix | default (printf "%s-%s" $base $source.name)) }}
{{- $_ = set $values.backup "schedule" ($source.schedule | default (include "pvc-backup.staggeredSchedule" (dict "schedule" $root.Values.backup.schedule "index" $index "name" $source.name))) }}
{{- if not (kindIs "invalid" $source.exclude) }}
{{- $_ = set $values.backup "exclude" $source.exclude }}
{{- end }}
{{- $context := dict "Values" $values "SourceName" $source.name "Release" $root.Release "Chart" $root.Chart "Capabilities" $root.Capabilities "Template" $root.Template "Files" $root.Files "Subcharts" $root.Subcharts }}
{{- $all = append $all $context }}
{{- if or (eq $index 0) (eq $source.name $root.Values.restore.source) }}
{{- $restore = $context }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set .out "all" $all }}
{{- $_ = set .out "restore" $restore }}
{{- end }}

{{/*
The default schedule of the source at index k: backup.schedule with k×5 added to its minute
(modulo 60), so the backups of several sources do not all start at once. A macro (@daily…) is
read as its five fields first; a minute field that is not one number (a step, a list) cannot be
shifted and the render fails asking for the source's own schedule. Args: schedule, index, name.
*/}}
{{- define "pvc-backup.staggeredSchedule" -}}
{{- $macros := dict "@yearly" "0 0 1 1 *" "@annually" "0 0 1 1 *" "@monthly" "0 0 1 * *" "@weekly" "0 0 * * 0" "@daily" "0 0 * * *" "@midnight" "0 0 * * *" "@hourly" "0 * * * *" }}
{{- $fields := regexSplit "\\s+" (get $macros .schedule | default .schedule | trim) -1 }}
{{- $minute := first $fields }}
{{- if not (regexMatch "^[0-9]+$" $minute) }}
{{- fail (printf "sources: %q needs a schedule of its own: the minute field %q of backup.schedule is not one number, so it cannot be staggered (set sources[].schedule)" .name $minute) }}
{{- end }}
{{- printf "%d %s" (mod (add (atoi $minute) (mul 5 .index)) 60) (rest $fields | join " ") }}
{{- end }}

{{/* Renders nothing: fails on sources settings the schema cannot check. */}}
{{- define "pvc-backup.validateSources" -}}
{{- $values := .Values }}
{{- if $values.sources }}
{{- if $values.source.claimName }}
{{- fail "sources and source.claimName are both set: list every volume under sources (and leave source.claimName empty), or use source alone for one volume" }}
{{- end }}
{{- if $values.backup.preBackup }}
{{- fail "backup.preBackup works with source only, not with sources: use one release per volume that needs dumps" }}
{{- end }}
{{- if $values.backup.sqlite }}
{{- fail "backup.sqlite works with source only, not with sources: use one release per volume with SQLite databases" }}
{{- end }}
{{- if $values.offsite.enabled }}
{{- fail "offsite.enabled works with source only, not with sources: use one release per volume for off-site copies" }}
{{- end }}
{{- $names := dict }}
{{- $prefixes := dict }}
{{- $holder := dict }}
{{- $_ := include "pvc-backup.sourceContexts" (dict "context" . "out" $holder) }}
{{- range $holder.all }}
{{- if hasKey $names .SourceName }}
{{- fail (printf "sources: the name %q is given twice; each source needs its own name" .SourceName) }}
{{- end }}
{{- $_ := set $names .SourceName true }}
{{- if hasKey $prefixes .Values.backup.prefix }}
{{- fail (printf "sources: the prefix %q is used by %q and %q; each source needs its own prefix" .Values.backup.prefix (get $prefixes .Values.backup.prefix) .SourceName) }}
{{- end }}
{{- $_ := set $prefixes .Values.backup.prefix .SourceName }}
{{- $context := . }}
{{- with include "pvc-backup.scheduleProblem" .Values.backup.schedule }}
{{- fail (printf "sources: the schedule %q of %q: %s (write five cron fields such as \"0 3 * * *\")" $context.Values.backup.schedule $context.SourceName .) }}
{{- end }}
{{- end }}
{{- if and $values.restore.enabled (not $values.restore.source) }}
{{- fail (printf "restore.enabled with sources needs restore.source: the name of the source to restore (%s)" (keys $names | sortAlpha | join ", ")) }}
{{- end }}
{{- if and $values.restore.source (not (hasKey $names $values.restore.source)) }}
{{- fail (printf "restore.source %q is not the name of an entry of sources (%s)" $values.restore.source (keys $names | sortAlpha | join ", ")) }}
{{- end }}
{{- else if $values.restore.source }}
{{- fail "restore.source names an entry of sources, and sources is empty: leave restore.source empty with source" }}
{{- end }}
{{- end }}
