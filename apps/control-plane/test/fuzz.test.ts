import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { z } from 'zod';
import { agentMessageSchema, LINK_CLOSE_CODES } from '@runt/protocol';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime, type AgentDouble } from './agent-double.js';

/**
 * The fuzz suite (issue 8): requests generated from `/openapi.json` — every operation, with
 * values from its schemas mutated into wrong types, missing fields, control characters, lone
 * surrogates, huge and deeply nested values, hostile path parameters and bad tokens — and link
 * messages generated from the agent message schemas, sent to a real listening control plane.
 * The property: no answer is ≥ 500 and none hangs. Fixed seed, a budget of a few thousand cases.
 */
const SEED = 8_2026;
const HTTP_CASES_PER_OPERATION = Number(process.env.RUNT_FUZZ_CASES ?? 40);
const LINK_CASES = Number(process.env.RUNT_FUZZ_LINK_CASES ?? 300);
const HANG_MS = 10_000;

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  additionalProperties?: JsonSchema | boolean;
  default?: unknown;
};

interface Operation {
  method: string;
  path: string;
  parameters: { name: string; in: 'path' | 'query'; schema: JsonSchema }[];
  body?: JsonSchema;
  raw: boolean;
}

/** Strings a parser, a database or a log line might choke on. */
const nastyString = fc.oneof(
  fc.constantFrom(
    '',
    '\u0000',
    'a\u0000b',
    '\ud800',
    '\udfff',
    'x\ud83d',
    '\u202e',
    '\r\n',
    '%00',
    '../../etc/passwd',
    "'; drop table runs; --",
    '\\',
    '"',
    '{}',
    '💥',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('\u0000', '\u0001', '\u001f', '\u007f', '\ud800', '\udc00', 'a'),
    maxLength: 20,
  }),
  fc.nat({ max: 3 }).map((k) => 'x'.repeat([70_000, 300_000, 1_100_000, 17_000][k] as number)),
);
const nastyNumber = fc.constantFrom(
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  -(2 ** 53),
  1e308,
  -1e308,
  0.5,
  -1,
  0,
  1e-300,
  Number.MAX_SAFE_INTEGER,
);
/**
 * Deep nesting is generated as a placeholder that `toJson` expands in the text: building and
 * stringifying 6,000 levels as objects would overflow this process's stack, not the server's.
 */
const deepValue = fc.nat({ max: 6000 }).map((n) => `__deep_${n}__`);
const toJson = (v: unknown): string =>
  JSON.stringify(v).replace(
    /"__deep_(\d+)__"/g,
    (_, n: string) => `${'{"d":['.repeat(Number(n))}1${']}'.repeat(Number(n))}`,
  );
const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  nastyString,
  nastyNumber,
  fc.constant(null),
  deepValue,
);

/** A value meant to fit `schema` (so requests reach the stores), mutated often into one that does not. */
function fromSchema(schema: JsonSchema | undefined, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > 6) return anyJson;
  const fitting = fitsSchema(schema, depth);
  return fc.oneof({ weight: 6, arbitrary: fitting }, { weight: 1, arbitrary: anyJson });
}

function fitsSchema(schema: JsonSchema, depth: number): fc.Arbitrary<unknown> {
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives?.length) return fc.oneof(...alternatives.map((s) => fromSchema(s, depth + 1)));
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum?.length) return fc.oneof(fc.constantFrom(...schema.enum), nastyString);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'string':
      return fc.oneof(
        {
          weight: 4,
          arbitrary: fc.string({
            minLength: schema.minLength ?? 0,
            maxLength: Math.min(schema.maxLength ?? 30, 30),
          }),
        },
        { weight: 1, arbitrary: nastyString },
      );
    case 'integer':
    case 'number': {
      const min = schema.minimum ?? -1000;
      const max = schema.maximum ?? 1_000_000;
      return fc.oneof(
        {
          weight: 4,
          arbitrary: fc.integer({ min: Math.max(min, -(2 ** 31)), max: Math.min(max, 2 ** 31 - 1) }),
        },
        { weight: 1, arbitrary: nastyNumber },
      );
    }
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array':
      return fc.array(fromSchema(schema.items, depth + 1), {
        maxLength: Math.min(schema.maxItems ?? 4, 4),
        minLength: Math.min(schema.minItems ?? 0, 4),
      });
    case 'object': {
      const props = schema.properties ?? {};
      const required = new Set(schema.required ?? []);
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, s] of Object.entries(props)) record[k] = fromSchema(s, depth + 1);
      const keys = Object.keys(props);
      const base = keys.length
        ? fc.record(record, { requiredKeys: keys.filter((k) => required.has(k)) })
        : fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), { maxKeys: 3 });
      // Missing required fields and unknown extra keys, now and then.
      return fc
        .tuple(base, fc.boolean(), fc.option(fc.tuple(nastyString, anyJson), { freq: 5 }))
        .map(([value, dropOne, extra]) => {
          const out = { ...(value as Record<string, unknown>) };
          if (dropOne && keys.length) delete out[keys[0] as string];
          if (extra) out[extra[0]] = extra[1];
          return out;
        });
    }
    default:
      return anyJson;
  }
}

