// Property-based fuzzing of IP parsing, CIDR sets and the client-IP rule (SPEC §2.4 ipAcl,
// §3.8), each against an independent reference: RFC 4291 / RFC 5952 text forms written out
// with BigInt, BigInt prefix comparison for CIDR membership, and §3.8's sentence for
// X-Forwarded-For.
import { test, expect } from "bun:test";
import fc from "fast-check";
import { parseIp, formatIp, CidrSet } from "../../src/policy/ip.ts";
import { clientIpOf } from "../../src/pipeline/client-ip.ts";

const RUNS = 20_000;

// ---- reference address parsing -----------------------------------------------------------------

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

interface RefAddr {
  family: 4 | 6;
  /** 32 or 128 bits */
  value: bigint;
}

function v4Value(s: string): bigint {
  return s.split(".").reduce((a, o) => (a << 8n) | BigInt(o), 0n);
}

/** RFC 4291 §2.2 text forms: 8 groups, or "::" standing for one or more zero groups; a dotted IPv4 tail counts as two. */
function refParse6(s: string): bigint | null {
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (part: string): bigint[] | null => {
    if (part === "") return [];
    const out: bigint[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const g = items[i]!;
      if (i === items.length - 1 && g.includes(".")) {
        if (!V4.test(g)) return null;
        const v = v4Value(g);
        out.push(v >> 16n, v & 0xffffn);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) out.push(BigInt(parseInt(g, 16)));
      else return null;
    }
    return out;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (head === null || tail === null) return null;
  // a dotted tail may only end the address
  if (halves.length === 2 && halves[0]!.includes(".")) return null;
  let groups: bigint[];
  if (halves.length === 1) {
    if (head.length !== 8) return null;
    groups = head;
  } else {
    if (head.length + tail.length > 7) return null;
    groups = [...head, ...Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail];
  }
  return groups.reduce((a, g) => (a << 16n) | g, 0n);
}

/** IPv4 dotted quad (no leading zeros) or an RFC 4291 IPv6 text form; IPv4-mapped IPv6 becomes IPv4. */
function refParse(s: string): RefAddr | null {
  if (V4.test(s)) return { family: 4, value: v4Value(s) };
  if (!s.includes(":")) return null;
  const value = refParse6(s);
  if (value === null) return null;
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

function bytesToBig(b: Uint8Array): bigint {
  return b.reduce((a, x) => (a << 8n) | BigInt(x), 0n);
}

/** RFC 5952 §4: lower case, no leading zeros, the first longest run of ≥ 2 zero groups as "::". */
function refFormat(a: RefAddr): string {
  if (a.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((a.value >> s) & 255n)).join(".");
  const g = Array.from({ length: 8 }, (_, i) => Number((a.value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return hex.slice(0, best).join(":") + "::" + hex.slice(best + bestLen).join(":");
}

const v6Text = fc.oneof(
  fc.ipV6(),
  fc.ipV4().map((a) => `::ffff:${a}`),
  fc.ipV6().map((a) => a.toUpperCase()),
);
const addrText = fc.oneof(fc.ipV4(), v6Text);
const junk = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF:.[]%/x "), maxLength: 24 }),
  fc.ipV4().map((a) => a.replace(/\d+$/, (d) => "0" + d)), // a leading zero: octal in some parsers
);

test(`parseIp agrees with the reference on addresses and junk, and formatIp is canonical (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.oneof(addrText, junk), (s) => {
      const got = parseIp(s);
      const want = refParse(s);
      if (want === null) {
        // the implementation also takes [brackets] and %zone; anything else it must refuse
        if (got !== null && !/[\[%]/.test(s)) throw new Error(`parseIp accepted ${JSON.stringify(s)}`);
        return;
      }
      expect(got).not.toBeNull();
      expect(got!.length).toBe(want.family === 4 ? 4 : 16);
      expect(bytesToBig(got!)).toBe(want.value);
      const text = formatIp(got!);
      expect(text).toBe(refFormat(want));
      expect(bytesToBig(parseIp(text)!)).toBe(want.value); // canonical text parses back
    }),
    { numRuns: RUNS },
  );
});

// ---- CIDR sets ------------------------------------------------------------------------------

interface RefRule {
  family: 4 | 6;
  value: bigint;
  bits: number;
}

function refHas(rules: RefRule[], a: RefAddr): boolean {
  const width = a.family === 4 ? 32n : 128n;
  return rules.some((r) => r.family === a.family && (r.bits === 0 || a.value >> (width - BigInt(r.bits)) === r.value >> (width - BigInt(r.bits))));
}

const ruleArb = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, b]) => ({ text: `${a}/${b}`, ref: { ...refParse(a)!, bits: b } as RefRule })),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, b]) => {
    const p = refParse(a)!;
    // a mapped IPv6 prefix of /96 or more is the IPv4 prefix /N-96 (shorter ones are refused)
    if (p.family === 4) return { text: `${a}/${Math.max(96, b)}`, ref: { ...p, bits: Math.max(96, b) - 96 } as RefRule };
    return { text: `${a}/${b}`, ref: { ...p, bits: b } as RefRule };
  }),
  fc.ipV4().map((a) => ({ text: a, ref: { ...refParse(a)!, bits: 32 } as RefRule })),
);

/** Addresses near the rules (same prefix, random low bits) and elsewhere. */
function near(rule: RefRule, noise: bigint): RefAddr {
  const width = rule.family === 4 ? 32 : 128;
  const mask = (1n << BigInt(width)) - 1n;
  const keep = rule.bits === 0 ? 0n : (mask >> BigInt(width - rule.bits)) << BigInt(width - rule.bits);
  return { family: rule.family, value: (rule.value & keep) | (noise & mask & ~keep) };
}

test(`CidrSet.has agrees with a BigInt prefix reference (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(
      fc.array(ruleArb, { minLength: 0, maxLength: 8 }),
      fc.array(fc.tuple(fc.nat(), fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.boolean()), { minLength: 1, maxLength: 6 }),
      (rules, probes) => {
        const set = new CidrSet();
        for (const r of rules) expect(set.add(r.text)).toBeUndefined();
        const refs = rules.map((r) => r.ref);
        for (const [pick, noise, useNear] of probes) {
          const a: RefAddr =
            useNear && refs.length > 0 ? near(refs[pick % refs.length]!, noise) : pick % 2 === 0 ? { family: 4, value: noise & 0xffffffffn } : { family: 6, value: noise };
          // an IPv6 probe in ::ffff:0:0/96 is an IPv4 client
          const norm: RefAddr = a.family === 6 && a.value >> 32n === 0xffffn ? { family: 4, value: a.value & 0xffffffffn } : a;
          const text = refFormat(norm);
          expect(set.hasText(text)).toBe(refHas(refs, norm));
          expect(set.has(parseIp(text))).toBe(refHas(refs, norm));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test(`CidrSet.add never throws, and accepts only what parses (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.oneof(junk, junk.map((j) => j + "/" + (j.length % 140)), ruleArb.map((r) => r.text)), (s) => {
      const err = new CidrSet().add(s);
      if (err === undefined) {
        const slash = s.trim().indexOf("/");
        expect(parseIp(slash >= 0 ? s.trim().slice(0, slash) : s.trim())).not.toBeNull();
      } else expect(typeof err).toBe("string");
    }),
    { numRuns: RUNS },
  );
});

// ---- client IP (SPEC §3.8) ---------------------------------------------------------------------

/** "1.2.3.4:5678" → 1.2.3.4, "[::1]:80" → ::1: the port forms proxies write into XFF. */
function refStripPort(e: string): string {
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(e);
  if (m) return m[1]!;
  const colon = e.indexOf(":");
  return colon > 0 && colon === e.lastIndexOf(":") ? e.slice(0, colon) : e;
}

/** §3.8: the right-most untrusted X-Forwarded-For address (garbage: believe nothing left of it → the peer). */
function refClientIp(xff: string | null, peer: string, trusted: RefRule[]): string {
  if (xff === null) return peer;
  // an IPv6 zone (RFC 6874 `%eth0`) says nothing about the address: dropped
  const parts = xff.split(",").map((p) => {
    const e = refStripPort(p.trim());
    return refParse(e.includes(":") ? e.replace(/%[^%]*$/, "") : e);
  });
  for (let i = parts.length - 1; i >= 0; i--) {
    const a = parts[i];
    if (!a) return peer;
    if (!refHas(trusted, a)) return refFormat(a);
  }
  return refFormat(parts[0]!);
}

const xffEntry = fc.oneof(
  { weight: 5, arbitrary: addrText },
  { weight: 1, arbitrary: fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `${a}:${p}`) },
  { weight: 1, arbitrary: fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `[${a}]:${p}`) },
  { weight: 1, arbitrary: fc.constantFrom("10.0.0.1", "10.0.0.2", "192.168.1.1", "::1", "unknown", "", "1.2.3.4.5", "300.1.1.1", "fe80::1%eth0") },
);

test(`clientIpOf agrees with SPEC §3.8 for any X-Forwarded-For from a trusted peer (${RUNS} runs)`, () => {
  const trustedTexts = ["10.0.0.0/8", "192.168.0.0/16", "::1/128", "fd00::/8"];
  const trusted = new CidrSet();
  for (const t of trustedTexts) trusted.add(t);
  const refTrusted = trustedTexts.map((t) => {
    const [a, b] = t.split("/");
    const p = refParse(a!)!;
    return { ...p, bits: Number(b) } as RefRule;
  });
  const c = { clientIPHeader: "", trusted } as Parameters<typeof clientIpOf>[2];
  fc.assert(
    fc.property(fc.option(fc.array(xffEntry, { minLength: 1, maxLength: 5 }), { nil: null }), fc.constantFrom(" ", "", "  "), (entries, pad) => {
      const xff = entries === null ? null : entries.join("," + pad);
      const headers = new Headers();
      if (xff !== null) headers.set("x-forwarded-for", xff);
      const req = new Request("http://h/", { headers });
      const peer = "10.0.0.9";
      const got = clientIpOf(req, peer, c);
      expect(got).toBe(refClientIp(headers.get("x-forwarded-for"), peer, refTrusted));
    }),
    { numRuns: RUNS },
  );
});

test(`clientIpOf with clientIPHeader: its first entry, else the peer (${RUNS} runs)`, () => {
  const trusted = new CidrSet();
  trusted.add("10.0.0.0/8");
  const c = { clientIPHeader: "x-real-ip", trusted } as Parameters<typeof clientIpOf>[2];
  fc.assert(
    fc.property(fc.option(fc.array(xffEntry, { minLength: 1, maxLength: 3 }), { nil: null }), (entries) => {
      const headers = new Headers();
      if (entries !== null) headers.set("x-real-ip", entries.join(", "));
      // the trusted proxy's X-Forwarded-For is not read when clientIPHeader is set
      headers.set("x-forwarded-for", "6.6.6.6");
      const got = clientIpOf(new Request("http://h/", { headers }), "10.0.0.9", c);
      const v = headers.get("x-real-ip");
      let want = "10.0.0.9";
      if (v !== null) {
        const e = refStripPort(v.split(",")[0]!.trim());
        const a = refParse(e.includes(":") ? e.replace(/%[^%]*$/, "") : e);
        if (a) want = refFormat(a);
      }
      expect(got).toBe(want);
    }),
    { numRuns: RUNS },
  );
});
