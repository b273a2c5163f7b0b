// `hecate check --diff ADMIN_URL`: compare a file with the config a running instance serves.
import type { CompiledConfig } from "../config/compile.ts";

export async function printDiff(next: CompiledConfig, adminUrl: string, token: string | null): Promise<number> {
  void next;
  void adminUrl;
  void token;
  process.stderr.write("hecate check --diff: not implemented yet\n");
  return 2;
}
