// Units of metrics.ts that the e2e test cannot reach: method normalisation and bucket edges.
import { test, expect } from "bun:test";
import { methodIndex, METHODS, HistogramCell, DURATION_BUCKETS } from "../../src/observability/metrics.ts";

test("methods are normalised to the known set, else OTHER", () => {
  for (const m of ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]) expect(METHODS[methodIndex(m)]).toBe(m as never);
  for (const m of ["CONNECT", "PROPFIND", "get", "", "BREW"]) expect(METHODS[methodIndex(m)]).toBe("OTHER");
});

test("a histogram cell puts a value in the first bucket whose bound is ≥ it (le semantics), else +Inf", () => {
  const c = new HistogramCell({});
  c.observe(0); // ≤ 0.0005
  c.observe(0.0005); // = bound: same bucket
  c.observe(0.00051); // next bucket
  c.observe(30);
  c.observe(31); // overflow
  expect(c.count).toBe(5);
  expect(c.counts[0]).toBe(2);
  expect(c.counts[1]).toBe(1);
  expect(c.counts[DURATION_BUCKETS.length - 1]).toBe(1);
  expect(c.counts[DURATION_BUCKETS.length]).toBe(1);
  expect(c.sum).toBeCloseTo(61.00101, 6);
});
