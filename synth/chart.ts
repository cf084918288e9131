import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Construct } from 'constructs';
import { stringify } from 'yaml';
import { renderChartReadme } from './chart-readme.js';
import { BackupClaim } from './constructs/backup-claim.js';
import { BackupCronJob } from './constructs/backup-cron-job.js';
import { EventsRole } from './constructs/events-role.js';
import { BackupPrometheusRule } from './constructs/prometheus-rule.js';
import { BindJob } from './constructs/bind-job.js';
import { RestoreJob } from './constructs/restore-job.js';
import { ScaleDownRole } from './constructs/scale-down-role.js';
import { RunnerServiceAccount } from './constructs/service-account.js';
import { TestPod } from './constructs/test-pod.js';
import { VerifyCronJob } from './constructs/verify-cron-job.js';
import { HelmChartApp, TemplateFile } from './helm.js';
import { checkSchemaConventions, readSchema, readSchemaText } from './schema.js';
import { RENDER_WHEN } from './values.js';
import { renderValuesType, VALUES_TYPE_FILE } from './values-type.js';
import { renderValuesYaml } from './values-yaml.js';
import { CI_VALUES } from './ci-values.js';
import { TIME_ZONES_FILE } from './update-time-zones.js';
import { DAYS_IN_MONTH, SCHEDULE_FIELDS, SCHEDULE_MACROS } from '../runner/freshness.js';

/** The chart directory, relative to the repository root. */
export const CHART_DIR = 'charts/pvc-backup';

const PROJECT_URL = 'https://github.com/pvc-backup/pvc-backup';

export const CHART_METADATA = {
  apiVersion: 'v2',
  name: 'pvc-backup',
  description: 'Scheduled, verified tar backups of a PersistentVolumeClaim, with integrity checks and one-shot restores.',
  type: 'application',
  version: '0.1.0',
  appVersion: '0.1.0',
  kubeVersion: '>=1.28.0-0',
  home: PROJECT_URL,
  sources: [PROJECT_URL],
  icon: `${PROJECT_URL}/raw/main/docs/icon.svg`,
  maintainers: [{ name: 'pvc-backup maintainers', url: PROJECT_URL }],
  keywords: ['backup', 'restore', 'pvc', 'persistentvolumeclaim', 'cronjob', 'tar'],
  annotations: {
    'artifacthub.io/license': 'Apache-2.0',
    'artifacthub.io/category': 'storage',
    'artifacthub.io/operator': 'false',
    'artifacthub.io/containsSecurityUpdates': 'false',
    'artifacthub.io/links': stringify([
      { name: 'source', url: PROJECT_URL },
      { name: 'documentation', url: `${PROJECT_URL}/blob/main/docs/chart.md` },
      { name: 'image', url: `${PROJECT_URL}/blob/main/docs/image.md` },
    ], { lineWidth: 0 }),
    'artifacthub.io/changes': stringify([
      { kind: 'added', description: 'securityProfile (baseline, restricted); the default pods meet Pod Security baseline' },
      { kind: 'added', description: 'bind Job, so helm --wait works with WaitForFirstConsumer storage classes' },
      { kind: 'added', description: 'global.imageRegistry, global.imagePullSecrets, global.storageClass, namespaceOverride, commonLabels, commonAnnotations, per-component scheduling and resources' },
      { kind: 'added', description: 'helm test (verify --latest); render-time checks of schedules and time zones' },
      { kind: 'added', description: 'backup.keep tiers (hourly, daily, weekly, monthly, yearly) beside keepLast' },
      { kind: 'added', description: 'metrics (Pushgateway) and a PrometheusRule, Kubernetes Events (a Role with create on events only), notifications and a dead-man\'s switch ping' },
      { kind: 'added', description: 'restore.allowAbsoluteSymlinks; restore.nonce may be a number, and a request that already ran fails saying to set a new one' },
      { kind: 'added', description: 'offsite.*: copies in an S3-compatible bucket (credentials from a Secret or IRSA), verified by the verify Job; storage.enabled=false for bucket-only installs; restore.from' },
      { kind: 'added', description: 'encryption.*: age recipients for backups, the identity mounted into verify and restore pods only' },
      { kind: 'added', description: 'sources: several volumes in one release (a backup CronJob per source, verify of every prefix, restore.source)' },
      { kind: 'changed', description: 'image.repository is required; verify pods mount only the backup volume and run on the backup schedule unless verify.schedule is set' },
    ], { lineWidth: 0 }),
  },
} as const;

type ConstructClass = new (scope: Construct, id: string) => Construct;

