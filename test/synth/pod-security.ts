/**
 * A checker of the Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards,
 * as the PodSecurity admission plugin implements them in k8s.io/pod-security-admission/policy, at
 * the 1.28 version of each check), for the fields a pod spec can carry. No maintained npm library
 * implements them. A pod meets `restricted` when it passes every baseline and restricted check,
 * `baseline` when it passes the baseline checks.
 */

export type Level = 'privileged' | 'baseline' | 'restricted';

interface SecurityContextFields {
  privileged?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  procMount?: string;
  runAsNonRoot?: boolean;
  runAsUser?: number;
  seccompProfile?: { type?: string };
  appArmorProfile?: { type?: string };
  seLinuxOptions?: { type?: string; user?: string; role?: string; level?: string };
  windowsOptions?: { hostProcess?: boolean };
}

interface ContainerLike {
  name: string;
  securityContext?: SecurityContextFields;
  ports?: { hostPort?: number }[];
  [field: string]: unknown;
}

export interface PodLike {
  metadata?: { annotations?: Record<string, string> };
  spec: {
    containers: ContainerLike[];
    initContainers?: ContainerLike[];
    ephemeralContainers?: ContainerLike[];
    hostNetwork?: boolean;
    hostPID?: boolean;
    hostIPC?: boolean;
    hostUsers?: boolean;
    securityContext?: SecurityContextFields & { sysctls?: { name: string }[] };
    volumes?: Record<string, unknown>[];
    [field: string]: unknown;
  };
}

const BASELINE_CAPABILITIES = new Set(['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']);
const SELINUX_TYPES = new Set(['', 'container_t', 'container_init_t', 'container_kvm_t']);
const SAFE_SYSCTLS = new Set(['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.ip_local_reserved_ports']);
const RESTRICTED_VOLUME_SOURCES = new Set(['configMap', 'downwardAPI', 'emptyDir', 'projected', 'secret', 'csi', 'persistentVolumeClaim', 'ephemeral', 'image']);

function containersOf(pod: PodLike): ContainerLike[] {
  return [...pod.spec.containers, ...(pod.spec.initContainers ?? []), ...(pod.spec.ephemeralContainers ?? [])];
}

/** Violations of the baseline level, one line each. */
export function baselineViolations(pod: PodLike): string[] {
  const out: string[] = [];
  const spec = pod.spec;
  const podContext = spec.securityContext ?? {};
  const containers = containersOf(pod);
  const userNamespace = spec.hostUsers === false;

  if (podContext.windowsOptions?.hostProcess || containers.some((c) => c.securityContext?.windowsOptions?.hostProcess)) out.push('HostProcess: hostProcess must be unset or false');
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC'] as const) if (spec[field]) out.push(`Host Namespaces: ${field} must be unset or false`);
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`Privileged Containers: ${c.name} sets privileged`);
    for (const cap of sc.capabilities?.add ?? []) if (!BASELINE_CAPABILITIES.has(cap)) out.push(`Capabilities: ${c.name} adds ${cap}`);
    for (const port of c.ports ?? []) if (port.hostPort) out.push(`Host Ports: ${c.name} uses hostPort ${port.hostPort}`);
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
      const p = c[probe] as { httpGet?: { host?: string }; tcpSocket?: { host?: string } } | undefined;
      if (p?.httpGet?.host || p?.tcpSocket?.host) out.push(`Host Probes: ${c.name} ${probe} sets host`);
    }
    if (!userNamespace && sc.procMount !== undefined && sc.procMount !== 'Default') out.push(`/proc Mount Type: ${c.name} sets procMount ${sc.procMount}`);
  }
  for (const volume of spec.volumes ?? []) if ('hostPath' in volume) out.push(`HostPath Volumes: volume ${String(volume.name)} is a hostPath`);
  for (const [where, sc] of [['pod', podContext], ...containers.map((c) => [c.name, c.securityContext ?? {}] as const)] as const) {
    if (sc.appArmorProfile?.type !== undefined && !['RuntimeDefault', 'Localhost'].includes(sc.appArmorProfile.type)) out.push(`AppArmor: ${where} sets ${sc.appArmorProfile.type}`);
    if (sc.seccompProfile?.type === 'Unconfined') out.push(`Seccomp: ${where} sets Unconfined`);
    const se = sc.seLinuxOptions;
    if (se && (!SELINUX_TYPES.has(se.type ?? '') || se.user || se.role)) out.push(`SELinux: ${where} sets seLinuxOptions ${JSON.stringify(se)}`);
  }
  for (const [key, value] of Object.entries(pod.metadata?.annotations ?? {})) {
    if (key.startsWith('container.apparmor.security.beta.kubernetes.io/') && value && value !== 'runtime/default' && !value.startsWith('localhost/')) out.push(`AppArmor: annotation ${key}=${value}`);
  }
  for (const sysctl of podContext.sysctls ?? []) if (!SAFE_SYSCTLS.has(sysctl.name)) out.push(`Sysctls: ${sysctl.name} is not a safe sysctl`);
  return out;
}

/** Violations of the checks the restricted level adds to baseline, one line each. */
export function restrictedViolations(pod: PodLike): string[] {
  const out: string[] = [];
  const spec = pod.spec;
  const podContext = spec.securityContext ?? {};
  const containers = containersOf(pod);
  const userNamespace = spec.hostUsers === false;

  for (const volume of spec.volumes ?? []) {
    const sources = Object.keys(volume).filter((k) => k !== 'name');
    for (const source of sources) if (!RESTRICTED_VOLUME_SOURCES.has(source)) out.push(`Volume Types: volume ${String(volume.name)} is ${source}`);
  }
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    if (sc.allowPrivilegeEscalation !== false) out.push(`Privilege Escalation: ${c.name} must set allowPrivilegeEscalation=false`);
    if (!sc.capabilities?.drop?.includes('ALL')) out.push(`Capabilities: ${c.name} must drop ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`Capabilities: ${c.name} may add only NET_BIND_SERVICE, adds ${cap}`);
    const seccomp = sc.seccompProfile?.type ?? podContext.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`Seccomp: ${c.name} needs RuntimeDefault or Localhost (pod or container)`);
  }
  if (!userNamespace) {
    if (podContext.runAsNonRoot === false) out.push('Running as Non-root: pod sets runAsNonRoot=false');
    for (const c of containers) {
      const own = c.securityContext?.runAsNonRoot;
      if (own === false) out.push(`Running as Non-root: ${c.name} sets runAsNonRoot=false`);
      else if (own === undefined && podContext.runAsNonRoot !== true) out.push(`Running as Non-root: ${c.name} (or the pod) must set runAsNonRoot=true`);
    }
    if (podContext.runAsUser === 0) out.push('Running as Non-root user: pod sets runAsUser=0');
    for (const c of containers) if (c.securityContext?.runAsUser === 0) out.push(`Running as Non-root user: ${c.name} sets runAsUser=0`);
  }
  return out;
}

/** The highest level the pod meets. */
export function podSecurityLevel(pod: PodLike): Level {
  if (baselineViolations(pod).length > 0) return 'privileged';
  return restrictedViolations(pod).length > 0 ? 'baseline' : 'restricted';
}

const ORDER: Level[] = ['privileged', 'baseline', 'restricted'];

/** The lowest of several levels (what a namespace must admit to run all of them). */
export function lowestLevel(levels: Level[]): Level {
  return ORDER[Math.min(...levels.map((l) => ORDER.indexOf(l)))] ?? 'restricted';
}
