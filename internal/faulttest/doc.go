// Package faulttest proves toolbus's delivery promise under faults: once
// JetStream has accepted a call, the caller gets exactly one result for that
// call id, whatever dies along the way, and nothing is dropped silently.
//
// Its tests (TestFault...) run real parts as separate processes on loopback:
// a standalone nats-server with file storage (TOOLBUS_NATS_SERVER, installed
// by `make test-deps`), toolbus worker processes, and the demo MCP server over
// streamable HTTP and over stdio. While a load generator sends thousands of
// calls, each test injects one fault:
//
//   - TestFaultKillWorker: kill -9 one of three workers, restart it later;
//   - TestFaultRestartNATS: kill -9 the NATS server and restart it on the
//     same port and store;
//   - TestFaultRestartMCPServer: kill the HTTP MCP server and restart it;
//   - TestFaultPoison: a tool that kills the worker running it (the demo's
//     kill_parent over stdio) must end in TOOL_DEAD with its reason, and the
//     caller must hear a dead_letter error;
//   - TestFaultDestructiveInterrupted: a destructive, non-idempotent call
//     whose worker dies mid-call must end outcome_unknown, having run once.
//
// The load generator publishes calls by hand as agent "load"
// (tool.call.load.<server>.<tool>, Nats-Msg-Id, Toolbus-Deadline) and counts
// every result per call id on one subscription to tool.reply.load.*, so a
// second, different answer cannot hide behind a client that keeps only the
// first (copies of the same stored answer are counted apart).
// The demo server's exec log tells how many times each call really ran.
// Each test prints one row of a table: calls sent, results, call ids with
// more than one result, calls with no result, dead letters, executions per
// call id, results by status, the recovery time after the fault and the wall
// time. SOAK_CALLS sets the size (default 1500; CI 3000; `make soak` 20000).
//
// The package holds tests only; this file exists for its documentation.
package faulttest
