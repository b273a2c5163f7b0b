// IP address parsing and CIDR sets (SPEC §2.4 ipAcl, §3.8 client IP).
//
// Parsing is hand-written (no regex, no split) because it runs on every request for the
// peer, the X-Forwarded-For entries and every ACL / geo lookup; `parseIpInto` writes into a
// caller-supplied buffer so lookups allocate nothing.
//
// A CidrSet is a binary trie kept in flat typed arrays (one for IPv4, one for IPv6, two roots in
// one node pool). A lookup walks at most 32 or 128 nodes whatever the number of rules, so
// 10 or 10,000 CIDRs cost the same per request. A prefix that is covered by a shorter one is not
// stored below it (the walk stops at the first terminal node).
//
// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, also written `::ffff:0102:0304`) is treated as the IPv4
// address everywhere: parsing yields 4 bytes, and a mapped CIDR `::ffff:a.b.c.d/N` (N ≥ 96) is
// stored as the IPv4 CIDR `/N-96`. `::/0` and other IPv6 CIDRs match IPv6 clients only.

/** Scratch buffer for lookups (single-threaded: never held across an await). */
const SCRATCH = new Uint8Array(16);
const GROUPS = new Uint16Array(8);

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Dotted-quad between [start, end) → 0..2^32-1, or -1. No leading zeros (ambiguous octal). */
export function parseV4Num(s: string, start: number, end: number): number {
  let acc = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const first = i;
    let v = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    const len = i - first;
    if (len === 0 || len > 3 || v > 255 || (len > 1 && s.charCodeAt(first) === 48)) return -1;
    acc = acc * 256 + v;
    parts++;
    if (parts === 4) break;
    if (i >= end || s.charCodeAt(i) !== 46) return -1;
    i++;
  }
  return i === end ? acc : -1;
}

/**
 * Parse an IPv4 or IPv6 literal (optionally `[bracketed]`, optionally with a `%zone`) into
 * `out` (≥ 16 bytes). Returns 4 (IPv4, also for IPv4-mapped IPv6), 16 (IPv6) or 0 (invalid).
 */
export function parseIpInto(s: string, out: Uint8Array): 0 | 4 | 16 {
  let start = 0;
  let end = s.length;
  if (end === 0 || end > 64) return 0;
  if (s.charCodeAt(0) === 91 /* [ */) {
    if (s.charCodeAt(end - 1) !== 93 /* ] */) return 0;
    start = 1;
    end--;
  }
  let colon = false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 58) colon = true;
    else if (c === 37 /* % */) {
      end = i; // zone id: ignored
      break;
    }
  }
  if (!colon) {
    if (start !== 0 || end !== s.length) return 0;
    const n = parseV4Num(s, start, end);
    if (n < 0) return 0;
    out[0] = n >>> 24;
    out[1] = (n >>> 16) & 255;
    out[2] = (n >>> 8) & 255;
    out[3] = n & 255;
    return 4;
  }
  if (!parseV6Groups(s, start, end)) return 0;
  for (let i = 0; i < 8; i++) {
    out[i * 2] = GROUPS[i]! >> 8;
    out[i * 2 + 1] = GROUPS[i]! & 255;
  }
  if (GROUPS[0] === 0 && GROUPS[1] === 0 && GROUPS[2] === 0 && GROUPS[3] === 0 && GROUPS[4] === 0 && GROUPS[5] === 0xffff) {
    out[0] = out[12]!;
    out[1] = out[13]!;
    out[2] = out[14]!;
    out[3] = out[15]!;
    return 4;
  }
  return 16;
}

/** IPv6 text in [start, end) → GROUPS. */
function parseV6Groups(s: string, start: number, end: number): boolean {
  let n = 0;
  let dbl = -1;
  let i = start;
  if (i < end && s.charCodeAt(i) === 58) {
    if (i + 1 >= end || s.charCodeAt(i + 1) !== 58) return false;
    dbl = 0;
    i += 2;
  }
  while (i < end) {
    if (n === 8) return false;
    const tok = i;
    let v = 0;
    while (i < end) {
      const h = hexVal(s.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
      i++;
      if (i - tok > 4) break;
    }
    if (i < end && s.charCodeAt(i) === 46 /* . */) {
      // embedded IPv4 tail: the last 32 bits
      if (n > 6) return false;
      const v4 = parseV4Num(s, tok, end);
      if (v4 < 0) return false;
      GROUPS[n++] = Math.floor(v4 / 65536);
      GROUPS[n++] = v4 & 0xffff;
      i = end;
      break;
    }
    const digits = i - tok;
    if (digits === 0 || digits > 4) return false;
    GROUPS[n++] = v;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && s.charCodeAt(i) === 58) {
      if (dbl >= 0) return false;
      dbl = n;
      i++;
    } else if (i === end) return false; // a single trailing colon
  }
  if (dbl < 0) return n === 8;
  if (n > 7) return false;
  // move the groups after "::" to the end, zero the gap
  const tail = n - dbl;
  for (let k = 1; k <= tail; k++) GROUPS[8 - k] = GROUPS[n - k]!;
  for (let k = dbl; k < 8 - tail; k++) GROUPS[k] = 0;
  return true;
}

