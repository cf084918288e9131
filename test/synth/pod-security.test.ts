import { describe, expect, it } from 'vitest';
import { baselineViolations, lowestLevel, podSecurityLevel, restrictedViolations, type Level, type PodLike } from './pod-security.js';

/** The checker itself, on pods that break one rule each (so a chart test that uses it can fail). */

function restrictedPod(): PodLike {
  return {
    metadata: { annotations: {} },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [{ name: 'c', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'x' } }, { name: 'tmp', emptyDir: {} }],
    },
  };
}

const CASES: [string, (pod: PodLike) => void, Level][] = [
  ['nothing changed', () => {}, 'restricted'],
  ['NET_BIND_SERVICE added', (p) => (p.spec.containers[0]!.securityContext!.capabilities!.add = ['NET_BIND_SERVICE']), 'restricted'],
  ['DAC_OVERRIDE added', (p) => (p.spec.containers[0]!.securityContext!.capabilities!.add = ['DAC_OVERRIDE']), 'baseline'],
  ['DAC_READ_SEARCH added', (p) => (p.spec.containers[0]!.securityContext!.capabilities!.add = ['DAC_READ_SEARCH']), 'privileged'],
  ['NET_RAW added', (p) => (p.spec.containers[0]!.securityContext!.capabilities!.add = ['NET_RAW']), 'privileged'],
  ['capabilities not dropped', (p) => delete p.spec.containers[0]!.securityContext!.capabilities, 'baseline'],
  ['privileged', (p) => (p.spec.containers[0]!.securityContext!.privileged = true), 'privileged'],
  ['privilege escalation allowed', (p) => delete p.spec.containers[0]!.securityContext!.allowPrivilegeEscalation, 'baseline'],
  ['uid 0', (p) => (p.spec.securityContext!.runAsUser = 0), 'baseline'],
  ['runAsNonRoot unset', (p) => delete p.spec.securityContext!.runAsNonRoot, 'baseline'],
  ['runAsNonRoot only on the container', (p) => { delete p.spec.securityContext!.runAsNonRoot; p.spec.containers[0]!.securityContext!.runAsNonRoot = true; }, 'restricted'],
  ['runAsNonRoot false on the pod, true on the container', (p) => { p.spec.securityContext!.runAsNonRoot = false; p.spec.containers[0]!.securityContext!.runAsNonRoot = true; }, 'baseline'],
  ['no seccomp profile', (p) => delete p.spec.securityContext!.seccompProfile, 'baseline'],
  ['seccomp only on the container', (p) => { delete p.spec.securityContext!.seccompProfile; p.spec.containers[0]!.securityContext!.seccompProfile = { type: 'Localhost' }; }, 'restricted'],
  ['seccomp Unconfined', (p) => (p.spec.securityContext!.seccompProfile = { type: 'Unconfined' }), 'privileged'],
  ['AppArmor Unconfined', (p) => (p.spec.containers[0]!.securityContext!.appArmorProfile = { type: 'Unconfined' }), 'privileged'],
  ['AppArmor annotation unconfined', (p) => (p.metadata!.annotations!['container.apparmor.security.beta.kubernetes.io/c'] = 'unconfined'), 'privileged'],
  ['SELinux user', (p) => (p.spec.securityContext!.seLinuxOptions = { user: 'system_u' }), 'privileged'],
  ['SELinux type container_t', (p) => (p.spec.securityContext!.seLinuxOptions = { type: 'container_t', level: 's0:c1,c2' }), 'restricted'],
  ['procMount Unmasked', (p) => (p.spec.containers[0]!.securityContext!.procMount = 'Unmasked'), 'privileged'],
  ['hostNetwork', (p) => (p.spec.hostNetwork = true), 'privileged'],
  ['a hostPath volume', (p) => p.spec.volumes!.push({ name: 'h', hostPath: { path: '/' } }), 'privileged'],
  ['an nfs volume', (p) => p.spec.volumes!.push({ name: 'n', nfs: { server: 's', path: '/' } }), 'baseline'],
  ['a hostPort', (p) => (p.spec.containers[0]!.ports = [{ hostPort: 8080 }]), 'privileged'],
  ['an unsafe sysctl', (p) => (p.spec.securityContext!.sysctls = [{ name: 'kernel.msgmax' }]), 'privileged'],
  ['a user namespace with uid 0', (p) => { p.spec.hostUsers = false; p.spec.securityContext!.runAsUser = 0; delete p.spec.securityContext!.runAsNonRoot; }, 'restricted'],
];

describe('the Pod Security Standards checker', () => {
  it.each(CASES)('%s: %s', (_name, change, level) => {
    const pod = restrictedPod();
    change(pod);
    expect(podSecurityLevel(pod), [...baselineViolations(pod), ...restrictedViolations(pod)].join('; ')).toBe(level);
  });

  it('names each violation', () => {
    const pod = restrictedPod();
    pod.spec.containers[0]!.securityContext!.capabilities!.add = ['SYS_ADMIN'];
    expect(baselineViolations(pod)).toEqual(['Capabilities: c adds SYS_ADMIN']);
  });

  it('takes the lowest level of several pods', () => {
    expect(lowestLevel(['restricted', 'baseline', 'restricted'])).toBe('baseline');
    expect(lowestLevel(['restricted'])).toBe('restricted');
    expect(lowestLevel(['baseline', 'privileged'])).toBe('privileged');
  });
});
