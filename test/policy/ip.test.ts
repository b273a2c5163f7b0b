// IP parsing, canonical text and CidrSet (SPEC §2.4 ipAcl, §3.8).
import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { parseIp, normalizeIp, formatIp, CidrSet } from "../../src/policy/ip.ts";

const bytes = (s: string) => {
  const b = parseIp(s);
  return b ? [...b] : null;
};

describe("parseIp", () => {
  test("IPv4", () => {
    expect(bytes("1.2.3.4")).toEqual([1, 2, 3, 4]);
    expect(bytes("0.0.0.0")).toEqual([0, 0, 0, 0]);
    expect(bytes("255.255.255.255")).toEqual([255, 255, 255, 255]);
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "1..3.4", "1.2.3.4 ", " 1.2.3.4", "a.b.c.d", "1.2.3.4%eth0", "[1.2.3.4]", "1.2.3.4/8"])
      expect(parseIp(bad)).toBeNull();
  });

  test("IPv6 forms", () => {
    expect(bytes("::")).toEqual(new Array(16).fill(0));
    expect(bytes("::1")).toEqual([...new Array(15).fill(0), 1]);
    expect(bytes("2001:db8::1")).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(bytes("2001:DB8:0:0:0:0:0:1")).toEqual(bytes("2001:db8::1"));
    expect(bytes("1::")).toEqual([0, 1, ...new Array(14).fill(0)]);
    expect(bytes("[2001:db8::1]")).toEqual(bytes("2001:db8::1"));
    expect(bytes("fe80::1%eth0")).toEqual(bytes("fe80::1"));
    expect(bytes("::1.2.3.4")).toEqual([...new Array(12).fill(0), 1, 2, 3, 4]); // v4-compatible: stays IPv6
    expect(bytes("64:ff9b::192.0.2.33")).toEqual([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 33]);
    for (const bad of [":", ":::", "1:::2", ":1::", "1::2::3", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "12345::", "1:", "g::1", "::1.2.3", "1:2:3:4:5:6:7:1.2.3.4", "[::1", "::1]"])
      expect(parseIp(bad)).toBeNull();
  });

  test("IPv4-mapped IPv6 is the IPv4 address", () => {
    expect(bytes("::ffff:1.2.3.4")).toEqual([1, 2, 3, 4]);
    expect(bytes("::FFFF:1.2.3.4")).toEqual([1, 2, 3, 4]);
    expect(bytes("::ffff:0102:0304")).toEqual([1, 2, 3, 4]);
    expect(bytes("0:0:0:0:0:ffff:7f00:1")).toEqual([127, 0, 0, 1]);
    expect(bytes("[::ffff:127.0.0.1]")).toEqual([127, 0, 0, 1]);
  });
});

