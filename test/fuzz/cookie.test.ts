// Property-based fuzzing of the two Cookie readers (sticky/hash key: select.ts getCookie;
// rate-limit key: rate-limit.ts cookieValue) against one reference of RFC 6265 §4.2.1 / §5.4
// as a server reads it, and against each other: the same Cookie header must give the same
// key to stickiness, hashing and rate limiting.
import { test, expect } from "bun:test";
import fc from "fast-check";
import { getCookie } from "../../src/upstream/select.ts";
import { cookieValue } from "../../src/policy/rate-limit.ts";

const RUNS = 20_000;

/**
 * Reference: pairs are separated by ";" (and "," where several Cookie fields were joined); a
 * pair is `name=value` after leading SP/HTAB; names are compared case-sensitively; the first
 * match wins; its value is trimmed and loses one pair of surrounding double quotes. A piece
 * without "=" is no pair and hides nothing.
 */
function refCookie(header: string, name: string): string | null {
  for (const raw of header.split(/[;,]/)) {
    const piece = raw.replace(/^[ \t]+/, "");
    if (!piece.startsWith(name + "=")) continue;
    let v = piece.slice(name.length + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    return v;
  }
  return null;
}

const nameArb = fc.constantFrom("sid", "hecate_sticky_r", "a", "SID", "sid2", "s");
const valueArb = fc.oneof(fc.stringMatching(/^[A-Za-z0-9!#$%&'()*+\-./:<>?@[\]^_`{|}~]{0,12}$/), fc.constantFrom('"quoted"', '""', '"', " spaced ", "a=b", ""));
const pieceArb = fc.oneof(
  fc.tuple(nameArb, valueArb).map(([n, v]) => `${n}=${v}`),
  fc.constantFrom("flag", "", " ", "=", "=x", "sid", "sid =x", " sid=lead", "\tsid=tab"),
  fc.string({ maxLength: 8 }),
);
const headerArb = fc.tuple(fc.array(pieceArb, { maxLength: 6 }), fc.array(fc.constantFrom("; ", ";", ", ", " ; "), { minLength: 6, maxLength: 6 })).map(([pieces, seps]) =>
  pieces.map((p, i) => (i === 0 ? p : seps[i]! + p)).join(""),
);

test(`cookieValue (rate-limit key) agrees with the reference (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(headerArb, nameArb, (h, n) => {
      expect(cookieValue(h, n)).toBe(refCookie(h, n));
    }),
    { numRuns: RUNS },
  );
});

test(`getCookie (sticky and hash key) agrees with the reference and with cookieValue (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(headerArb, nameArb, (h, n) => {
      const want = refCookie(h, n) ?? "";
      expect(getCookie(h, n)).toBe(want);
      expect(getCookie(h, n)).toBe(cookieValue(h, n) ?? "");
    }),
    { numRuns: RUNS },
  );
});

test("examples: a valueless piece hides nothing; joined Cookie fields; quotes", () => {
  expect(getCookie("flag; sid=1", "sid")).toBe("1");
  expect(getCookie("a=1, sid=2", "sid")).toBe("2");
  expect(getCookie('sid="x"', "sid")).toBe("x");
  expect(getCookie("sid2=1; sid=2", "sid")).toBe("2");
  expect(getCookie(null, "sid")).toBe("");
});
