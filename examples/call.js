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
//
// A result too large for a NATS message is stored in the Object Store bucket
// toolbus_blobs, and the message is a stub with a "claim"; resolve() reads
// the object chunk by chunk with direct gets, as an agent's permissions allow.
//
//   node examples/call.js --result <call_id>     read a stored result later (claims resolved)
const { connect, headers, JSONCodec, Empty } = require("nats");
const crypto = require("crypto");

// resolve returns res, or the whole result its claim names: chunk n of the
// object is the last message on $O.toolbus_blobs.C.<object>.<n>, read by a
// direct get; the chunks add up to claim.size bytes with SHA-256 claim.digest.
async function resolve(nc, res, agent, callId) {
  const c = res.claim;
  if (!c) return res;
  if (c.bucket !== "toolbus_blobs" || !c.object.startsWith(`${agent}.${callId}.result.`)) {
    throw new Error(`claim ${c.bucket}/${c.object} is not this call's result`);
  }
  const parts = [];
  for (let n = 0; n < c.chunks; n++) {
    const m = await nc.request(`$JS.API.DIRECT.GET.OBJ_toolbus_blobs.$O.toolbus_blobs.C.${c.object}.${n}`, Empty, { timeout: 10_000 });
    if (m.headers && m.headers.code && m.headers.code !== 200) {
      throw new Error(`chunk ${n} of ${c.object}: ${m.headers.code} ${m.headers.description} (expired?)`);
    }
    parts.push(Buffer.from(m.data));
  }
  const body = Buffer.concat(parts);
  const digest = "SHA-256=" + crypto.createHash("sha256").update(body).digest("base64").replace(/\+/g, "-").replace(/\//g, "_");
  if (body.length !== c.size || digest !== c.digest) throw new Error(`object ${c.object} does not match its claim`);
  return JSON.parse(body.toString("utf8"));
}

function print(res) {
  if (res.status === "error") {
    console.error(`error (${res.error.code}): ${res.error.message}`);
    process.exitCode = 1;
  } else {
    for (const c of res.result.content) console.log(c.type === "text" ? c.text : JSON.stringify(c));
    if (res.status === "tool_error") process.exitCode = 1;
  }
}

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

  if (server === "--result") {
    // A late reader: a direct get of the stored result's exact subject.
    const callId = tool;
    const m = await nc.request(`$JS.API.DIRECT.GET.TOOL_RESULTS.tool.result.${agent}.${callId}`, Empty, { timeout: 10_000 });
    if (m.headers && m.headers.code && m.headers.code !== 200) throw new Error(`no stored result for ${callId}: ${m.headers.code}`);
    const res = await resolve(nc, jc.decode(m.data), agent, callId);
    if (res.call_id !== callId || res.agent !== agent) throw new Error("the stored result answers another call");
    print(res);
    await nc.close();
    return;
  }

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
    const res = await resolve(nc, jc.decode(m.data), agent, callId);
    if (res.call_id !== callId || res.agent !== agent) {
      console.error(`dropped a result that answers another call (${res.agent}/${res.call_id})`);
      process.exitCode = 1;
      continue;
    }
    print(res);
  }
  await nc.close();
}

main().catch((err) => {
  console.error(err.message || err);
  process.exit(2);
});
