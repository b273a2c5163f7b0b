// IP ACL stage (SPEC §2.4 ipAcl): CIDR sets compiled once; lookup cost independent of the
// number of rules (see ip.ts). Deny beats allow; an empty allow list is "no allow rule"
// (everything not denied passes). Decisions use the client IP of SPEC §3.8.
import type { Stage } from "../pipeline/stage.ts";
import type { ConfigError } from "../config/load.ts";
import { CidrSet, parseIpInto } from "./ip.ts";
import { forbidden } from "./deny.ts";

export interface IpAclConfig {
  allowCidrs: string[];
  denyCidrs: string[];
}

const BUF = new Uint8Array(16);

export function compileCidrs(list: readonly string[], at: string, errors: ConfigError[]): CidrSet {
  const set = new CidrSet();
  list.forEach((c, i) => {
    const e = set.add(c);
    if (e) errors.push({ path: `${at}[${i}]`, message: e });
  });
  return set;
}

/** The ACL stage, or null when it has no rule at all. `at` is the key path of the ipAcl block. */
export function ipAclStage(cfg: IpAclConfig, at: string, errors: ConfigError[]): Stage | null {
  const allow = compileCidrs(cfg.allowCidrs, `${at}.allowCidrs`, errors);
  const deny = compileCidrs(cfg.denyCidrs, `${at}.denyCidrs`, errors);
  const hasAllow = allow.size > 0;
  const hasDeny = deny.size > 0;
  if (!hasAllow && !hasDeny) return null;
  return (ex) => {
    const len = parseIpInto(ex.clientIp, BUF);
    // an address we cannot parse is in no list: denied only when an allow rule exists
    if (len === 0) return hasAllow ? forbidden(ex, "ip_acl") : undefined;
    if (hasDeny && deny.has(BUF, len)) return forbidden(ex, "ip_acl");
    if (hasAllow && !allow.has(BUF, len)) return forbidden(ex, "ip_acl");
    return undefined;
  };
}
