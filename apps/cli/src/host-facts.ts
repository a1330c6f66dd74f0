import { availableParallelism, hostname, totalmem } from 'node:os';

/** The bare hostname (`build-01` for `build-01.corp.example`): the default display name. */
export function bareHostname(): string {
  return hostname().split('.')[0] || 'workstation';
}

export function hostCapacity(): { cpu_count: number; memory_bytes: number } {
  return { cpu_count: availableParallelism(), memory_bytes: totalmem() };
}