/** Parse an IPv4 or IPv6 literal into a new array of 4 or 16 bytes; IPv4-mapped IPv6 gives 4. */
export function parseIp(s: string): Uint8Array | null {
  const n = parseIpInto(s, SCRATCH);
  return n === 0 ? null : SCRATCH.slice(0, n);
}

/** Canonical text of parsed bytes: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as "::"). */
export function formatIp(b: Uint8Array, len: number = b.length): string {
  if (len === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (b[i * 2] === 0 && b[i * 2 + 1] === 0) {
      let j = i;
      while (j < 8 && b[j * 2] === 0 && b[j * 2 + 1] === 0) j++;
      if (j - i > bestLen) {
        bestAt = i;
        bestLen = j - i;
      }
      i = j;
    } else i++;
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += "::";
      i += bestLen - 1;
      continue;
    }
    if (out !== "" && !out.endsWith(":")) out += ":";
    out += ((b[i * 2]! << 8) | b[i * 2 + 1]!).toString(16);
  }
  return out;
}

/**
 * Canonical text of an address: IPv4-mapped IPv6 → dotted quad, IPv6 → RFC 5952 form.
 * Dotted IPv4 (the common case) is returned as it is without parsing; unparsable input too.
 */
export function normalizeIp(s: string): string {
  if (s.indexOf(":") < 0) return s;
  const n = parseIpInto(s, SCRATCH);
  return n === 0 ? s : formatIp(SCRATCH, n);
}

const V4_ROOT = 1;
const V6_ROOT = 2;

/** A set of CIDR blocks (IPv4 and IPv6). A bare address is a /32 or /128. */
export class CidrSet {
  /** child[2n] = zero child, child[2n+1] = one child; 0 = none (node 0 is unused). */
  private child = new Int32Array(64);
  private terminal = new Uint8Array(32);
  private nodes = 3;
  /** Number of rules added (including ones covered by others). */
  size = 0;

  /** Returns an error message, or undefined when `cidr` was added. */
  add(cidr: string): string | undefined {
    const text = cidr.trim();
    const slash = text.indexOf("/");
    const buf = new Uint8Array(16);
    const len = parseIpInto(slash >= 0 ? text.slice(0, slash) : text, buf);
    if (len === 0) return `invalid IP address or CIDR ${JSON.stringify(cidr)}`;
    const max = len * 8;
    let bits = max;
    if (slash >= 0) {
      const b = text.slice(slash + 1);
      if (!/^\d{1,3}$/.test(b)) return `invalid prefix length in ${JSON.stringify(cidr)}`;
      bits = Number(b);
      if (len === 4 && text.indexOf(":") >= 0) {
        // "::ffff:1.2.3.0/120" was mapped to IPv4: shift its prefix too
        if (bits > 128) return `prefix length out of range in ${JSON.stringify(cidr)}`;
        if (bits < 96) return `IPv4-mapped prefix shorter than /96 in ${JSON.stringify(cidr)}: write the IPv4 and IPv6 ranges separately`;
        bits -= 96;
      }
      if (bits > max) return `prefix length out of range in ${JSON.stringify(cidr)}`;
    }
    this.insert(buf, len, bits);
    this.size++;
    return undefined;
  }

  private insert(addr: Uint8Array, len: number, bits: number): void {
    let n = len === 4 ? V4_ROOT : V6_ROOT;
    for (let i = 0; i < bits; i++) {
      if (this.terminal[n] === 1) return; // already covered by a shorter prefix
      const slot = 2 * n + ((addr[i >> 3]! >> (7 - (i & 7))) & 1);
      let next = this.child[slot]!;
      if (next === 0) {
        next = this.alloc();
        this.child[slot] = next;
      }
      n = next;
    }
    this.terminal[n] = 1;
    // everything below is covered now; unlink it (the nodes stay allocated, unreachable)
    this.child[2 * n] = 0;
    this.child[2 * n + 1] = 0;
  }

  private alloc(): number {
    if (this.nodes === this.terminal.length) {
      const t = new Uint8Array(this.terminal.length * 2);
      t.set(this.terminal);
      this.terminal = t;
      const c = new Int32Array(this.child.length * 2);
      c.set(this.child);
      this.child = c;
    }
    return this.nodes++;
  }

  /** Lookup of parsed bytes (`len` 4 or 16, default the array length). */
  has(addr: Uint8Array | null, len: number = addr ? addr.length : 0): boolean {
    if (!addr || (len !== 4 && len !== 16)) return false;
    const child = this.child;
    const terminal = this.terminal;
    let n = len === 4 ? V4_ROOT : V6_ROOT;
    const max = len * 8;
    for (let i = 0; ; i++) {
      if (terminal[n] === 1) return true;
      if (i >= max) return false;
      n = child[2 * n + ((addr[i >> 3]! >> (7 - (i & 7))) & 1)]!;
      if (n === 0) return false;
    }
  }

  /** Lookup of an address in text form; an unparsable address is in no set. */
  hasText(ip: string): boolean {
    if (this.size === 0) return false;
    const len = parseIpInto(ip, SCRATCH);
    return len !== 0 && this.has(SCRATCH, len);
  }
}
