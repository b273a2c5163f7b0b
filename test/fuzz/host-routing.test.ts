// Property-based fuzzing of the Host/authority checks and the route matcher (SPEC §3.1 stage 1,
// §3.2): the handler's HOST_RE, normalizeHost, prefixMatches and Router.match, each against a
// reference written from the SPEC's words, 20,000 runs apiece.
import { test, expect } from "bun:test";
import fc from "fast-check";
import { HOST_RE } from "../../src/pipeline/handler.ts";
import { normalizeHost, prefixMatches, Router, type Routable } from "../../src/routing/router.ts";

const RUNS = 20_000;

/** Characters that matter around an authority, and the rest of Latin-1 now and then. */
const hostChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(..."abcXYZ019.-_~:[]%") },
  { weight: 2, arbitrary: fc.constantFrom(..."!$&'()*+;=@/?#,\\\" <>^`{|}") },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)) },
);
const hostish = fc.string({ unit: hostChar, maxLength: 24 });
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
const regName = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join("."));
const ipv6 = fc.ipV6().map((a) => `[${a}]`);
const validHost = fc.oneof(regName, fc.ipV4(), ipv6);

/**
 * Reference for HOST_RE, from RFC 3986 §3.2.2 as the handler narrows it: an IP-literal of hex
 * digits, ":" and "." in brackets, or a reg-name of unreserved / pct-encoded / sub-delims
 * characters; then an optional ":" and at most 5 digits.
 */
function refHostOk(s: string): boolean {
  let i = 0;
  if (s[0] === "[") {
    const end = s.indexOf("]");
    if (end < 2) return false;
    for (let k = 1; k < end; k++) if (!/[0-9A-Fa-f:.]/.test(s[k]!)) return false;
    i = end + 1;
  } else {
    while (i < s.length && /[A-Za-z0-9._~!$&'()*+;=%-]/.test(s[i]!)) i++;
    if (i === 0) return false;
  }
  if (i === s.length) return true;
  if (s[i] !== ":") return false;
  const port = s.slice(i + 1);
  return /^[0-9]*$/.test(port) && port.length <= 5;
}

test(`HOST_RE agrees with the RFC 3986 reference and never admits a delimiter (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.oneof(hostish, validHost, fc.tuple(validHost, fc.integer({ min: 0, max: 999_999 })).map(([h, p]) => `${h}:${p}`)), (s) => {
      const ok = HOST_RE.test(s);
      expect(ok).toBe(refHostOk(s));
      // an accepted Host can carry no userinfo, path, query, fragment, list or whitespace
      if (ok) expect(/[@/?#,\\\s"<>^`{|}\x00-\x1f\x7f-\xff]/.test(s)).toBe(false);
    }),
    { numRuns: RUNS },
  );
});

test("HOST_RE runs in linear time on adversarial input", () => {
  for (const s of ["a".repeat(100_000) + "@", "[" + ":".repeat(100_000), "a:" + "1".repeat(100_000), "%".repeat(100_000) + " "]) {
    const t0 = performance.now();
    HOST_RE.test(s);
    expect(performance.now() - t0).toBeLessThan(50);
  }
});

test(`normalizeHost: case and port never change the result; the result has no port and no trailing dot (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(validHost, fc.integer({ min: 0, max: 65_535 }), fc.boolean(), fc.boolean(), (h, port, upper, dot) => {
      const base = normalizeHost(h);
      const variant = (upper ? h.toUpperCase() : h) + (dot && !h.startsWith("[") ? "." : "") + `:${port}`;
      expect(HOST_RE.test(variant)).toBe(true);
      expect(normalizeHost(variant)).toBe(base);
      expect(base).toBe(base.toLowerCase());
      expect(base.endsWith(".")).toBe(false);
      if (!base.startsWith("[")) expect(base.includes(":")).toBe(false);
      else expect(base.endsWith("]")).toBe(true);
    }),
    { numRuns: RUNS },
  );
});

test(`normalizeHost never throws on anything HOST_RE admits (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(hostish, (s) => {
      if (!HOST_RE.test(s)) return;
      const n = normalizeHost(s);
      expect(typeof n).toBe("string");
      expect(n).toBe(n.toLowerCase());
    }),
    { numRuns: RUNS },
  );
});

// ---- paths and routes ------------------------------------------------------------------------

const segment = fc.constantFrom("api", "apix", "a", "b", "v1", "", "x.y", "%2f", "..");
const pathArb = fc.array(segment, { minLength: 0, maxLength: 4 }).map((s) => "/" + s.join("/"));
const prefixArb = fc.oneof(pathArb, pathArb.map((p) => (p.endsWith("/") ? p : p + "/")));

/** SPEC §2.3: `/api` matches `/api` and `/api/…`, not `/apix`; a prefix ending in `/` matches every path starting with it. */
function refPrefix(prefix: string, path: string): boolean {
  if (prefix.endsWith("/")) return path.startsWith(prefix);
  return path === prefix || path.startsWith(prefix + "/");
}

test(`prefixMatches agrees with the SPEC's wording (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(prefixArb, fc.oneof(pathArb, fc.string({ maxLength: 12 })), (prefix, path) => {
      expect(prefixMatches(prefix, path)).toBe(refPrefix(prefix, path));
    }),
    { numRuns: RUNS },
  );
});

interface R extends Routable {
  hosts: string[];
}

/**
 * SPEC §3.2 as written: exact host class, then wildcard classes (longer suffix first), then
 * any-host routes; the first class with a path match decides; in it the longest prefix wins,
 * ties to the earlier route.
 */
function refMatch(routes: R[], host: string, path: string): string | undefined {
  const classes: R[][] = [];
  classes.push(routes.filter((r) => r.hosts.some((h) => h.toLowerCase() === host)));
  const suffixes = [...new Set(routes.flatMap((r) => r.hosts.filter((h) => h.startsWith("*.")).map((h) => h.slice(1).toLowerCase())))]
    .filter((s) => host.length > s.length && host.endsWith(s))
    .sort((a, b) => b.length - a.length);
  for (const s of suffixes) classes.push(routes.filter((r) => r.hosts.some((h) => h.toLowerCase() === "*" + s)));
  classes.push(routes.filter((r) => r.hosts.length === 0));
  for (const cls of classes) {
    const hits = cls.filter((r) => refPrefix(r.pathPrefix, path));
    if (hits.length === 0) continue;
    hits.sort((a, b) => b.pathPrefix.length - a.pathPrefix.length || a.order - b.order);
    return hits[0]!.name;
  }
  return undefined;
}

const hostPattern = fc.constantFrom("a.example.com", "B.example.com", "example.com", "*.example.com", "*.a.example.com", "*.com", "other.org", "*.org");
const routeArb = fc.tuple(fc.array(hostPattern, { maxLength: 2 }), prefixArb);
const requestHost = fc.constantFrom("a.example.com", "b.example.com", "x.a.example.com", "example.com", "z.com", "other.org", "y.other.org", "nothing.net", "com");

test(`Router.match agrees with SPEC §3.2 (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.array(routeArb, { minLength: 1, maxLength: 6 }), requestHost, pathArb, (specs, host, path) => {
      const routes: R[] = specs.map(([hosts, pathPrefix], i) => ({ name: `r${i}`, hosts, pathPrefix, order: i }));
      const got = new Router(routes).match(host, path)?.name;
      expect(got).toBe(refMatch(routes, host, path));
    }),
    { numRuns: RUNS },
  );
});
