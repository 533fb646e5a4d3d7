// Serves the exported Next.js route handlers over plain Node HTTP on
// loopback, without Next.js: for the pytest suite, the benchmark and anyone
// trying the routes locally.
//
//   DATABASE_URL=postgres://... PORT=0 npx tsx test-server/server.ts
//
// It prints one line `listening http://127.0.0.1:<port>` once it accepts
// connections (PORT=0 picks a free port), and stops cleanly on SIGTERM/SIGINT.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import * as heartbeat from "../app/api/bridge/v1/heartbeat/route";
import * as ingest from "../app/api/bridge/v1/ingest/route";
import * as stale from "../app/api/bridge/v1/stale/route";
import * as cronAlerts from "../app/api/bridge/v1/cron/alerts/route";
import * as status from "../app/api/bridge/v1/status/[token]/route";
import { closePool } from "../lib/bridge/db";

// The second argument is what Next.js passes: the dynamic segments' values.
type Handler = (request: Request, context: { params: Promise<any> }) => Promise<Response>;

const routes: Record<string, Record<string, Handler>> = {
  "/api/bridge/v1/ingest": { POST: ingest.POST },
  "/api/bridge/v1/heartbeat": { POST: heartbeat.POST },
  "/api/bridge/v1/stale": { GET: stale.GET },
  "/api/bridge/v1/cron/alerts": { GET: cronAlerts.GET },
};

// Routes with a dynamic segment ([token]), matched like Next.js does.
const dynamicRoutes: [RegExp, Record<string, Handler>][] = [
  [/^\/api\/bridge\/v1\/status\/(?<token>[^/]+)$/, { GET: status.GET }],
];

function route(pathname: string): { methods?: Record<string, Handler>; params: Record<string, string> } {
  const fixed = routes[pathname];
  if (fixed) return { methods: fixed, params: {} };
  for (const [pattern, methods] of dynamicRoutes) {
    const match = pattern.exec(pathname);
    if (!match) continue;
    const params: Record<string, string> = {};
    for (const [name, value] of Object.entries(match.groups ?? {})) {
      try {
        params[name] = decodeURIComponent(value);
      } catch {
        return { params: {} };
      }
    }
    return { methods, params };
  }
  return { params: {} };
}

/**
 * The Node request body as a Web stream. Cancelling it (a handler that stops
 * at its size limit) discards the rest instead of resetting the connection,
 * as a real platform does, so the client still reads the 413.
 */
function bodyStream(req: IncomingMessage): ReadableStream<Uint8Array> {
  let open = true;
  const drain = (): void => {
    open = false;
    req.removeAllListeners("data");
    req.on("data", () => undefined);
    req.resume();
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.on("data", (chunk: Buffer) => {
        if (!open) return;
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 0) <= 0) req.pause();
      });
      req.on("end", () => {
        if (open) controller.close();
        open = false;
      });
      req.on("error", (err) => {
        if (open) controller.error(err);
        open = false;
      });
    },
    pull() {
      req.resume();
    },
    cancel() {
      drain();
    },
  });
}

async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`);
  const { methods, params } = route(url.pathname);
  const method = req.method ?? "GET";
  const handler = methods?.[method];
  let response: Response;
  if (!methods) {
    response = Response.json({ error: "not found" }, { status: 404 });
  } else if (!handler) {
    response = Response.json({ error: "method not allowed" }, { status: 405, headers: { allow: Object.keys(methods).join(", ") } });
  } else {
    const headers = new Headers();
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      headers.append(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
    }
    const hasBody = method !== "GET" && method !== "HEAD";
    // `duplex` is required by Node for a streamed request body; the DOM
    // typings used by Next.js do not know it yet.
    const init = { method, headers, body: hasBody ? bodyStream(req) : null, duplex: "half" } as RequestInit;
    response = await handler(new Request(url, init), { params: Promise.resolve(params) });
  }
  const body = Buffer.from(await response.arrayBuffer());
  res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
  res.end(body);
  // whatever the handler did not read is discarded so keep-alive stays usable
  if (!req.readableEnded) {
    req.removeAllListeners("data");
    req.on("data", () => undefined);
    req.resume();
  }
}

const server = createServer((req, res) => {
  serve(req, res).catch((err: unknown) => {
    console.error("test-server: handler crashed:", err);
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: "handler crashed" }));
  });
});

server.listen(Number(process.env.PORT ?? "0"), "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  console.log(`listening http://127.0.0.1:${port}`);
});

function stop(): void {
  server.close();
  server.closeAllConnections();
  closePool()
    .catch(() => undefined)
    .finally(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
