// Admin listener auth (SPEC §4): the same schemes as route auth with realm "hecate-admin".
// Compiled with the rest of the config (buildGlobalStages registers it per Config object) so a
// reload that changes admin.auth takes effect with the new generation; /healthz and /readyz
// are exempt (admin/server.ts does not call the check for them).
import type { Config } from "../config/schema.ts";
import { compileAuth, unauthorized, type Authenticator } from "./auth.ts";

export const ADMIN_REALM = "hecate-admin";

const byConfig = new WeakMap<object, Authenticator | null>();

export function registerAdminAuth(config: Config, a: Authenticator | null): void {
  byConfig.set(config, a);
}

function authenticatorFor(config: Config): Authenticator | null {
  let a = byConfig.get(config);
  if (a === undefined) {
    // compiled by someone who skipped the stage factories: build it now (errors were checked by the schema)
    a = compileAuth(config.admin.auth, "admin.auth", ADMIN_REALM, []);
    byConfig.set(config, a);
  }
  return a;
}

/** A 401 Response, or undefined when authorised (or when admin auth is off). */
export function checkAdminAuth(req: Request, rt: { gen: { compiled: { config: Config } } }): Response | undefined | Promise<Response | undefined> {
  const a = authenticatorFor(rt.gen.compiled.config);
  if (a === null) return undefined;
  const r = a.check(req.headers.get("authorization"));
  if (r === true) return undefined;
  if (r === false) return unauthorized(a.challenges);
  return r.then((ok) => (ok ? undefined : unauthorized(a.challenges)));
}
