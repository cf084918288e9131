{{/*
Render-time checks of backup.schedule, verify.schedule and backup.timeZone, so a schedule the
CronJob would not run, or the verify job's freshness check would not read, fails helm install
instead of every verify run. The rule is runner/freshness.ts scheduleProblem, step by step; its
tables come from there (pvc-backup.scheduleRule in _schedule-rule.tpl, written by npm run synth),
and a test compares the two on a list of cases.
*/}}

{{/* What is wrong with a schedule, by runner/freshness.ts scheduleProblem; empty when nothing. Args: the schedule. */}}
{{- define "pvc-backup.scheduleProblem" -}}
{{- $schedule := . }}
{{- $rule := include "pvc-backup.scheduleRule" . | fromJson }}
{{- if has $schedule $rule.macros }}
{{- else if hasPrefix "@" $schedule }}
{{- printf "unknown macro %s; use one of %s or five fields" $schedule (join ", " $rule.macros) }}
{{- else if regexMatch "^[ \t]|[ \t]$" $schedule }}
{{- print "leading or trailing spaces" }}
{{- else }}
{{- $fields := regexSplit "[ \t]+" $schedule -1 }}
{{- if ne (len $fields) 5 }}
{{- printf "expected five fields (minute hour day-of-month month day-of-week), found %d" (len $fields) }}
{{- else }}
{{- $problem := "" }}
{{- $firstDay := 0 }}
{{- $months := list }}
{{- range $index, $spec := $rule.fields }}
{{- if not $problem }}
{{- $text := index $fields $index }}
{{- $parsed := include "pvc-backup.scheduleField" (dict "text" $text "spec" $spec) | fromJson }}
{{- if $parsed.problem }}
{{- $problem = printf "%s \"%s\": %s" $spec.name $text $parsed.problem }}
{{- else if eq $index 2 }}
{{- $firstDay = $parsed.first | int }}
{{- else if eq $index 3 }}
{{- $months = $parsed.values }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $problem) (has (index $fields 4) (list "*" "?")) }}
{{- $longest := 0 }}
{{- range $months }}
{{- $longest = max $longest (index $rule.daysInMonth (sub (int .) 1) | int) }}
{{- end }}
{{- if gt $firstDay $longest }}
{{- $problem = printf "day of month %d never comes in month \"%s\"" $firstDay (index $fields 3) }}
{{- end }}
{{- end }}
{{- $problem }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One field: JSON {"problem": "..."} or {"first": lowest start, "values": every value}; no value may
come twice. Args: text, spec (name, min, max, names).
*/}}
{{- define "pvc-backup.scheduleField" -}}
{{- $spec := .spec }}
{{- $min := $spec.min | int }}
{{- $max := $spec.max | int }}
{{- $problem := "" }}
{{- $first := 100 }}
{{- $values := list }}
{{- range $item := splitList "," .text }}
{{- if not $problem }}
{{- if not (regexMatch "^(?:[*?]|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/[0-9]+)?$" $item) }}
{{- $problem = ternary "empty list item" (printf "\"%s\" is not a value, a range (a-b), * or ?, with an optional /step" $item) (eq $item "") }}
{{- else }}
{{- $base := regexReplaceAll "/.*$" $item "" }}
{{- $stepText := ternary (regexReplaceAll "^[^/]*/" $item "") "" (contains "/" $item) }}
{{- $from := regexReplaceAll "-.*$" $base "" }}
{{- $to := ternary (regexReplaceAll "^[^-]*-" $base "") "" (contains "-" $base) }}
{{- $step := 1 }}
{{- $start := $min }}
{{- $end := $max }}
{{- if $stepText }}
{{- if or (gt (len $stepText) 2) (lt (atoi $stepText) 1) }}
{{- $problem = printf "step /%s must be 1 to 99" $stepText }}
{{- else }}
{{- $step = atoi $stepText }}
{{- end }}
{{- end }}
{{- if and (not $problem) (not (has $base (list "*" "?"))) }}
{{- $parsed := include "pvc-backup.scheduleValue" (dict "text" $from "spec" $spec) }}
{{- if hasPrefix "!" $parsed }}
{{- $problem = trimPrefix "!" $parsed }}
{{- else }}
{{- $start = atoi $parsed }}
{{- $end = $start }}
{{- if $to }}
{{- $parsed = include "pvc-backup.scheduleValue" (dict "text" $to "spec" $spec) }}
{{- if hasPrefix "!" $parsed }}
{{- $problem = trimPrefix "!" $parsed }}
{{- else }}
{{- $end = atoi $parsed }}
{{- end }}
{{- else if $stepText }}
{{- $end = $max }}
{{- end }}
{{- if and (not $problem) (gt $start $end) }}
{{- $problem = printf "range %s-%s runs backwards" $from $to }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $problem }}
{{- range untilStep (int $start) (add1 $end | int) (int $step) }}
{{- if and (not $problem) (has . $values) }}
{{- $problem = printf "%d comes twice" . }}
{{- end }}
{{- $values = append $values . }}
{{- end }}
{{- $first = min $first $start }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $problem }}
{{- toJson (dict "problem" $problem) }}
{{- else }}
{{- toJson (dict "first" $first "values" $values) }}
{{- end }}
{{- end }}

{{/* One value of a field as a number, or "!" and what is wrong with it. Args: text, spec. */}}
{{- define "pvc-backup.scheduleValue" -}}
{{- $spec := .spec }}
{{- $min := $spec.min | int }}
{{- $max := $spec.max | int }}
{{- if regexMatch "^[0-9]{1,2}$" .text }}
{{- $n := atoi .text }}
{{- if and (ge $n $min) (le $n $max) }}{{ $n }}{{ else }}!{{ .text }} is outside {{ $min }}-{{ $max }}{{ end }}
{{- else }}
{{- $found := -1 }}
{{- $lower := lower .text }}
{{- range $index, $name := $spec.names | default list }}
{{- if eq $name $lower }}{{ $found = add $min $index }}{{ end }}
{{- end }}
{{- if ge $found 0 }}{{ $found }}
{{- else if $spec.names }}!{{ printf "\"%s\" is not a number (one or two digits) or a name (%s-%s)" .text (first $spec.names) (last $spec.names) }}
{{- else }}!{{ printf "\"%s\" is not a number (one or two digits)" .text }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails the render when a schedule or the time zone would be refused by Kubernetes or by the freshness check. */}}
{{- define "pvc-backup.validateSchedules" -}}
{{- $macros := (include "pvc-backup.scheduleRule" . | fromJson).macros | join ", " }}
{{- with include "pvc-backup.scheduleProblem" .Values.backup.schedule }}
{{- fail (printf "backup.schedule %q: %s (write five cron fields such as \"0 3 * * *\", or one of %s)" $.Values.backup.schedule . $macros) }}
{{- end }}
{{- if .Values.verify.schedule }}
{{- with include "pvc-backup.scheduleProblem" .Values.verify.schedule }}
{{- fail (printf "verify.schedule %q: %s (write five cron fields such as \"30 6 * * *\", or one of %s)" $.Values.verify.schedule . $macros) }}
{{- end }}
{{- end }}
{{- if not (has .Values.backup.timeZone (splitList "\n" (.Files.Get "files/time-zones.txt"))) }}
{{- fail (printf "backup.timeZone %q is not a time zone name both Kubernetes and the runner know (IANA names such as Etc/UTC, Europe/Berlin, America/New_York; the chart's files/time-zones.txt lists them)" .Values.backup.timeZone) }}
{{- end }}
{{- end }}
