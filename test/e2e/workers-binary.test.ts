// proxy.workers in the compiled executable (dist/hecate, rebuilt when stale): the worker
// module is an extra entry point of `bun build --compile` (scripts/build.ts), loaded from the
// executable's embedded file system.
import { test, expect, afterAll } from "bun:test";
import { bin, ensureBinary } from "../cli/binary.ts";
import { startUpstream } from "../helpers/hecate.ts";
import { startWorkers, many, grew, type WorkersHecate } from "./workers-helpers.ts";

const up = startUpstream(() => new Response("ok"));
let hx: WorkersHecate | undefined;
afterAll(async () => {
  await hx?.stop();
  up.stop();
});

test("the compiled binary serves with two workers and stops cleanly", async () => {
  ensureBinary();
  hx = await startWorkers({ proxy: { routes: [{ name: "r", upstreams: [up.url] }] } }, { bin: [bin] });
  const before = await hx.perWorker();
  const res = await many(`${hx.url}/x`, 40);
  expect(res.every((r) => r.status === 200 && r.body === "ok")).toBe(true);
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  expect(await hx.h.stop()).toBe(0);
  expect(hx.h.lines.some((l) => l.msg === "stopped")).toBe(true);
}, 60_000);