describe("normalizeIp / formatIp", () => {
  test("canonical text", () => {
    expect(normalizeIp("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(normalizeIp("::FFFF:7f00:1")).toBe("127.0.0.1");
    expect(normalizeIp("1.2.3.4")).toBe("1.2.3.4");
    expect(normalizeIp("2001:DB8:0:0:0:0:0:1")).toBe("2001:db8::1");
    expect(normalizeIp("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1"); // first of equal runs
    expect(normalizeIp("2001:db8:0:1:1:1:1:1")).toBe("2001:db8:0:1:1:1:1:1"); // a single 0 group is not "::"
    expect(normalizeIp("::")).toBe("::");
    expect(normalizeIp("::1")).toBe("::1");
    expect(normalizeIp("fe80::")).toBe("fe80::");
    expect(normalizeIp("not-an-ip")).toBe("not-an-ip");
  });

  test("format ∘ parse is stable and round-trips (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (s) => {
        const b = parseIp(s);
        expect(b).not.toBeNull();
        const text = formatIp(b!);
        expect([...parseIp(text)!]).toEqual([...b!]);
        expect(normalizeIp(text)).toBe(text.indexOf(":") < 0 ? text : formatIp(parseIp(text)!));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("CidrSet", () => {
  test("IPv4 and IPv6 CIDRs, bare addresses", () => {
    const s = new CidrSet();
    for (const c of ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]) expect(s.add(c)).toBeUndefined();
    expect(s.size).toBe(4);
    expect(s.hasText("10.255.0.1")).toBe(true);
    expect(s.hasText("11.0.0.1")).toBe(false);
    expect(s.hasText("192.168.1.7")).toBe(true);
    expect(s.hasText("192.168.1.8")).toBe(false);
    expect(s.hasText("2001:db8:ffff::1")).toBe(true);
    expect(s.hasText("2001:db9::1")).toBe(false);
    expect(s.hasText("::1")).toBe(true);
    expect(s.hasText("::2")).toBe(false);
    expect(s.hasText("::ffff:10.1.2.3")).toBe(true); // mapped client, IPv4 rule
    expect(s.hasText("garbage")).toBe(false);
    expect(s.hasText("")).toBe(false);
  });

  test("host bits are masked; /0 covers one family only", () => {
    const s = new CidrSet();
    s.add("10.1.2.3/8");
    expect(s.hasText("10.200.0.0")).toBe(true);
    const v4all = new CidrSet();
    v4all.add("0.0.0.0/0");
    expect(v4all.hasText("203.0.113.9")).toBe(true);
    expect(v4all.hasText("2001:db8::1")).toBe(false);
    const v6all = new CidrSet();
    v6all.add("::/0");
    expect(v6all.hasText("2001:db8::1")).toBe(true);
    expect(v6all.hasText("203.0.113.9")).toBe(false);
    expect(v6all.hasText("::ffff:203.0.113.9")).toBe(false); // mapped = IPv4
  });

  test("IPv4-mapped CIDRs become IPv4 CIDRs", () => {
    const s = new CidrSet();
    expect(s.add("::ffff:192.0.2.0/120")).toBeUndefined();
    expect(s.hasText("192.0.2.77")).toBe(true);
    expect(s.hasText("192.0.3.1")).toBe(false);
    expect(s.hasText("::ffff:192.0.2.1")).toBe(true);
    const all = new CidrSet();
    expect(all.add("::ffff:0:0/96")).toBeUndefined();
    expect(all.hasText("8.8.8.8")).toBe(true);
    expect(all.hasText("2001:db8::1")).toBe(false);
    expect(new CidrSet().add("::ffff:0:0/80")).toMatch(/IPv4-mapped/);
  });

  test("a longer prefix added after a shorter one, and the reverse", () => {
    const a = new CidrSet();
    a.add("10.0.0.0/8");
    a.add("10.1.0.0/16");
    const b = new CidrSet();
    b.add("10.1.0.0/16");
    b.add("10.0.0.0/8");
    for (const s of [a, b]) {
      expect(s.hasText("10.1.2.3")).toBe(true);
      expect(s.hasText("10.2.2.3")).toBe(true);
      expect(s.hasText("11.0.0.0")).toBe(false);
    }
  });

  test("invalid rules are reported", () => {
    const s = new CidrSet();
    expect(s.add("10.0.0.0/33")).toMatch(/prefix length/);
    expect(s.add("::/129")).toMatch(/prefix length/);
    expect(s.add("10.0.0.0/x")).toMatch(/prefix length/);
    expect(s.add("10.0.0.0/")).toMatch(/prefix length/);
    expect(s.add("300.0.0.0/8")).toMatch(/invalid IP/);
    expect(s.add("nope")).toMatch(/invalid IP/);
    expect(s.size).toBe(0);
  });

  // Reference: a linear scan over the rules, bit by bit.
  const inNet = (addr: Uint8Array, net: Uint8Array, bits: number) => {
    if (addr.length !== net.length) return false;
    for (let i = 0; i < bits; i++) if (((addr[i >> 3]! ^ net[i >> 3]!) >> (7 - (i & 7))) & 1) return false;
    return true;
  };

  test("agrees with a linear scan over many random rules (property)", () => {
    const v4rule = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 }));
    const v6rule = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 }));
    fc.assert(
      fc.property(fc.array(fc.oneof(v4rule, v6rule), { maxLength: 60 }), fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { minLength: 1, maxLength: 40 }), (rules, probes) => {
        const set = new CidrSet();
        const ref: [Uint8Array, number][] = [];
        for (const [ip, bits0] of rules) {
          const b = parseIp(ip)!;
          // a mapped IPv6 becomes IPv4: keep its prefix in range the way the config would write it
          const bits = b.length === 4 && ip.includes(":") ? Math.max(96, bits0) : Math.min(bits0, b.length * 8);
          expect(set.add(`${ip}/${bits}`)).toBeUndefined();
          ref.push([b, b.length === 4 && ip.includes(":") ? bits - 96 : bits]);
        }
        for (const p of probes) {
          const a = parseIp(p)!;
          // a few probes inside a rule's network, so that hits are exercised too
          expect(set.hasText(p)).toBe(ref.some(([n, bits]) => inNet(a, n, bits)));
        }
        for (const [n, bits] of ref) {
          const inside = formatIp(n);
          expect(set.hasText(inside)).toBe(true);
          void bits;
        }
      }),
      { numRuns: 300 },
    );
  });

  test("10,000 rules compile and answer correctly", () => {
    const s = new CidrSet();
    for (let i = 0; i < 10000; i++) expect(s.add(`${10 + (i >> 8)}.${i & 255}.0.0/16`)).toBeUndefined();
    expect(s.size).toBe(10000);
    expect(s.hasText("10.0.3.4")).toBe(true);
    expect(s.hasText("48.15.200.1")).toBe(true); // rule 9743
    expect(s.hasText("49.15.200.1")).toBe(true); // rule 9999, the last
    expect(s.hasText("49.16.0.1")).toBe(false);
    expect(s.hasText("9.0.0.1")).toBe(false);
  });
});