/** Percent-encodes any string, lone surrogates included (encodeURIComponent throws on those). */
function percentEncode(s: string): string {
  let out = '';
  for (const unit of s) {
    const code = unit.codePointAt(0) as number;
    if (code >= 0xd800 && code <= 0xdfff)
      out += `%ED%${(0xa0 | ((code >> 6) & 0x1f)).toString(16).toUpperCase()}%${(0x80 | (code & 0x3f)).toString(16).toUpperCase()}`;
    else out += encodeURIComponent(unit);
  }
  return out;
}

describe.each(TEST_BACKENDS)('fuzz on %s: no answer ≥ 500, no hang', (backend) => {
  let h: Harness;
  let agent: AgentDouble;
  let operations: Operation[];
  const ids: Record<string, string[]> = {};
  const answers = new Map<number, number>();

  beforeAll(async () => {
    h = await startHarness(backend, {
      pairingLimits: {
        perAddress: { max: 100_000, windowMs: 60_000 },
        overall: { max: 100_000, windowMs: 60_000 },
      },
    });
    const runtime = uniqueRuntime();
    agent = await pairAgent(h, 'fuzz-box', [runtime]);
    await agent.connect();
    const sacrificial = await pairAgent(h, 'fuzz-victim', [runtime]);
    const submitted = await h.api('/api/runs', { token: h.adminToken, body: { runtime, command: ['true'] } });
    const offer = await agent.waitFor('offer', (m) => m.run.id === submitted.json.run.id);
    await agent.client.claimRun(offer.run.id, { runner_id: 'fuzz', lease_ms: 60_000 });
    const minted = await h.api('/api/workstations/pairing-codes', { token: h.adminToken, body: {} });
    // Real ids now and then, so generated requests also reach rows that exist.
    ids.real = [
      offer.run.id,
      sacrificial.workstationId,
      sacrificial.credentialId,
      minted.json.pairing.id,
      'a'.repeat(64),
    ];

    const doc = (await h.api('/openapi.json')).json as { paths: Record<string, Record<string, any>> };
    operations = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        if (path === '/api/agent/link') continue; // the link has its own fuzz below
        if (path === '/api/workstations/self/revoke') continue; // would end the credential the link fuzz below uses
        const content = op.requestBody?.content ?? {};
        operations.push({
          method: method.toUpperCase(),
          path,
          parameters: op.parameters ?? [],
          ...(content['application/json'] ? { body: content['application/json'].schema } : {}),
          raw: Boolean(content['application/octet-stream']),
        });
      }
    }
  }, 60_000);

  afterAll(async () => {
    await h?.close();
    // What the budget exercised, for the CI log.
    console.log(`fuzz ${backend}: answers by status`, Object.fromEntries([...answers].sort()));
  });

  it('covers every operation of /openapi.json', () => {
    expect(operations.length).toBeGreaterThanOrEqual(25);
  });

  it('answers every generated request with a status below 500, in time', async () => {
    const token = () =>
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(h.adminToken) },
        { weight: 3, arbitrary: fc.constant(agent.token) },
        { weight: 1, arbitrary: fc.constant(undefined) },
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            'rnt_admin_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
            'rnt_workstation_x',
            'garbage',
            `${h.adminToken}x`,
            'rnt_\u0000',
            '',
          ),
        },
        { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
      );
    const pathValue = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...(ids.real as string[])) },
      { weight: 2, arbitrary: nastyString.filter((s) => s.length < 5000) },
      { weight: 1, arbitrary: fc.constantFrom('%00', '%ED%A0%80', '%ZZ', '..', '%2F', '%C0%80') },
    );
    const failures: string[] = [];
    for (const op of operations) {
      const request = fc.record({
        token: token(),
        params: fc.tuple(
          ...op.parameters.map((p) =>
            p.in === 'path' ? pathValue : fc.option(fromSchema(p.schema), { freq: 2 }),
          ),
        ),
        body: op.body
          ? fc.oneof(
              { weight: 8, arbitrary: fromSchema(op.body) },
              { weight: 1, arbitrary: fc.constantFrom('{', '{"a":', '[]', 'null', '"x"', '1e999', '\u0000') },
            )
          : fc.constant(undefined),
        contentType: fc.constantFrom(
          'application/json',
          'application/json',
          'application/json',
          'text/plain',
          'application/x-www-form-urlencoded',
          '',
        ),
      });
      await fc
        .assert(
          fc.asyncProperty(request, async ({ token: bearer, params, body, contentType }) => {
            let path = op.path;
            const query = new URLSearchParams();
            op.parameters.forEach((p, i) => {
              const v = params[i];
              if (p.in === 'path') {
                const s = String(v);
                path = path.replace(`{${p.name}}`, /^%[0-9A-Z]{2}/.test(s) ? s : percentEncode(s));
              } else if (v !== null && v !== undefined)
                query.set(p.name, typeof v === 'string' ? v : toJson(v));
            });
            const qs = query.toString();
            const headers: Record<string, string> = {};
            if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
            let payload: string | undefined;
            if (op.raw) payload = typeof body === 'string' ? body : 'not a tarball';
            else if (op.body)
              payload = typeof body === 'string' && !body.startsWith('__deep_') ? body : toJson(body);
            if (payload !== undefined && contentType)
              headers['content-type'] = op.raw ? 'application/octet-stream' : contentType;
            const url = `${h.cp.url}${path}${qs ? `?${qs}` : ''}`;
            let status: number;
            try {
              const res = await fetch(url, {
                method: op.method,
                headers,
                ...(payload === undefined ? {} : { body: payload }),
                signal: AbortSignal.timeout(HANG_MS),
              });
              status = res.status;
              // Event streams stay open by design: read the head of the body only.
              if (res.headers.get('content-type')?.includes('text/event-stream')) await res.body?.cancel();
              else await res.text();
            } catch (e) {
              failures.push(
                `${op.method} ${op.path}: no answer within ${HANG_MS} ms (${(e as Error).message})`,
              );
              return false;
            }
            answers.set(status, (answers.get(status) ?? 0) + 1);
            if (status >= 500) failures.push(`${op.method} ${url.slice(0, 300)} → ${status}`);
            return status < 500;
          }),
          { seed: SEED, numRuns: HTTP_CASES_PER_OPERATION, endOnFailure: true },
        )
        .catch((e: unknown) =>
          failures.push(`${op.method} ${op.path}: ${(e as Error).message.split('\n').slice(0, 3).join(' ')}`),
        );
    }
    expect(failures).toEqual([]);
    expect((await h.api('/healthz')).status).toBe(200);
  }, 240_000);

  it('answers every generated link message: a reply or a close, never silence; the link serves on', async () => {
    const shapes = z.toJSONSchema(agentMessageSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
    const message = fc.oneof(
      { weight: 6, arbitrary: fromSchema(shapes).map(toJson) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          '{',
          'null',
          '[]',
          '"register"',
          '\u0000',
          `${'['.repeat(6000)}${']'.repeat(6000)}`,
        ),
      },
      { weight: 1, arbitrary: anyJson.map(toJson) },
    );
    const ws = await open(h, agent.token);
    let link = ws;
    await fc.assert(
      fc.asyncProperty(message, async (text) => {
        if (link.readyState !== WebSocket.OPEN) link = await open(h, agent.token);
        const closed = new Promise<number>((resolve) => link.once('close', (code) => resolve(code)));
        link.send(text);
        // Then a valid register: it must be answered (`registered`) unless the bad message closed the link.
        const registered = new Promise<string>((resolve) => {
          const onMessage = (data: unknown) => {
            if (JSON.parse(String(data)).type === 'registered') {
              link.off('message', onMessage);
              resolve('registered');
            }
          };
          link.on('message', onMessage);
        });
        if (link.readyState === WebSocket.OPEN)
          link.send(
            JSON.stringify({
              type: 'register',
              workstation: {
                display_name: 'fuzz-box',
                cpu_count: 1,
                runtimes: ['x'],
                agent_version: '1',
                listening: true,
              },
              running_run_ids: [],
            }),
          );
        const outcome = await Promise.race([
          registered,
          closed,
          new Promise((r) => setTimeout(() => r('silence'), HANG_MS)),
        ]);
        // 1009: larger than the link's message limit (ws closes it).
        expect([LINK_CLOSE_CODES.invalid, 1009, 'registered']).toContain(outcome);
      }),
      { seed: SEED, numRuns: LINK_CASES },
    );
    link.close();
    expect((await h.api('/healthz')).status).toBe(200);
  }, 240_000);
});

async function open(h: Harness, token: string): Promise<WebSocket> {
  const ws = new WebSocket(`${h.cp.url.replace(/^http/, 'ws')}/api/agent/link`, {
    headers: { authorization: `Bearer ${token}` },
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return ws;
}
