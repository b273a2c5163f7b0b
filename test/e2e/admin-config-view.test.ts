// configView(): what GET /admin/config and `check --diff` show — defaults that depend on a
// sibling key, and secrets redacted wherever they can appear.
import { test, expect } from "bun:test";
import { validateConfig } from "../../src/config/load.ts";
import { configView, redactUrl } from "../../src/admin/config-view.ts";

function view(raw: unknown): any {
  const v = validateConfig(raw);
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return configView(v.config);
}

test("URL credentials are redacted, the rest of the URL kept", () => {
  expect(redactUrl("redis://user:pw@redis.local:6379/0")).toBe("redis://<redacted>@redis.local:6379/0");
  expect(redactUrl("rediss://:p@ss@h:1")).toBe("rediss://<redacted>@h:1");
  expect(redactUrl("http://h:1/a@b")).toBe("http://h:1/a@b");
  expect(redactUrl("plain")).toBe("plain");
});

test("redis, OTLP, telemetry headers, passwords and tokens are redacted", () => {
  const c = view({
    admin: { auth: { basic: { username: "ops", password: "$2b$10$abcdefghijklmnopqrstuv" } } },
    telemetry: { otlpEndpoint: "https://u:otlp-pass@otel.example:4318", headers: { authorization: "Bearer tel", "x-k": "v" } },
    proxy: {
      policy: { store: { redis: { url: "redis://default:redis-pass@127.0.0.1:6379" } } },
      routes: [{ name: "r", upstreams: ["http://127.0.0.1:1"], auth: { basic: { username: "a", password: "b" }, bearerToken: "t" } }],
    },
  });
  const s = JSON.stringify(c);
  for (const secret of ["redis-pass", "otlp-pass", "Bearer tel", "abcdefghij", '"b"', '"t"']) expect(s).not.toContain(secret);
  expect(c.proxy.policy.store.redis.url).toBe("redis://<redacted>@127.0.0.1:6379");
  expect(c.telemetry.otlpEndpoint).toBe("https://<redacted>@otel.example:4318");
  expect(c.telemetry.headers).toEqual({ authorization: "<redacted>", "x-k": "<redacted>" });
  expect(c.admin.auth.basic).toEqual({ username: "ops", password: "<redacted>" });
  expect(c.proxy.routes[0].auth).toEqual({ basic: { username: "a", password: "<redacted>" }, bearerToken: "<redacted>" });
});

test("sibling-dependent defaults are filled in", () => {
  const c = view({
    telemetry: { otlpEndpoint: "collector:4318" },
    proxy: {
      limits: { rps: 2.5 },
      policy: { rateLimit: { rps: 0.5 } },
      routes: [{ name: "r", upstreams: ["http://127.0.0.1:1"], stickiness: { enabled: true }, policy: { paths: [{ pathPrefix: "/a", rateLimit: { rps: 7 } }] } }],
    },
  });
  expect(c.proxy.limits.burst).toBe(3);
  expect(c.proxy.policy.rateLimit).toEqual({ rps: 0.5, burst: 1, key: "ip" });
  expect(c.proxy.routes[0].policy.paths[0].rateLimit.burst).toBe(7);
  expect(c.proxy.routes[0].stickiness.cookieName).toBe("hecate_sticky_r");
  expect(c.telemetry.protocol).toBe("http/protobuf");
});

test("the config object itself is not modified", () => {
  const v = validateConfig({ admin: { auth: { bearerToken: "tok" } } });
  if (!v.ok) throw new Error("invalid");
  configView(v.config);
  expect(v.config.admin.auth!.bearerToken).toBe("tok");
});
