import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Construct } from 'constructs';
import { stringify } from 'yaml';
import { renderChartReadme } from './chart-readme.js';
import { BackupClaim } from './constructs/backup-claim.js';
import { BackupCronJob } from './constructs/backup-cron-job.js';
import { EventsRole } from './constructs/events-role.js';
import { BackupPrometheusRule } from './constructs/prometheus-rule.js';
import { RestoreJob } from './constructs/restore-job.js';
import { RunnerServiceAccount } from './constructs/service-account.js';
import { VerifyCronJob } from './constructs/verify-cron-job.js';
import { HelmChartApp, TemplateFile } from './helm.js';
import { checkSchemaConventions, readSchema, readSchemaText } from './schema.js';
import { RENDER_WHEN } from './values.js';
import { renderValuesType, VALUES_TYPE_FILE } from './values-type.js';
import { renderValuesYaml } from './values-yaml.js';

/** The chart directory, relative to the repository root. */
export const CHART_DIR = 'charts/pvc-backup';

export const CHART_METADATA = {
  apiVersion: 'v2',
  name: 'pvc-backup',
  description: 'Scheduled, verified tar backups of a PersistentVolumeClaim, with integrity checks and one-shot restores.',
  type: 'application',
  version: '0.1.0',
  appVersion: '0.1.0',
  kubeVersion: '>=1.28.0-0',
  keywords: ['backup', 'restore', 'pvc', 'persistentvolumeclaim', 'cronjob', 'tar'],
} as const;

type ConstructClass = new (scope: Construct, id: string) => Construct;

/** Every generated template: its file, the condition that renders it, and the construct that builds it. */
const TEMPLATES: { fileName: string; condition?: string; construct: ConstructClass; source: string }[] = [
  { fileName: 'serviceaccount.yaml', condition: RENDER_WHEN.serviceAccount, construct: RunnerServiceAccount, source: 'synth/constructs/service-account.ts' },
  { fileName: 'backup-pvc.yaml', condition: RENDER_WHEN.backupClaim, construct: BackupClaim, source: 'synth/constructs/backup-claim.ts' },
  { fileName: 'backup-cronjob.yaml', condition: RENDER_WHEN.backupCronJob, construct: BackupCronJob, source: 'synth/constructs/backup-cron-job.ts' },
  { fileName: 'verify-cronjob.yaml', condition: RENDER_WHEN.verifyCronJob, construct: VerifyCronJob, source: 'synth/constructs/verify-cron-job.ts' },
  { fileName: 'restore-job.yaml', condition: RENDER_WHEN.restoreJob, construct: RestoreJob, source: 'synth/constructs/restore-job.ts' },
  { fileName: 'events-role.yaml', condition: RENDER_WHEN.eventsRole, construct: EventsRole, source: 'synth/constructs/events-role.ts' },
  { fileName: 'prometheusrule.yaml', condition: RENDER_WHEN.prometheusRule, construct: BackupPrometheusRule, source: 'synth/constructs/prometheus-rule.ts' },
];

/** Hand-written templates, copied as they are. */
const HAND_WRITTEN = ['_helpers.tpl', '_monitoring.tpl', 'NOTES.txt'];

const HELMIGNORE = ['.DS_Store', '.git/', '*.swp', '*.bak', '*.tmp', '*.orig', '*~', ''].join('\n');

/** Every file npm run synth writes, by path relative to the repository root; pure and deterministic. */
export function synthesize(): Map<string, string> {
  const schema = readSchema();
  const problems = checkSchemaConventions(schema);
  if (problems.length > 0) throw new Error(`values.schema.json breaks the chart's conventions:\n  ${problems.join('\n  ')}`);

  const files = new Map<string, string>();
  const inChart = (path: string) => `${CHART_DIR}/${path}`;
  files.set(VALUES_TYPE_FILE, renderValuesType(schema));
  files.set(inChart('Chart.yaml'), stringify(CHART_METADATA, { lineWidth: 0 }));
  files.set(inChart('values.yaml'), renderValuesYaml(schema));
  files.set(inChart('values.schema.json'), readSchemaText());
  files.set(inChart('.helmignore'), HELMIGNORE);
  files.set(inChart('README.md'), renderChartReadme(schema));
  for (const name of HAND_WRITTEN) {
    files.set(inChart(`templates/${name}`), readFileSync(fileURLToPath(new URL(`templates/${name}`, import.meta.url)), 'utf8'));
  }
  for (const [fileName, text] of renderTemplateFiles()) {
    files.set(inChart(`templates/${fileName}`), text);
  }
  checkHelpersDefined(files);
  return files;
}

function renderTemplateFiles(): Map<string, string> {
  const app = new HelmChartApp();
  for (const { fileName, condition, construct, source } of TEMPLATES) {
    const file = new TemplateFile(app, fileName.replace(/\.yaml$/, ''), { fileName, condition, source });
    new construct(file, 'Resource');
  }
  const rendered = new Map(app.templateFiles.map((file) => [file.props.fileName, file.render()]));
  const lost = app.placeholders.unresolved();
  if (lost.length > 0) throw new Error(`placeholders that never reached a template:\n  ${lost.join('\n  ')}`);
  return rendered;
}

/** Fails the synth when a template includes a helper that no templates/_*.tpl file defines. */
function checkHelpersDefined(files: Map<string, string>): void {
  const helpers = [...files].filter(([path]) => /\/templates\/_[^/]+\.tpl$/.test(path)).map(([, text]) => text).join('\n');
  const defined = new Set([...helpers.matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
  for (const [path, text] of files) {
    if (!path.startsWith(`${CHART_DIR}/templates/`)) continue;
    for (const [, name] of text.matchAll(/include "([^"]+)"/g)) {
      if (!defined.has(name)) throw new Error(`${path} includes "${name}", which templates/_helpers.tpl does not define`);
    }
  }
}
