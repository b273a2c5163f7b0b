// prom-client's classes, each from its own file rather than from the package index. The index
// also loads Pushgateway (node:http, node:https, node:zlib) and AggregatorRegistry (node:cluster)
// for every process, and every module a process has loaded lengthens each of its young-generation
// GC pauses, which is Hecate's p99 (bench/RESULTS.md, eighth session). AggregatorRegistry is
// loaded when the worker supervisor first merges registries (aggregatorRegistry()).
import type * as P from "prom-client";

export const Counter: typeof P.Counter = require("prom-client/lib/counter");
export const Gauge: typeof P.Gauge = require("prom-client/lib/gauge");
export const Histogram: typeof P.Histogram = require("prom-client/lib/histogram");
export const Registry: typeof P.Registry = require("prom-client/lib/registry");
export const collectDefaultMetrics: typeof P.collectDefaultMetrics = require("prom-client/lib/defaultMetrics");
export type Aggregator = P.Aggregator;

/** prom-client's AggregatorRegistry (and node:cluster with it), loaded on first use. */
export function aggregatorRegistry(): typeof P.AggregatorRegistry {
  return require("prom-client/lib/cluster") as typeof P.AggregatorRegistry;
}