/** Every generated template: its file, the condition that renders it, and the construct that builds it. */
const TEMPLATES: { fileName: string; condition?: string; construct: ConstructClass; source: string }[] = [
  { fileName: 'serviceaccount.yaml', condition: RENDER_WHEN.serviceAccount, construct: RunnerServiceAccount, source: 'synth/constructs/service-account.ts' },
  { fileName: 'backup-pvc.yaml', condition: RENDER_WHEN.backupClaim, construct: BackupClaim, source: 'synth/constructs/backup-claim.ts' },
  { fileName: 'backup-cronjob.yaml', condition: RENDER_WHEN.backupCronJob, construct: BackupCronJob, source: 'synth/constructs/backup-cron-job.ts' },
  { fileName: 'verify-cronjob.yaml', condition: RENDER_WHEN.verifyCronJob, construct: VerifyCronJob, source: 'synth/constructs/verify-cron-job.ts' },
  { fileName: 'restore-job.yaml', condition: RENDER_WHEN.restoreJob, construct: RestoreJob, source: 'synth/constructs/restore-job.ts' },
  { fileName: 'bind-job.yaml', condition: RENDER_WHEN.bindJob, construct: BindJob, source: 'synth/constructs/bind-job.ts' },
  { fileName: 'events-role.yaml', condition: RENDER_WHEN.eventsRole, construct: EventsRole, source: 'synth/constructs/events-role.ts' },
  { fileName: 'scale-down-role.yaml', condition: RENDER_WHEN.scaleDownRole, construct: ScaleDownRole, source: 'synth/constructs/scale-down-role.ts' },
  { fileName: 'prometheusrule.yaml', condition: RENDER_WHEN.prometheusRule, construct: BackupPrometheusRule, source: 'synth/constructs/prometheus-rule.ts' },
  { fileName: 'tests/test-pod.yaml', condition: RENDER_WHEN.testPod, construct: TestPod, source: 'synth/constructs/test-pod.ts' },
];

/** Hand-written templates, copied as they are. */
const HAND_WRITTEN = ['_helpers.tpl', '_monitoring.tpl', '_offsite.tpl', '_schedule.tpl', '_consistency.tpl', '_sources.tpl', 'validate.yaml', 'NOTES.txt'];

/** Values files for chart-testing (ct lint / ct install), under ci/. */
export const CI_VALUES_DIR = 'ci';

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
  files.set(inChart('templates/_schedule-rule.tpl'), renderScheduleRule());
  files.set(inChart('files/time-zones.txt'), readFileSync(TIME_ZONES_FILE, 'utf8'));
  for (const [name, values] of Object.entries(CI_VALUES)) {
    files.set(inChart(`${CI_VALUES_DIR}/${name}-values.yaml`), `# chart-testing values: ${values.about}\n${stringify(values.values, { lineWidth: 0 })}`);
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
    const file = new TemplateFile(app, fileName.replace(/\.yaml$/, '').replace('/', '-'), { fileName, condition, source });
    new construct(file, 'Resource');
  }
  const rendered = new Map(app.templateFiles.map((file) => [file.props.fileName, file.render()]));
  const lost = app.placeholders.unresolved();
  if (lost.length > 0) throw new Error(`placeholders that never reached a template:\n  ${lost.join('\n  ')}`);
  return rendered;
}

/** The schedule rule's tables (runner/freshness.ts) as a helper of _schedule.tpl. */
function renderScheduleRule(): string {
  const rule = {
    macros: SCHEDULE_MACROS,
    fields: SCHEDULE_FIELDS,
    daysInMonth: DAYS_IN_MONTH,
  };
  return [
    '{{- /* Generated by npm run synth from runner/freshness.ts (the schedule rule the runner uses); used by _schedule.tpl. */}}',
    '{{- define "pvc-backup.scheduleRule" -}}',
    JSON.stringify(rule),
    '{{- end }}',
    '',
  ].join('\n');
}

/** Fails the synth when a template includes a helper that no .tpl file defines. */
function checkHelpersDefined(files: Map<string, string>): void {
  const helpers = [...files].filter(([path]) => path.startsWith(`${CHART_DIR}/templates/`) && path.endsWith('.tpl')).map(([, text]) => text).join('\n');
  const defined = new Set([...helpers.matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
  for (const [path, text] of files) {
    if (!path.startsWith(`${CHART_DIR}/templates/`)) continue;
    for (const [, name] of text.matchAll(/include "([^"]+)"/g)) {
      if (!defined.has(name)) throw new Error(`${path} includes "${name}", which templates/_helpers.tpl does not define`);
    }
  }
}
