// Stage factories: build the global and per-route stage lists of a generation (SPEC §3.1).
// Global: limits bucket (3) → global policy ipAcl → geoIp → asn → rateLimit (4).
// Route: auth (6) → route policy ipAcl → geoIp → asn → rateLimit (7).
// Each factory validates what it needs, pushes errors with key paths, and registers
// disposers for anything it holds (timers, db handles).
import type { Config, RouteConfig } from "../../config/schema.ts";
import type { ConfigError } from "../../config/load.ts";
import type { Stage } from "../stage.ts";

export interface StageContext {
  errors: ConfigError[];
  /** Called when the generation is replaced or the compile fails. */
  disposers: (() => void)[];
}

export async function buildGlobalStages(config: Config, ctx: StageContext): Promise<Stage[]> {
  void config;
  void ctx;
  return [];
}

export async function buildRouteStages(route: RouteConfig, index: number, config: Config, ctx: StageContext): Promise<Stage[]> {
  void route;
  void index;
  void config;
  void ctx;
  return [];
}
