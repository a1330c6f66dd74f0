import { z } from 'zod';

/**
 * Secret env entries (issue 12), the one home of "an env value that is a secret": a run's `env`
 * entry given as `{ value, secret: true }` is a secret. The control plane stores it sealed
 * (AES-256-GCM) and hands its value only to the agent holding the run's lease (the claim
 * answer's `secret_env`); every other read of the run shows its name with {@link SECRET_MASK}
 * as the value and lists it in `secret_env_names`. The agent replaces every occurrence of a
 * secret value in the run's output with {@link SECRET_MASK} before reporting it.
 */

/** What a secret value reads as everywhere but the workload's environment (as GitHub Actions prints it). */
export const SECRET_MASK = '***';

export const envNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'environment variable names are letters, digits and _');

const envValue = z.string().max(65_536);

/** A submitted env entry: a plain value, or `{value, secret}` (`secret: true` makes it a secret). */
export const submitEnvValueSchema = z.union([
  envValue,
  z.object({ value: envValue, secret: z.boolean().default(false) }).strict(),
]);
export type SubmitEnvValue = z.input<typeof submitEnvValueSchema>;

/** At most this many secret entries on one run. */
export const MAX_SECRETS_PER_RUN = 100;

/**
 * Splits a submitted env into its plain entries and its secret ones.
 *
 * @example
 * splitSecretEnv({ A: '1', T: { value: 's3cr3t', secret: true } }) // { env: { A: '1' }, secrets: { T: 's3cr3t' } }
 */
export function splitSecretEnv(env: Record<string, z.output<typeof submitEnvValueSchema>>): {
  env: Record<string, string>;
  secrets: Record<string, string>;
} {
  const plain: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (typeof v === 'string') plain[k] = v;
    else if (v.secret) secrets[k] = v.value;
    else plain[k] = v.value;
  }
  return { env: plain, secrets };
}

/** Env names that look like credentials: the panel hides their values even when not marked secret. */
const SECRET_LOOKING_NAME =
  /(TOKEN|SECRET|PASSW(OR)?D|PASS|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT)/i;

/**
 * Whether an env entry of a run is to be shown masked: a secret entry (`secret_env_names`), or a
 * plain one whose name looks like a credential (as CI systems hide such values).
 *
 * @example
 * isSecretEnv('API_TOKEN', []) // true
 * isSecretEnv('DB_URL', ['DB_URL']) // true
 */
export function isSecretEnv(name: string, secretNames: readonly string[] | undefined): boolean {
  return (secretNames ?? []).includes(name) || SECRET_LOOKING_NAME.test(name);
}
