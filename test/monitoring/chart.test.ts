import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type MonitoringConfig, type RunnerConfig, type VerifyConfig, parseCommandLine } from '../../runner/config.js';
import { helmBinaries } from '../helpers/helm.js';
import { useTempDirs } from '../helpers/tree.js';
import {
  type Manifest,
  type ValuesOverride,
  environmentOf,
  find,
  fullname,
  helmTemplate,
  podTemplateOf,
  renderChart,
  REQUIRED_VALUES,
  resourceIds,
  runnerContainerOf,
  validateKubernetesObject,
} from '../synth/rendered-chart.js';

/**
 * The chart's monitoring pieces, rendered by real Helm 3 and 4: the events Role (create on events
 * and nothing else) and the token that comes with it, the runner flags for metrics, Events,
 * notifications and the ping (fed to the runner's own parser), and the PrometheusRule, checked
 * with promtool (Debian prometheus): `check rules`, and `test rules` for each alert firing on a
 * stale, failed or missing series, and staying quiet on a healthy one.
 */

const F = fullname();
const PROMTOOL = '/usr/bin/promtool';
const promtoolMissing = fs.existsSync(PROMTOOL) ? undefined : 'needs promtool (Debian prometheus; scripts/setup.sh installs it)';
if (promtoolMissing) console.warn(`skipping the promtool checks in test/monitoring/chart.test.ts: ${promtoolMissing}`);

const tempDir = useTempDirs('file');

/** The rendered pod's command line, read by the runner's own parser. */
function parse(workload: Manifest): { config: RunnerConfig; monitoring: MonitoringConfig | undefined } {
  const container = runnerContainerOf(workload);
  const parsed = parseCommandLine(container.args, environmentOf(container), { checkPaths: false });
  if (parsed.kind !== 'run') throw new Error(`not a run: ${JSON.stringify(container.args)}`);
  return parsed;
}

/** The pods that report their run: backup, verify, restore (not the bind Job, not the helm test pod). */
function workloads(manifests: Manifest[]): Manifest[] {
  return manifests.filter((m) => m.kind === 'CronJob' || (m.kind === 'Job' && !m.metadata.name.startsWith(`${F}-bind-`)));
}

/** The pods that report nothing: the bind Job and the helm test pod. */
function quietPods(manifests: Manifest[]): Manifest[] {
  const quiet = manifests.filter((m) => m.kind === 'Pod' || (m.kind === 'Job' && m.metadata.name.startsWith(`${F}-bind-`)));
  expect(quiet.map((m) => m.kind).sort()).toEqual(['Job', 'Pod']);
  return quiet;
}

