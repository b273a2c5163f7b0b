// IP address parsing and CIDR sets. Lookups walk a binary trie, so their cost depends on the
// address length (≤ 32 or 128 steps), never on how many rules there are.

/** Parse an IPv4 or IPv6 literal into bytes (4 or 16); IPv4-mapped IPv6 becomes 4 bytes. */
export function parseIp(s: string): Uint8Array | null {
  if (s.length === 0 || s.length > 45) return null;
  if (s.indexOf(":") < 0) return parseV4(s);
  let text = s;
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const pct = text.indexOf("%");
  if (pct >= 0) text = text.slice(0, pct);
  const out = new Uint8Array(16);
  let tail: Uint8Array | null = null;
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) > 0) {
    tail = parseV4(text.slice(lastColon + 1));
    if (!tail) return null;
    text = text.slice(0, lastColon + 1) + "0:0";
  }
  const dbl = text.indexOf("::");
  if (dbl !== text.lastIndexOf("::")) return null;
  const head = dbl >= 0 ? text.slice(0, dbl) : text;
  const rest = dbl >= 0 ? text.slice(dbl + 2) : "";
  const hs = head === "" ? [] : head.split(":");
  const rs = rest === "" ? [] : rest.split(":");
  if (dbl < 0 && hs.length !== 8) return null;
  if (dbl >= 0 && hs.length + rs.length > 7) return null;
  const groups: number[] = [];
  for (const g of hs) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    groups.push(parseInt(g, 16));
  }
  const fill = 8 - hs.length - rs.length;
  for (let i = 0; i < fill; i++) groups.push(0);
  for (const g of rs) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    groups.push(parseInt(g, 16));
  }
  for (let i = 0; i < 8; i++) {
    out[i * 2] = groups[i]! >> 8;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  if (tail) out.set(tail, 12);
  // IPv4-mapped (::ffff:a.b.c.d) → plain IPv4
  let mapped = out[10] === 0xff && out[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (out[i] !== 0) mapped = false;
  return mapped ? out.slice(12) : out;
}

function parseV4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Canonical text of an address ("::ffff:1.2.3.4" → "1.2.3.4"); the input when unparsable. */
export function normalizeIp(s: string): string {
  if (s.startsWith("::ffff:") && s.indexOf(".") > 0) return s.slice(7);
  return s;
}

interface Node {
  zero: Node | null;
  one: Node | null;
  terminal: boolean;
}

const node = (): Node => ({ zero: null, one: null, terminal: false });

/** A set of CIDR blocks (IPv4 and IPv6). A bare address is a /32 or /128. */
export class CidrSet {
  private readonly v4 = node();
  private readonly v6 = node();
  size = 0;

  /** Returns an error message, or undefined when `cidr` was added. */
  add(cidr: string): string | undefined {
    const slash = cidr.indexOf("/");
    const addr = parseIp(slash >= 0 ? cidr.slice(0, slash) : cidr);
    if (!addr) return `invalid IP address or CIDR ${JSON.stringify(cidr)}`;
    const max = addr.length * 8;
    let bits = max;
    if (slash >= 0) {
      const b = cidr.slice(slash + 1);
      if (!/^\d{1,3}$/.test(b)) return `invalid prefix length in ${JSON.stringify(cidr)}`;
      bits = Number(b);
      // "::ffff:1.2.3.0/120" was mapped to IPv4: shift its prefix too
      if (addr.length === 4 && cidr.indexOf(":") >= 0) bits -= 96;
      if (bits < 0 || bits > max) return `prefix length out of range in ${JSON.stringify(cidr)}`;
    }
    let n = addr.length === 4 ? this.v4 : this.v6;
    for (let i = 0; i < bits && !n.terminal; i++) {
      const bit = (addr[i >> 3]! >> (7 - (i & 7))) & 1;
      if (bit) n = n.one ??= node();
      else n = n.zero ??= node();
    }
    n.terminal = true;
    n.zero = n.one = null; // a shorter prefix covers everything below it
    this.size++;
    return undefined;
  }

  has(addr: Uint8Array | null): boolean {
    if (!addr) return false;
    let n: Node | null = addr.length === 4 ? this.v4 : this.v6;
    const max = addr.length * 8;
    for (let i = 0; n !== null; i++) {
      if (n.terminal) return true;
      if (i >= max) return false;
      n = (addr[i >> 3]! >> (7 - (i & 7))) & 1 ? n.one : n.zero;
    }
    return false;
  }

  hasText(ip: string): boolean {
    return this.size > 0 && this.has(parseIp(ip));
  }
}
