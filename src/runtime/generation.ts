// A generation = one compiled config. Each request reads `runtime.gen` once and keeps it to
// the end; a reload replaces it with one reference assignment.
import type { CompiledConfig } from "../config/compile.ts";

export interface Generation {
  readonly id: number;
  readonly compiled: CompiledConfig;
  readonly loadedAt: number; // Date.now()
}