describe.each(helmBinaries())('monitoring rendered by Helm $major', (helm) => {
  it('posts Events by default: a Role with only create on events, bound to the ServiceAccount, and the token mounted', () => {
    const manifests = renderChart(helm, { ...REQUIRED_VALUES, restore: { enabled: true, targetClaim: 'shop-data-copy' } });
    const role = find(manifests, 'Role', F);
    const binding = find(manifests, 'RoleBinding', F);
    for (const m of [role, binding]) validateKubernetesObject(m);
    expect(role.rules).toEqual([{ apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] }]);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: F });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: F, namespace: 'apps' }]);
    expect(find(manifests, 'ServiceAccount', F).automountServiceAccountToken).toBe(false);

    const claims: Record<string, string> = {};
    for (const workload of workloads(manifests)) {
      expect(podTemplateOf(workload).spec.automountServiceAccountToken).toBe(true);
      const { config, monitoring } = parse(workload);
      expect(monitoring?.events).toMatchObject({ namespace: 'apps', credentialsDir: '/var/run/secrets/kubernetes.io/serviceaccount' });
      claims[config.command] = monitoring!.events!.claimName;
      expect(monitoring).toMatchObject({ pushgatewayUrl: undefined, notify: [], pingUrl: undefined });
    }
    expect(claims).toEqual({ backup: 'shop-data', verify: 'shop-data', restore: 'shop-data-copy' });
    for (const pod of quietPods(manifests)) {
      expect(podTemplateOf(pod).spec.automountServiceAccountToken).toBe(false);
      expect(runnerContainerOf(pod).args).not.toContain('--events');
    }
  });

  it('posts Events, binds the Role and labels the metrics in the namespace of namespaceOverride', () => {
    const manifests = renderChart(helm, {
      ...REQUIRED_VALUES,
      namespaceOverride: 'backups',
      metrics: { pushgateway: { url: 'http://pushgateway:9091' }, prometheusRule: { enabled: true } },
      restore: { enabled: true },
    });
    for (const kind of ['Role', 'RoleBinding', 'PrometheusRule']) expect(find(manifests, kind, F).metadata.namespace).toBe('backups');
    expect(find(manifests, 'RoleBinding', F).subjects).toEqual([{ kind: 'ServiceAccount', name: F, namespace: 'backups' }]);
    for (const workload of workloads(manifests)) expect(parse(workload).monitoring).toMatchObject({ namespace: 'backups', events: { namespace: 'backups' } });
    const rules = find(manifests, 'PrometheusRule', F).spec.groups[0].rules as { expr: string }[];
    for (const rule of rules) expect(rule.expr).toContain('job="pvc-backup",namespace="backups",prefix="shop"');
  });

  it('with events.enabled=false: no Role, no token, no Event flags', () => {
    const manifests = renderChart(helm, { ...REQUIRED_VALUES, events: { enabled: false }, restore: { enabled: true } });
    expect(resourceIds(manifests).filter((id) => id.startsWith('Role'))).toEqual([]);
    for (const workload of workloads(manifests)) {
      expect(podTemplateOf(workload).spec.automountServiceAccountToken).toBe(false);
      expect(runnerContainerOf(workload).args).not.toContain('--events');
      expect(parse(workload).monitoring).toBeUndefined();
    }
  });

  it('passes the Pushgateway to every pod and the schedule to the backup, for the next-due time', () => {
    const manifests = renderChart(helm, {
      ...REQUIRED_VALUES,
      backup: { schedule: '0 */6 * * *', timeZone: 'Europe/Berlin' },
      metrics: { pushgateway: { url: 'http://prometheus-pushgateway.monitoring:9091' } },
      restore: { enabled: true },
    });
    for (const workload of workloads(manifests)) {
      const { config, monitoring } = parse(workload);
      expect(monitoring?.pushgatewayUrl?.href).toBe('http://prometheus-pushgateway.monitoring:9091/');
      expect(monitoring?.namespace).toBe('apps');
      expect(config.prefix).toBe('shop');
      expect(monitoring?.schedule).toEqual(config.command === 'backup' ? { schedule: '0 */6 * * *', timeZone: 'Europe/Berlin' } : undefined);
    }
  });

  it('hands the notification URLs over from their Secret, and pings from backups only', () => {
    const manifests = renderChart(helm, {
      ...REQUIRED_VALUES,
      notify: { urls: { existingSecret: 'backup-webhooks', key: 'targets' }, on: 'always', pingUrl: 'https://hc-ping.com/5a1b' },
      restore: { enabled: true },
    });
    for (const workload of workloads(manifests)) {
      const container = runnerContainerOf(workload);
      expect(container.env).toContainEqual({ name: 'PVC_BACKUP_NOTIFY_URL', valueFrom: { secretKeyRef: { name: 'backup-webhooks', key: 'targets' } } });
      expect(JSON.stringify(container.args)).not.toContain('backup-webhooks');
      const { config, monitoring } = parse(workload);
      expect(monitoring?.notifyOn).toBe('always');
      expect(monitoring?.pingUrl?.href).toBe(config.command === 'backup' ? 'https://hc-ping.com/5a1b' : undefined);
    }
    const quiet = renderChart(helm, REQUIRED_VALUES);
    for (const workload of workloads(quiet)) expect(runnerContainerOf(workload).env.map((e: { name: string }) => e.name)).not.toContain('PVC_BACKUP_NOTIFY_URL');
    for (const pod of quietPods(manifests)) expect(runnerContainerOf(pod).env.map((e: { name: string }) => e.name)).not.toContain('PVC_BACKUP_NOTIFY_URL');
  });

  it('runs the verify job beside scheduled backups, and suspends it when backups are suspended and it has no schedule', () => {
    const scheduled = find(renderChart(helm, { ...REQUIRED_VALUES, backup: { schedule: '15 1 * * *' } }), 'CronJob', `${F}-verify`);
    expect(scheduled.spec).toMatchObject({ schedule: '15 1 * * *', suspend: false });
    expect((parse(scheduled).config as VerifyConfig).freshness).toEqual({ schedule: '15 1 * * *', timeZone: 'Etc/UTC', graceSeconds: 3600 });
    const suspended = find(renderChart(helm, { ...REQUIRED_VALUES, backup: { suspend: true } }), 'CronJob', `${F}-verify`);
    expect(suspended.spec.suspend).toBe(true);
    const own = find(renderChart(helm, { ...REQUIRED_VALUES, backup: { suspend: true }, verify: { schedule: '0 12 * * 0' } }), 'CronJob', `${F}-verify`);
    expect(own.spec).toMatchObject({ schedule: '0 12 * * 0', suspend: false });
  });

  it('refuses a PrometheusRule without a Pushgateway, and an unknown notify.on', () => {
    const noUrl = helmTemplate(helm, { ...REQUIRED_VALUES, metrics: { prometheusRule: { enabled: true } } });
    expect(noUrl.code).not.toBe(0);
    expect(noUrl.stderr).toMatch(/metrics[./]pushgateway[./]url/);
    const badOn = helmTemplate(helm, { ...REQUIRED_VALUES, notify: { on: 'sometimes' } });
    expect(badOn.code).not.toBe(0);
    expect(badOn.stderr).toMatch(/notify[./]on/);
  });
});

