// A stock CometD client (npm `cometd`, with `cometd-nodejs-client` for the
// browser globals and `ws` for WebSocket), run by tests/cometd/main.rs:
//
//   node client.mjs <base-url> <long-polling|websocket> <gms_user|agent_id> <id> <channel>...
//
// It uses only the one transport named, handshakes with `ext: {<key>: <id>}`
// (plus `authorization: $COMETD_EXT_AUTHORIZATION` when that is set, as a
// browser sends its credential, since it cannot set headers on a WebSocket),
// subscribes to each channel, and prints one JSON object a line on stdout:
//
//   {"event":"handshake","successful":true,"transport":"websocket","clientId":"..."}
//   {"event":"connected","transport":"websocket","connectionType":"websocket"}
//   {"event":"subscribed","channel":"/_genesys","successful":true}
//   {"event":"message","channel":"/_genesys","data":{...},"transport":"websocket"}
//   {"event":"bye","transport":"websocket","connectionTypes":["websocket"],"requests":{"xhr":0,"websocket":1}}
//
// "bye" comes after stdin closes: the client disconnects, then exits.
// Everything the library logs goes to stderr.

import { adapt } from "cometd-nodejs-client";
import { CometD } from "cometd";

const [base, transport, key, id, ...channels] = process.argv.slice(2);
const TRANSPORTS = ["long-polling", "websocket"];
if (!base || !TRANSPORTS.includes(transport) || !["gms_user", "agent_id"].includes(key) || !id) {
  console.error(
    "usage: node client.mjs <base-url> <long-polling|websocket> <gms_user|agent_id> <id> <channel>...",
  );
  process.exit(2);
}

function print(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

// Never outlive the test that started us, even if it was killed (SIGKILL
// skips its kill-on-drop): unref'd, so it does not keep node alive itself.
const lifetime = Number(process.env.COMETD_CLIENT_LIFETIME_MS || 60000);
setTimeout(() => {
  print({ event: "lifetime-over", ms: lifetime });
  process.exit(3);
}, lifetime).unref();

// The adapter, as the cometd-nodejs-client README says: it installs
// window.XMLHttpRequest and window.WebSocket (from `ws`).
adapt();
// stdout is for our JSON lines only: the library logs through console
// (adapt() made console.debug = console.log).
for (const level of ["log", "info", "debug"]) {
  console[level] = (...args) => console.error(...args);
}

// Count what actually goes over the network, whatever the library reports:
// every long-polling request is an XMLHttpRequest, every WebSocket an instance.
const requests = { xhr: 0, websocket: 0 };
const Xhr = window.XMLHttpRequest;
window.XMLHttpRequest = class extends Xhr {
  constructor(...args) {
    super(...args);
    requests.xhr += 1;
  }

  open(method, url, ...rest) {
    // Kept to say which URL a failed request went to.
    this.requestUrl = url;
    return super.open(method, url, ...rest);
  }
};
const Ws = window.WebSocket;
window.WebSocket = class extends Ws {
  constructor(...args) {
    super(...args);
    requests.websocket += 1;
  }
};

const cometd = new CometD();
// Only the transport asked for: no fallback from websocket to long-polling.
for (const type of cometd.getTransportTypes()) {
  if (type !== transport) {
    cometd.unregisterTransport(type);
  }
}
if (cometd.getTransportTypes().join() !== transport) {
  console.error(`transport ${transport} is not available: ${cometd.getTransportTypes()}`);
  process.exit(2);
}
cometd.configure({
  url: `${base}/genesys/cometd`,
  logLevel: process.env.COMETD_LOG_LEVEL || "warn",
});

// The connectionType of every /meta/connect the library sent.
const connectionTypes = new Set();
cometd.registerExtension("connection-types", {
  outgoing(message) {
    if (message.channel === "/meta/connect") {
      connectionTypes.add(message.connectionType);
    }
    return message;
  },
});

// What went wrong below Bayeux (an HTTP status, a socket error), if anything.
function failure(reply) {
  const f = reply.failure;
  if (!f) {
    return null;
  }
  return {
    reason: String(f.reason ?? ""),
    httpCode: f.httpCode ?? null,
    connectionType: f.connectionType ?? null,
    url: f.transport?.requestUrl ?? null,
  };
}

const current = () => cometd.getTransport()?.type ?? null;

let connected = false;
let stopping = false;
cometd.addListener("/meta/connect", (reply) => {
  if (reply.successful && !connected) {
    connected = true;
    print({ event: "connected", transport: current(), connectionType: [...connectionTypes][0] ?? null });
  } else if (!reply.successful && !stopping) {
    print({ event: "connect-failed", error: reply.error ?? null, failure: failure(reply) });
  }
});

const ext = { [key]: id };
if (process.env.COMETD_EXT_AUTHORIZATION) {
  ext.authorization = process.env.COMETD_EXT_AUTHORIZATION;
}
cometd.handshake({ ext }, (reply) => {
  print({
    event: "handshake",
    successful: reply.successful,
    transport: current(),
    clientId: reply.clientId ?? null,
    error: reply.error ?? null,
  });
  if (!reply.successful) {
    return;
  }
  for (const channel of channels) {
    cometd.subscribe(
      channel,
      (message) => {
        print({ event: "message", channel: message.channel, data: message.data, transport: current() });
      },
      (subscribed) => {
        print({
          event: "subscribed",
          channel,
          successful: subscribed.successful,
          error: subscribed.error ?? null,
          failure: failure(subscribed),
        });
      },
    );
  }
});

function stop() {
  if (stopping) {
    return;
  }
  stopping = true;
  const transport = current();
  const bye = (disconnected) => {
    print({
      event: "bye",
      disconnected,
      transport,
      connectionTypes: [...connectionTypes],
      requests,
    });
    process.exit(0);
  };
  // A disconnect that gets no answer must not keep us.
  const timer = setTimeout(() => bye(false), 3000);
  cometd.disconnect((reply) => {
    clearTimeout(timer);
    bye(reply.successful);
  });
}
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
