// Property-based fuzzing of the config loader (SPEC §2, §6 "an invalid config never replaces a
// working one"): whatever object or text comes in, validation never throws and answers either
// ok with a config, or a non-empty list of errors, each with a string key path and a message —
// and every path names a place that exists in the input (or the root).
import { test, expect } from "bun:test";
import fc from "fast-check";
import { validateConfig, parseConfigText, formatPath } from "../../src/config/load.ts";

const RUNS = 20_000;

/** Keys of the real schema (so that deep validation is reached), plus near misses and junk. */
const KEYS = [
  "admin", "proxy", "tls", "telemetry", "listen", "auth", "bearerToken", "basic", "username", "password",
  "http3Listen", "enableHTTP3", "enableH2C", "enableUpstreamH2C", "workers", "trustedProxies", "limits", "rps",
  "burst", "headerBytesCap", "bodyBytesCap", "clientIPHeader", "health", "intervalSec", "timeoutSec",
  "failThreshold", "successReset", "path", "expectStatus", "routes", "name", "hosts", "pathPrefix",
  "stripPrefix", "upstreams", "url", "weight", "lb", "algorithm", "hashKey", "maglevTableSize", "stickiness",
  "enabled", "mode", "cookieName", "headerName", "ttlSeconds", "strict", "policy", "ipAcl", "allowCidrs",
  "denyCidrs", "rateLimit", "key", "paths", "geoIp", "dbPath", "allowCountries", "denyCountries", "asn",
  "allowAsn", "denyAsn", "store", "redis", "failOpen", "retry", "maxRetries", "perTryTimeoutSec", "retryOn5xx",
  "circuitBreaker", "openAfterConsecutiveFailures", "cooldownSec", "server", "idleTimeoutSec",
  "maxHeaderBytes", "headers", "request", "response", "set", "remove", "certFiles", "keyFiles", "selfSigned",
  "minVersion", "serviceName", "otlpEndpoint", "protocol", "sampling", "accessLog", "logLevel",
  "pathPrefx", "__proto__", "constructor", "toString", "", " ", "a.b", "[0]", "routes[0]", "ünïcode",
];

const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom(":8443", "127.0.0.1:0", "http://127.0.0.1:1", "https://x", "10.0.0.0/8", "::/0", "/api", "*.x.com", "round_robin", "maglev", "cookie", "1.3", "auto", "ip", "header:X", "cookie:c", "$2b$10$abc", ""),
  fc.integer({ min: -5, max: 70_000 }),
  fc.double({ noNaN: false }),
  fc.boolean(),
  fc.constant(null),
);

const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalar,
    fc.array(tie("v"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie("v"), { maxKeys: 4 }),
  ),
})).v;

/** A config-shaped object: the real skeleton, with any subtree replaced by anything. */
const configShaped = fc.record(
  {
    admin: fc.oneof(value, fc.record({ listen: value, auth: value }, { requiredKeys: [] })),
    proxy: fc.oneof(
      value,
      fc.record(
        {
          listen: value,
          workers: value,
          trustedProxies: value,
          limits: value,
          retry: value,
          server: value,
          policy: value,
          routes: fc.oneof(value, fc.array(fc.record({ name: value, hosts: value, pathPrefix: value, upstreams: value, lb: value, stickiness: value, policy: value, retry: value, headers: value, auth: value }, { requiredKeys: [] }), { maxLength: 3 })),
        },
        { requiredKeys: [] },
      ),
    ),
    tls: value,
    telemetry: value,
  },
  { requiredKeys: [] },
);

/** Every key path in `input`, written as errors write them (formatPath). */
function pathsOf(input: unknown, prefix: (string | number)[] = [], out = new Set<string>()): Set<string> {
  out.add(formatPath(prefix));
  if (input !== null && typeof input === "object")
    for (const [k, v] of Object.entries(input)) pathsOf(v, [...prefix, Array.isArray(input) ? Number(k) : k], out);
  return out;
}

