import { HelmPlaceholders, toYamlLines, type TemplateFile } from '../helm.js';

/**
 * Several source volumes (`sources:`) in one release. templates/_sources.tpl turns the values into
 * one context per source: `.Values` with that source's claim in source.*, its prefix, schedule and
 * excludes in backup.*, and its name in `SourceName`; without `sources` the one context is the
 * root context itself, so a one-volume install renders as before. A template rendered under a
 * source context reads every value the usual way (V's expressions all start at `.`).
 */

/** The template variable holding the list of source contexts. */
const SOURCES = '$sources';

/** Which source context a template file is rendered under. */
export type SourceScope = 'each' | 'first' | 'last' | 'restore';

const OPEN: Record<SourceScope, string[]> = {
  // One manifest per source, separated as YAML documents.
  each: [`{{- range $sourceIndex, $source := ${SOURCES} }}`, '{{- if $sourceIndex }}', '---', '{{- end }}', '{{- with $source }}'],
  first: [`{{- with first ${SOURCES} }}`],
  last: [`{{- with last ${SOURCES} }}`],
  restore: ['{{- with $restoreSource }}'],
};

/** Renders the manifest of `file` under the source context(s) `scope` names. */
export function underSources(file: TemplateFile, scope: SourceScope): void {
  file.setScope(
    [
      '{{- $sourceContexts := dict }}',
      '{{- $_ := include "pvc-backup.sourceContexts" (dict "context" . "out" $sourceContexts) }}',
      `{{- ${SOURCES} := $sourceContexts.all }}`,
      '{{- $restoreSource := $sourceContexts.restore }}',
      ...OPEN[scope],
    ],
    scope === 'each' ? ['{{- end }}', '{{- end }}'] : ['{{- end }}'],
  );
}

/**
 * The list `key: T` at `at` as the items it had (`existing`, a line token or list), then one copy of
 * `item` per source before the last, each rendered under that source's context; for the verify
 * CronJob, whose own container checks the last source. (`existing` renders only without `sources`.)
 */
export function itemsPerEarlierSource(helm: HelmPlaceholders, existing: unknown, item: Record<string, unknown>): string {
  return helm.lines((at) => [
    ...(typeof existing === 'string' ? [`${at.key}: ${existing}`] : Array.isArray(existing) && existing.length > 0 ? [`${at.key}:`, ...toYamlLines(existing, 2)] : []),
    `{{- if gt (len ${SOURCES}) 1 }}`,
    `${at.key}:`,
    `{{- range $earlier := initial ${SOURCES} }}`,
    '{{- with $earlier }}',
    ...toYamlLines([item], 2),
    '{{- end }}',
    '{{- end }}',
    '{{- end }}',
  ]);
}
