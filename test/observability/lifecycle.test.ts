// telemetry.logLevel follows a reload (the lifecycle module applies it per generation).
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate } from "../helpers/hecate.ts";
import { levelEnabled } from "../../src/observability/log.ts";

const dir = mkdtempSync(join(tmpdir(), "hecate-obs-life-"));
const configPath = join(dir, "hecate.yaml");
const config = (logLevel: string) => ({ admin: { listen: "127.0.0.1:0" }, proxy: { listen: "127.0.0.1:0" }, telemetry: { accessLog: false, logLevel } });
writeFileSync(configPath, JSON.stringify(config("error")));
const h = await startHecate(config("error"), { configPath });
afterAll(async () => {
  await h.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

test("a reload applies the new logLevel", async () => {
  expect(levelEnabled("warn")).toBe(false);
  writeFileSync(configPath, JSON.stringify(config("warn")));
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(200);
  expect(levelEnabled("warn")).toBe(true);
  expect(levelEnabled("info")).toBe(false);
  writeFileSync(configPath, JSON.stringify(config("error")));
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(200);
  expect(levelEnabled("warn")).toBe(false);
});
