// A request stage: returns undefined to continue or a Response to stop (SPEC §3.1).
// Stages are built once per generation by factories; the closures never re-check config.
import type { Exchange } from "./exchange.ts";

export type StageResult = Response | undefined;
export type Stage = (ex: Exchange) => StageResult | Promise<StageResult>;
