// The running config as an operator may see it (GET /admin/config, `hecate check --diff`):
// every default applied, including the ones that depend on a sibling key, and every secret
// replaced by "<redacted>".
//
// Secrets: `password` and `bearerToken` anywhere (admin and route auth), every value of
// `telemetry.headers`, and the user-info part of any URL (`redis://user:pass@host` →
// `redis://<redacted>@host`; upstream, redis and OTLP URLs alike). The view is computed
// from the validated config, never from the raw file, so the two sides of a diff go through
// the same function.
import type { Config } from "../config/schema.ts";

export const REDACTED = "<redacted>";

const SECRET_KEYS = new Set(["password", "bearerToken"]);
/** scheme://userinfo@ — the user-info is everything up to the last "@" before the path. */
const URL_CREDENTIALS = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i;

/** `scheme://user:pass@host/…` → `scheme://<redacted>@host/…`; other strings unchanged. */
export function redactUrl(s: string): string {
  const m = URL_CREDENTIALS.exec(s);
  return m ? m[1] + REDACTED + s.slice(m[0].length - 1) : s;
}

function redact(value: unknown, key: string, path: string): unknown {
  if (typeof value === "string") return SECRET_KEYS.has(key) ? REDACTED : redactUrl(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, "", path));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    const headerValues = path === "telemetry.headers";
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      out[k] = headerValues ? REDACTED : redact(v, k, path === "" ? k : `${path}.${k}`);
    }
    return out;
  }
  return value;
}

const burstOf = (rps: number) => Math.max(1, Math.ceil(rps));

/** Fill the defaults that schema.ts leaves to compile.ts because they depend on a sibling. */
function applyDerivedDefaults(c: Record<string, any>): void {
  const p = c.proxy;
  if (p.limits.burst === undefined && p.limits.rps > 0) p.limits.burst = burstOf(p.limits.rps);
  const rl = (x: any) => {
    if (x && x.burst === undefined) x.burst = burstOf(x.rps);
  };
  rl(p.policy?.rateLimit);
  for (const r of p.routes) {
    rl(r.policy?.rateLimit);
    for (const rule of r.policy?.paths ?? []) rl(rule.rateLimit);
    if (r.stickiness.cookieName === "") r.stickiness.cookieName = `hecate_sticky_${r.name}`;
  }
  const t = c.telemetry;
  if (t.protocol === undefined && t.otlpEndpoint !== "") t.protocol = /:4318(\/|$)/.test(t.otlpEndpoint) ? "http/protobuf" : "grpc";
}

/** A JSON-ready copy of `config`: defaults applied, secrets redacted. Does not modify `config`. */
export function configView(config: Config): Record<string, unknown> {
  const copy = structuredClone(config) as Record<string, any>;
  applyDerivedDefaults(copy);
  return redact(copy, "", "") as Record<string, unknown>;
}
