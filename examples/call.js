// Call a toolbus tool from JavaScript with the nats client (npm install nats).
//
//   NATS_URL=nats://127.0.0.1:4222 node examples/call.js demo add '{"a":2,"b":3}'
//
// The wire contract in four steps: one inbox for replies; publish the
// arguments to tool.call.<server>.<tool> on JetStream with the call id in
// Nats-Msg-Id, the reply subject in Toolbus-Reply and a deadline; read the
// result from the inbox.
const { connect, headers, createInbox, JSONCodec } = require("nats");
const crypto = require("crypto");

async function main() {
  const [server = "demo", tool = "add", args = '{"a":2,"b":3}'] = process.argv.slice(2);
  const nc = await connect({ servers: process.env.NATS_URL || "nats://127.0.0.1:4222" });
  const js = nc.jetstream();
  const jc = JSONCodec();

  // Names are escaped into one subject token: letters, digits, '_' and '-'
  // stay; every other byte becomes '=' and two hex digits ("fs.read" -> "fs=2Eread").
  const esc = (s) =>
    Array.from(Buffer.from(s, "utf8"))
      .map((b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : "=" + b.toString(16).toUpperCase().padStart(2, "0")))
      .join("");

  const callId = crypto.randomBytes(16).toString("base64url");
  const inbox = createInbox();
  const sub = nc.subscribe(inbox, { max: 1 });

  const h = headers();
  h.set("Toolbus-Reply", inbox);
  h.set("Toolbus-Deadline", new Date(Date.now() + 30_000).toISOString());
  h.set("Toolbus-Agent", "js-example");
  await js.publish(`tool.call.${esc(server)}.${esc(tool)}`, jc.encode(JSON.parse(args)), { msgID: callId, headers: h });

  for await (const m of sub) {
    const res = jc.decode(m.data);
    if (res.status === "error") {
      console.error(`error (${res.error.code}): ${res.error.message}`);
      process.exitCode = 1;
    } else {
      for (const c of res.result.content) console.log(c.type === "text" ? c.text : JSON.stringify(c));
      if (res.status === "tool_error") process.exitCode = 1;
    }
  }
  await nc.close();
}

main().catch((err) => {
  console.error(err.message || err);
  process.exit(2);
});
