// The official MCP TypeScript SDK client against toolbus's MCP front door.
// Usage: node frontdoor-client.mjs http <url> [token]
//        node frontdoor-client.mjs stdio <command> [args...]
// Prints one JSON line per step; the Go test (internal/frontdoor) reads
// them and answers "add-server" by adding a server to the bus, after which
// this script waits for notifications/tools/list_changed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [mode, target, ...rest] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

let transport;
if (mode === "http") {
  const headers = rest[0] ? { Authorization: `Bearer ${rest[0]}` } : {};
  transport = new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
} else {
  transport = new StdioClientTransport({ command: target, args: rest, stderr: "inherit" });
}
const client = new Client({ name: "frontdoor-test", version: "1.0.0" });
let changed;
const listChanged = new Promise((r) => (changed = r));
client.setNotificationHandler(ToolListChangedNotificationSchema, () => changed());
await client.connect(transport);
say({ step: "initialized", capabilities: client.getServerCapabilities() });

const tools = await client.listTools();
say({ step: "list", names: tools.tools.map((t) => t.name) });

const add = await client.callTool({ name: "demo__add", arguments: { a: 2, b: 3 } });
say({ step: "add", text: add.content.map((c) => c.text).join(""), isError: !!add.isError });

let progress = 0;
await client.callTool({ name: "demo__sleep", arguments: { ms: 300, steps: 3 } }, undefined, {
  onprogress: () => progress++,
});
say({ step: "progress", count: progress });

// Cancel a long call once it runs: the SDK sends notifications/cancelled.
const ac = new AbortController();
let cancelErr = "";
try {
  await client.callTool({ name: "demo__sleep", arguments: { ms: 120000, steps: 1200 } }, undefined, {
    signal: ac.signal,
    onprogress: () => ac.abort("the test cancels"),
    timeout: 300000,
  });
} catch (e) {
  cancelErr = String(e);
}
say({ step: "cancelled", error: cancelErr });

// An MCP task (2025-11-25): created, polled, its result read, listed.
let taskId = "";
let taskText = "";
for await (const m of client.experimental.tasks.callToolStream(
  { name: "demo__add", arguments: { a: 4, b: 5 } }, undefined, { task: { ttl: 60000 } })) {
  if (m.type === "taskCreated") taskId = m.task.taskId;
  if (m.type === "result") taskText = m.result.content.map((c) => c.text).join("");
  if (m.type === "error") taskText = "error: " + String(m.error);
}
const task = await client.experimental.tasks.getTask(taskId);
const tasks = await client.experimental.tasks.listTasks();
say({ step: "task", text: taskText, status: task.status, listed: tasks.tasks.some((t) => t.taskId === taskId) });

say({ step: "add-server" });
await listChanged;
const after = await client.listTools();
say({ step: "list-changed", names: after.tools.map((t) => t.name) });
await client.close();
say({ step: "done" });
