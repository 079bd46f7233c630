// Call a toolbus tool from JavaScript with the nats client (npm install nats).
//
//   NATS_URL=nats://127.0.0.1:4222 node examples/call.js demo add '{"a":2,"b":3}'
//   NATS_URL=nats://127.0.0.1:4222 NATS_USER=agent1 NATS_PASSWORD=… node examples/call.js demo add '{"a":2,"b":3}'
//
// The wire contract in three steps, as agent <agent> (the NATS user, else
// TOOLBUS_AGENT, else "default"): subscribe to tool.reply.<agent>.<call_id>;
// publish the arguments to tool.call.<agent>.<server>.<tool> on JetStream
// with the call id in Nats-Msg-Id and a deadline; the result arrives on the
// subscription once it is stored (TOOL_RESULTS republishes it there).
const { connect, headers, JSONCodec } = require("nats");
const crypto = require("crypto");

async function main() {
  const [server = "demo", tool = "add", args = '{"a":2,"b":3}'] = process.argv.slice(2);
  const user = process.env.NATS_USER;
  const agent = process.env.TOOLBUS_AGENT || user || "default";
  const nc = await connect({
    servers: process.env.NATS_URL || "nats://127.0.0.1:4222",
    user,
    pass: process.env.NATS_PASSWORD,
    inboxPrefix: `_INBOX.${agent}`, // PubAcks arrive here; nats.conf lets an agent read only its own
  });
  const js = nc.jetstream();
  const jc = JSONCodec();

  // Names are escaped into one subject token: letters, digits, '_' and '-'
  // stay; every other byte becomes '=' and two hex digits ("fs.read" -> "fs=2Eread").
  const esc = (s) =>
    Array.from(Buffer.from(s, "utf8"))
      .map((b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : "=" + b.toString(16).toUpperCase().padStart(2, "0")))
      .join("");

  const callId = crypto.randomBytes(16).toString("base64url");
  // Subscribe before publishing: the result is delivered as it is stored.
  const sub = nc.subscribe(`tool.reply.${agent}.${callId}`, { max: 1 });
  await nc.flush();

  const h = headers();
  h.set("Toolbus-Deadline", new Date(Date.now() + 30_000).toISOString());
  await js.publish(`tool.call.${agent}.${esc(server)}.${esc(tool)}`, jc.encode(JSON.parse(args)), { msgID: callId, headers: h });

  for await (const m of sub) {
    const res = jc.decode(m.data);
    if (res.call_id !== callId || res.agent !== agent) {
      console.error(`dropped a result that answers another call (${res.agent}/${res.call_id})`);
      process.exitCode = 1;
      continue;
    }
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
