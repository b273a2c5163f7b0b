// Basic / Bearer authentication (SPEC §3.1 stage 6, §4): schemes, hashes, the verified cache,
// config validation. End-to-end 401s and the admin listener: test/e2e/policy-auth.test.ts.
import { test, expect, describe, afterEach, afterAll } from "bun:test";
import { compileAuth, unauthorized, VERIFIED_CACHE_MAX } from "../../src/policy/auth.ts";
import type { ConfigError } from "../../src/config/load.ts";

const basic = (u: string, p: string) => "Basic " + Buffer.from(`${u}:${p}`).toString("base64");
const origVerify = Bun.password.verify;
let verifyCalls = 0;
(Bun.password as any).verify = (...a: Parameters<typeof origVerify>) => {
  verifyCalls++;
  return origVerify(...a);
};
afterEach(() => {
  verifyCalls = 0;
});
afterAll(() => {
  (Bun.password as any).verify = origVerify;
});

function make(cfg: any, realm = "hecate") {
  const errors: ConfigError[] = [];
  const a = compileAuth(cfg, "proxy.routes[0].auth", realm, errors);
  return { a: a!, errors };
}

describe("compileAuth", () => {
  test("absent → null", () => {
    expect(compileAuth(undefined, "x", "hecate", [])).toBeNull();
    expect(compileAuth({}, "x", "hecate", [])).toBeNull();
  });

  test("plain Basic: exact user and password, scheme case-insensitive", () => {
    const { a, errors } = make({ basic: { username: "alice", password: "s3cret" } });
    expect(errors).toEqual([]);
    expect(a.challenges).toEqual(['Basic realm="hecate"']);
    expect(a.check(basic("alice", "s3cret"))).toBe(true);
    expect(a.check("basic " + Buffer.from("alice:s3cret").toString("base64"))).toBe(true);
    expect(a.check(basic("alice", "s3cret!"))).toBe(false);
    expect(a.check(basic("alice", "s3cre"))).toBe(false);
    expect(a.check(basic("bob", "s3cret"))).toBe(false);
    expect(a.check(basic("Alice", "s3cret"))).toBe(false);
    expect(a.check("Basic " + Buffer.from("alices3cret").toString("base64"))).toBe(false);
    expect(a.check("Basic")).toBe(false);
    expect(a.check("Bearer s3cret")).toBe(false);
    expect(a.check(null)).toBe(false);
  });

  test("a password containing ':' and non-ASCII characters", () => {
    const { a } = make({ basic: { username: "ü", password: "a:b:ç" } });
    expect(a.check(basic("ü", "a:b:ç"))).toBe(true);
    expect(a.check(basic("ü", "a:b"))).toBe(false);
  });

  test("Bearer, and both schemes configured (either works)", () => {
    const { a } = make({ bearerToken: "tok-123", basic: { username: "u", password: "p" } });
    expect(a.challenges).toEqual(['Basic realm="hecate"', 'Bearer realm="hecate"']);
    expect(a.check("Bearer tok-123")).toBe(true);
    expect(a.check("bearer tok-123")).toBe(true);
    expect(a.check("Bearer tok-1234")).toBe(false);
    expect(a.check("Bearer ")).toBe(false);
    expect(a.check(basic("u", "p"))).toBe(true);
    const only = make({ bearerToken: "t" }).a;
    expect(only.check(basic("u", "p"))).toBe(false);
  });

  test("bcrypt hash: verified once, then served from the cache", async () => {
    const hash = await Bun.password.hash("pw-bcrypt", { algorithm: "bcrypt", cost: 4 });
    verifyCalls = 0;
    const { a, errors } = make({ basic: { username: "u", password: hash } });
    expect(errors).toEqual([]);
    const r = a.check(basic("u", "pw-bcrypt"));
    expect(r).toBeInstanceOf(Promise);
    expect(await r).toBe(true);
    expect(verifyCalls).toBe(1);
    for (let i = 0; i < 20; i++) expect(a.check(basic("u", "pw-bcrypt"))).toBe(true); // synchronous now
    expect(verifyCalls).toBe(1);
    expect(await a.check(basic("u", "wrong"))).toBe(false);
    expect(await a.check(basic("x", "pw-bcrypt"))).toBe(false); // right password, wrong user
    expect(verifyCalls).toBe(3);
    expect(await a.check(basic("x", "pw-bcrypt"))).toBe(false); // failures are not cached as successes
    // one entry per verified credential; only one credential can verify (Bun pre-hashes
    // passwords over 72 bytes, so there is no bcrypt truncation), and the set is capped anyway
    expect(a.verifiedCount()).toBe(1);
    expect(VERIFIED_CACHE_MAX).toBeGreaterThan(0);
  });

  test("argon2id hash", async () => {
    const hash = await Bun.password.hash("pw-argon", { algorithm: "argon2id", memoryCost: 1024, timeCost: 1 });
    const { a, errors } = make({ basic: { username: "u", password: hash } });
    expect(errors).toEqual([]);
    expect(await a.check(basic("u", "pw-argon"))).toBe(true);
    expect(await a.check(basic("u", "nope"))).toBe(false);
  });

  test("config errors carry key paths", () => {
    const { errors } = make({ basic: { username: "a:b", password: "$2b$10$tooshort" } });
    expect(errors.map((e) => e.path)).toEqual(["proxy.routes[0].auth.basic.username", "proxy.routes[0].auth.basic.password"]);
    expect(make({ basic: { username: "", password: "" } }).errors.map((e) => e.path)).toEqual([
      "proxy.routes[0].auth.basic.username",
      "proxy.routes[0].auth.basic.password",
    ]);
  });
});

test("unauthorized(): one WWW-Authenticate per scheme, text body", async () => {
  const r = unauthorized(['Basic realm="hecate-admin"', 'Bearer realm="hecate-admin"'], "rid");
  expect(r.status).toBe(401);
  expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(r.headers.get("x-request-id")).toBe("rid");
  const values: string[] = [];
  r.headers.forEach((v, k) => k === "www-authenticate" && values.push(v));
  expect(await r.text()).toBe("unauthorized\n");
  // appended separately; Headers.get() (and Bun.serve on the wire) join them with ", "
  expect(r.headers.get("www-authenticate")).toContain('Basic realm="hecate-admin"');
  expect(r.headers.get("www-authenticate")).toContain('Bearer realm="hecate-admin"');
});