/** Does `path` name a place in the input (`all` = its paths), or a missing key of a mapping in it ("is required")? */
function pathExists(all: Set<string>, path: string): boolean {
  if (all.has(path)) return true;
  const m = /^(.*?)\.?([A-Za-z0-9]+)$/.exec(path);
  return m !== null && all.has(m[1]!);
}

function checkResult(input: unknown, r: ReturnType<typeof validateConfig>): void {
  if (r.ok) {
    expect(typeof r.config).toBe("object");
    return;
  }
  expect(r.errors.length).toBeGreaterThan(0);
  const all = pathsOf(input);
  for (const e of r.errors) {
    expect(typeof e.path).toBe("string");
    expect(typeof e.message).toBe("string");
    expect(e.message.length).toBeGreaterThan(0);
    if (!pathExists(all, e.path)) throw new Error(`error path ${JSON.stringify(e.path)} is not in the input: ${e.message}`);
  }
}

test(`validateConfig on config-shaped objects never throws (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(configShaped, (input) => {
      checkResult(input, validateConfig(input));
    }),
    { numRuns: RUNS },
  );
}, 60_000);

test(`validateConfig on any value never throws (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.oneof(value, fc.anything()), (input) => {
      checkResult(input, validateConfig(input));
    }),
    { numRuns: RUNS },
  );
}, 60_000);

test(`parseConfigText on YAML-ish text never throws (${RUNS} runs)`, () => {
  const yamlish = fc.oneof(
    fc.string({ maxLength: 200 }),
    // serialised objects with the odd byte changed: YAML syntax errors in realistic places
    fc.tuple(configShaped, fc.nat(), fc.constantFrom(":", "-", " ", "\t", "\n", "[", "{", "&", "*", "!", "|", ">", "%", "@", "`", "'", '"', "#")).map(([o, at, ch]) => {
      const s = JSON.stringify(o, null, 1).replace(/[{}",]/g, "");
      const i = s.length === 0 ? 0 : at % s.length;
      return s.slice(0, i) + ch + s.slice(i + 1);
    }),
  );
  // the yaml package warns (process.emitWarning) about collection keys such as `[0]: x`: noise here
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    fc.assert(
      fc.property(yamlish, (text) => {
        const r = parseConfigText(text, "fuzz.yaml");
        if (!r.ok) {
          expect(r.errors.length).toBeGreaterThan(0);
          for (const e of r.errors) expect(typeof e.path === "string" && typeof e.message === "string" && e.message.length > 0).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  } finally {
    process.emitWarning = emitWarning;
  }
}, 60_000);

test(`a key that is not in the schema is always reported, names of Object.prototype members too (${RUNS} runs)`, () => {
  const stray = fc.constantFrom("__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "pathPrefx", "listn", "x");
  const where = fc.constantFrom("root", "proxy", "route", "lb", "policy", "telemetry");
  fc.assert(
    fc.property(stray, where, fc.oneof(scalar, fc.dictionary(fc.constantFrom("pathPrefix", "store", "listen"), scalar, { maxKeys: 2 })), (key, at, val) => {
      const route: Record<string, unknown> = { name: "a", upstreams: ["http://127.0.0.1:1"], lb: {} };
      const proxy: Record<string, unknown> = { policy: {}, routes: [route] };
      const cfg: Record<string, unknown> = { proxy, telemetry: {} };
      const target = { root: cfg, proxy, route, lb: route.lb, policy: proxy.policy, telemetry: cfg.telemetry }[at] as object;
      Object.defineProperty(target, key, { value: val ?? 1, enumerable: true, writable: true, configurable: true });
      const r = validateConfig(cfg);
      const path = { root: "", proxy: "proxy.", route: "proxy.routes[0].", lb: "proxy.routes[0].lb.", policy: "proxy.policy.", telemetry: "telemetry." }[at] + key;
      if (r.ok || !r.errors.some((e) => e.path === path && /unknown key/.test(e.message))) throw new Error(`${path} not reported: ${JSON.stringify(r.ok ? "ok" : r.errors)}`);
    }),
    { numRuns: RUNS },
  );
}, 60_000);