// ---------------------------------------------------------------- the PrometheusRule

const RULE_VALUES: ValuesOverride = {
  ...REQUIRED_VALUES,
  metrics: {
    pushgateway: { url: 'http://pushgateway:9091' },
    prometheusRule: { enabled: true, labels: { release: 'kube-prometheus-stack' }, alertLabels: { team: 'storage' } },
  },
};

function prometheusRule(values: ValuesOverride): Manifest {
  return find(renderChart(helmBinaries()[0]!, values), 'PrometheusRule', F);
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

function rulesOf(rule: Manifest): AlertRule[] {
  return rule.spec.groups[0].rules as AlertRule[];
}

describe('the PrometheusRule', () => {
  it('is a monitoring.coreos.com/v1 PrometheusRule with the chart labels plus metrics.prometheusRule.labels', () => {
    const rule = prometheusRule(RULE_VALUES);
    expect(rule.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(rule.metadata.labels).toMatchObject({ 'app.kubernetes.io/instance': 'shop', release: 'kube-prometheus-stack' });
    expect(Object.keys(rule.spec)).toEqual(['groups']);
    expect(rule.spec.groups).toHaveLength(1);
    expect(rule.spec.groups[0].name).toBe(F);
    const rules = rulesOf(rule);
    expect(rules.map((r) => r.alert)).toEqual(['PvcBackupFailed', 'PvcBackupOverdue', 'PvcBackupMetricsAbsent', 'PvcBackupVerifyFailed']);
    for (const r of rules) {
      expect(Object.keys(r).sort()).toEqual(r.for ? ['alert', 'annotations', 'expr', 'for', 'labels'] : ['alert', 'annotations', 'expr', 'labels']);
      expect(r.labels.team).toBe('storage');
      expect(r.expr).toContain('job="pvc-backup",namespace="apps",prefix="shop"');
      expect(Object.keys(r.annotations).sort()).toEqual(['description', 'summary']);
    }
    expect(rules.find((r) => r.alert === 'PvcBackupOverdue')!.for).toBe('1h');
    // The default schedule runs daily: absent for a day plus the grace.
    expect(rules.find((r) => r.alert === 'PvcBackupMetricsAbsent')!.for).toBe('90000s');
  });

  it.each([
    ['@hourly', '1h', 3600 + 3600],
    ['*/15 * * * *', '30m', 3600 + 1800],
    ['0 */6 * * *', '1h30m', 86400 + 5400],
    ['30 2 * * 1-5', '2h', 604800 + 7200],
    ['0 3 1 * *', '1d', 62 * 86400 + 86400],
    ['0 3 1 1 *', '1h', 366 * 86400 + 3600],
  ])('waits for missing metrics at least as long as schedule %s can go without a run, plus grace %s', (schedule, grace, seconds) => {
    const rule = prometheusRule({ ...RULE_VALUES, backup: { schedule }, metrics: { ...RULE_VALUES.metrics, prometheusRule: { enabled: true, grace } } });
    expect(rulesOf(rule).find((r) => r.alert === 'PvcBackupMetricsAbsent')!.for).toBe(`${seconds}s`);
  });

  it('takes absentFor as given, and leaves the overdue and absent alerts out while backups are suspended', () => {
    const given = prometheusRule({ ...RULE_VALUES, metrics: { ...RULE_VALUES.metrics, prometheusRule: { enabled: true, absentFor: '3d' } } });
    expect(rulesOf(given).find((r) => r.alert === 'PvcBackupMetricsAbsent')!.for).toBe('3d');
    const suspended = prometheusRule({ ...RULE_VALUES, backup: { suspend: true } });
    expect(rulesOf(suspended).map((r) => r.alert)).toEqual(['PvcBackupFailed', 'PvcBackupVerifyFailed']);
  });

  describe.skipIf(promtoolMissing !== undefined)('with promtool', () => {
    let dir: string;
    let rules: AlertRule[];
    beforeAll(async () => {
      dir = await tempDir('promtool');
      const rule = prometheusRule(RULE_VALUES);
      rules = rulesOf(rule);
      fs.writeFileSync(path.join(dir, 'rules.yaml'), stringify(rule.spec));
    });

    function promtool(args: string[]): { code: number | null; output: string } {
      const result = spawnSync(PROMTOOL, args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
      return { code: result.status, output: result.stdout + result.stderr };
    }

    it('passes promtool check rules', () => {
      const result = promtool(['check', 'rules', 'rules.yaml']);
      expect(result.output).toContain('SUCCESS: 4 rules found');
      expect(result.code, result.output).toBe(0);
    });

    const series = (name: string, command: string) => `${name}{job="pvc-backup",namespace="apps",prefix="shop",command="${command}",instance=""}`;
    const alert = (name: string, labels: Record<string, string>) => {
      const rule = rules.find((r) => r.alert === name)!;
      return { exp_labels: { ...rule.labels, ...labels }, exp_annotations: rule.annotations };
    };
    // The Pushgateway's empty instance label is no label at all once Prometheus has the series.
    const pushed = (command: string) => ({ job: 'pvc-backup', namespace: 'apps', prefix: 'shop', command });

    it('fires each alert on a failed, overdue or missing series, and none on a healthy one (promtool test rules)', () => {
      // promtool's clock starts at 0: the "next due" values are seconds from that start.
      const tests = {
        rule_files: ['rules.yaml'],
        evaluation_interval: '1m',
        tests: [
          {
            name: 'healthy: a recent success, due in two hours',
            interval: '5m',
            input_series: [
              { series: series('pvc_backup_last_run_success', 'backup'), values: '1x40' },
              { series: series('pvc_backup_last_success_timestamp_seconds', 'backup'), values: '0x40' },
              { series: series('pvc_backup_next_due_timestamp_seconds', 'backup'), values: '7200x40' },
              { series: series('pvc_backup_last_run_success', 'verify'), values: '1x40' },
            ],
            alert_rule_test: ['PvcBackupFailed', 'PvcBackupOverdue', 'PvcBackupMetricsAbsent', 'PvcBackupVerifyFailed'].map((alertname) => ({
              eval_time: '3h',
              alertname,
              exp_alerts: [],
            })),
          },
          {
            name: 'a failed backup and a failed verify fire at once',
            interval: '1m',
            input_series: [
              { series: series('pvc_backup_last_run_success', 'backup'), values: '1 1 0 0 0' },
              { series: series('pvc_backup_last_run_success', 'verify'), values: '1 0 0 0 0' },
            ],
            alert_rule_test: [
              { eval_time: '1m', alertname: 'PvcBackupFailed', exp_alerts: [] },
              { eval_time: '2m', alertname: 'PvcBackupFailed', exp_alerts: [alert('PvcBackupFailed', pushed('backup'))] },
              { eval_time: '1m', alertname: 'PvcBackupVerifyFailed', exp_alerts: [alert('PvcBackupVerifyFailed', pushed('verify'))] },
            ],
          },
          {
            name: 'overdue: no success after the due time plus the grace',
            interval: '5m',
            input_series: [
              { series: series('pvc_backup_last_run_success', 'backup'), values: '1x40' },
              { series: series('pvc_backup_last_success_timestamp_seconds', 'backup'), values: '0x40' },
              { series: series('pvc_backup_next_due_timestamp_seconds', 'backup'), values: '3600x40' },
            ],
            alert_rule_test: [
              { eval_time: '1h55m', alertname: 'PvcBackupOverdue', exp_alerts: [] },
              { eval_time: '2h10m', alertname: 'PvcBackupOverdue', exp_alerts: [alert('PvcBackupOverdue', pushed('backup'))] },
              { eval_time: '2h10m', alertname: 'PvcBackupFailed', exp_alerts: [] },
            ],
          },
          {
            name: 'a new backup clears overdue',
            interval: '5m',
            input_series: [{ series: series('pvc_backup_next_due_timestamp_seconds', 'backup'), values: '3600x30 90000x20' }],
            alert_rule_test: [
              { eval_time: '2h20m', alertname: 'PvcBackupOverdue', exp_alerts: [alert('PvcBackupOverdue', pushed('backup'))] },
              { eval_time: '2h40m', alertname: 'PvcBackupOverdue', exp_alerts: [] },
            ],
          },
          {
            name: 'absent: nothing pushed for this prefix for a day plus the grace',
            interval: '10m',
            input_series: [{ series: 'pvc_backup_last_success_timestamp_seconds{job="pvc-backup",namespace="apps",prefix="other",command="backup",instance=""}', values: '0x200' }],
            alert_rule_test: [
              { eval_time: '24h50m', alertname: 'PvcBackupMetricsAbsent', exp_alerts: [] },
              {
                eval_time: '25h10m',
                alertname: 'PvcBackupMetricsAbsent',
                exp_alerts: [alert('PvcBackupMetricsAbsent', { job: 'pvc-backup', namespace: 'apps', prefix: 'shop', command: 'backup' })],
              },
            ],
          },
        ],
      };
      fs.writeFileSync(path.join(dir, 'tests.yaml'), stringify(tests));
      const result = promtool(['test', 'rules', 'tests.yaml']);
      expect(result.code, result.output).toBe(0);
      expect(result.output).toContain('SUCCESS');
    });

    it('would notice a broken expectation (the test above can fail)', () => {
      const wrong = {
        rule_files: ['rules.yaml'],
        tests: [
          {
            interval: '1m',
            input_series: [{ series: series('pvc_backup_last_run_success', 'backup'), values: '1x10' }],
            alert_rule_test: [{ eval_time: '5m', alertname: 'PvcBackupFailed', exp_alerts: [alert('PvcBackupFailed', pushed('backup'))] }],
          },
        ],
      };
      fs.writeFileSync(path.join(dir, 'wrong.yaml'), stringify(wrong));
      expect(promtool(['test', 'rules', 'wrong.yaml']).code).not.toBe(0);
    });
  });
});

describe('values.yaml', () => {
  it('quotes the notify.on key, which YAML 1.1 (Helm) would read as true', () => {
    const values = fs.readFileSync(path.join(import.meta.dirname, '../../charts/pvc-backup/values.yaml'), 'utf8');
    expect(values).toMatch(/\n  "on": "failure"\n/);
    const rendered = find(renderChart(helmBinaries()[0]!, { ...REQUIRED_VALUES, notify: { urls: { existingSecret: 'hooks' } } }), 'CronJob', F);
    expect(parse(rendered).config.command).toBe('backup');
    expect(parse(rendered).monitoring?.notifyOn).toBe('failure');
  });
});
