// `bun run demo`: the two demo upstreams (127.0.0.1:18080, :18081) and Hecate on
// config/example.yaml, in one terminal. Ctrl-C stops all of it (Hecate drains first).
import { startDemoUpstream } from "./demo-upstreams.ts";

const ups = [startDemoUpstream(18080, "blue"), startDemoUpstream(18081, "green")];
console.log(JSON.stringify({ msg: "demo upstreams listening", urls: ups.map((u) => `http://127.0.0.1:${u.port}`) }));

const config = process.argv[2] ?? "config/example.yaml";
const proxy = Bun.spawn([process.execPath, "run", "src/main.ts", `-config=${config}`], {
  stdio: ["inherit", "inherit", "inherit"],
  cwd: `${import.meta.dir}/..`,
});
const stop = () => proxy.kill("SIGTERM");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
const code = await proxy.exited;
for (const u of ups) u.stop(true);
process.exit(code);
