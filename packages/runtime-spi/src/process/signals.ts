import { constants } from 'node:os';

const byNumber = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** "SIGKILL" for 9 or "SIGKILL"; undefined for nothing. */
export function signalName(signal: number | string | null | undefined): string | undefined {
  if (signal === null || signal === undefined || signal === 0) return undefined;
  if (typeof signal === 'string') return signal;
  return byNumber.get(signal) ?? `SIG${signal}`;
}

/** 9 for "SIGKILL". */
export function signalNumber(name: string): number {
  return (constants.signals as Record<string, number>)[name] ?? 0;
}
