// Client IP from trusted proxies (SPEC §3.8). The handler only calls clientIpOf for a trusted
// peer; test/e2e/policy-acl.test.ts shows an untrusted peer's headers are ignored end to end.
import { test, expect } from "bun:test";
import { clientIpOf, normalizePeer } from "../../src/pipeline/client-ip.ts";
import { CidrSet } from "../../src/policy/ip.ts";

function cfg(trusted: string[], header = "") {
  const t = new CidrSet();
  for (const c of trusted) expect(t.add(c)).toBeUndefined();
  return { trusted: t, clientIPHeader: header };
}
const req = (h: Record<string, string>) => new Request("http://x/", { headers: h });

test("right-most untrusted X-Forwarded-For entry", () => {
  const c = cfg(["127.0.0.1/32", "10.0.0.0/8"]);
  expect(clientIpOf(req({ "x-forwarded-for": "203.0.113.7" }), "127.0.0.1", c)).toBe("203.0.113.7");
  // the client may write anything left of the real entry: it is skipped
  expect(clientIpOf(req({ "x-forwarded-for": "1.1.1.1, 203.0.113.7, 10.1.2.3" }), "127.0.0.1", c)).toBe("203.0.113.7");
  expect(clientIpOf(req({ "x-forwarded-for": "spoof, 198.51.100.2" }), "127.0.0.1", c)).toBe("198.51.100.2");
});

test("every hop trusted: the left-most entry", () => {
  const c = cfg(["10.0.0.0/8"]);
  expect(clientIpOf(req({ "x-forwarded-for": "10.9.9.9, 10.1.1.1" }), "10.0.0.1", c)).toBe("10.9.9.9");
});

test("garbage, empty entries and absent header fall back to the peer", () => {
  const c = cfg(["127.0.0.1/32"]);
  expect(clientIpOf(req({}), "127.0.0.1", c)).toBe("127.0.0.1");
  expect(clientIpOf(req({ "x-forwarded-for": "unknown" }), "127.0.0.1", c)).toBe("127.0.0.1");
  expect(clientIpOf(req({ "x-forwarded-for": "" }), "127.0.0.1", c)).toBe("127.0.0.1");
  expect(clientIpOf(req({ "x-forwarded-for": "203.0.113.7, ,127.0.0.1" }), "127.0.0.1", c)).toBe("127.0.0.1");
});

test("ports, brackets, IPv6 and IPv4-mapped entries are canonicalised", () => {
  const c = cfg(["127.0.0.1/32", "::1"]);
  expect(clientIpOf(req({ "x-forwarded-for": "203.0.113.7:5555" }), "127.0.0.1", c)).toBe("203.0.113.7");
  expect(clientIpOf(req({ "x-forwarded-for": "[2001:DB8::0:1]:443" }), "::1", c)).toBe("2001:db8::1");
  expect(clientIpOf(req({ "x-forwarded-for": "2001:db8:0:0::1" }), "::1", c)).toBe("2001:db8::1");
  expect(clientIpOf(req({ "x-forwarded-for": "::ffff:198.51.100.4" }), "127.0.0.1", c)).toBe("198.51.100.4");
  // a trusted hop written in mapped form is still trusted
  expect(clientIpOf(req({ "x-forwarded-for": "198.51.100.4, ::ffff:127.0.0.1" }), "127.0.0.1", c)).toBe("198.51.100.4");
});

test("several X-Forwarded-For fields are read as one list", () => {
  const c = cfg(["127.0.0.1/32"]);
  const h = new Headers();
  h.append("x-forwarded-for", "198.51.100.1");
  h.append("x-forwarded-for", "203.0.113.9");
  expect(clientIpOf(new Request("http://x/", { headers: h }), "127.0.0.1", c)).toBe("203.0.113.9");
});

test("clientIPHeader: its first entry, X-Forwarded-For ignored", () => {
  const c = cfg(["127.0.0.1/32"], "x-real-ip");
  expect(clientIpOf(req({ "x-real-ip": "198.51.100.9", "x-forwarded-for": "203.0.113.7" }), "127.0.0.1", c)).toBe("198.51.100.9");
  expect(clientIpOf(req({ "x-real-ip": " 198.51.100.9 , 10.0.0.1" }), "127.0.0.1", c)).toBe("198.51.100.9");
  expect(clientIpOf(req({ "x-forwarded-for": "203.0.113.7" }), "127.0.0.1", c)).toBe("127.0.0.1");
  expect(clientIpOf(req({ "x-real-ip": "bogus" }), "127.0.0.1", c)).toBe("127.0.0.1");
});

test("peer normalisation", () => {
  expect(normalizePeer("::ffff:127.0.0.1")).toBe("127.0.0.1");
  expect(normalizePeer("127.0.0.1")).toBe("127.0.0.1");
  expect(normalizePeer("::1")).toBe("::1");
});
