// The PostgreSQL pool the bridge routes share, from DATABASE_URL.
//
// A direct `pg` connection (Supabase: the "Transaction pooler" connection
// string, port 6543) rather than supabase-js, because the ingest is one call
// of a SQL function with a jsonb argument and must run the same on Vercel and
// in tests against a plain PostgreSQL. Only unnamed statements are used, which
// is what a transaction-mode pooler supports.

import { Pool, type PoolConfig } from "pg";
import { ConfigError, envWholeNumber } from "./settings";

// Kept on globalThis so that Next.js dev-mode reloads (which re-evaluate
// modules) and warm serverless invocations reuse one pool.
const holder = globalThis as typeof globalThis & { __sensorBridgePool?: Pool };

export function poolConfig(env: NodeJS.ProcessEnv = process.env): PoolConfig {
  const url = env.DATABASE_URL;
  if (!url) throw new ConfigError("DATABASE_URL is not set");
  const config: PoolConfig = {
    connectionString: url,
    // A serverless instance serves few requests at once; many instances each
    // holding a large pool would exhaust the database's connections.
    max: envWholeNumber("BRIDGE_PG_POOL_MAX", 3),
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 10_000,
    // A stuck batch must end as a 503 (the appliance retries) before Vercel
    // kills the function. Client-side on purpose: a server-side
    // statement_timeout travels as a startup parameter, which transaction
    // poolers (PgBouncer) refuse; Supabase also caps statements per role.
    query_timeout: 20_000,
    application_name: "sensor-bridge-api",
  };
  const ca = env.DATABASE_CA_CERT;
  if (ca) {
    // Supabase signs its database certificates with its own CA (downloadable
    // from the project's database settings). Verify against it, and drop any
    // ssl* parameters from the URL: pg lets them override this object.
    const parsed = new URL(url);
    for (const name of [...parsed.searchParams.keys()]) {
      if (name.startsWith("ssl")) parsed.searchParams.delete(name);
    }
    config.connectionString = parsed.toString();
    config.ssl = { ca, rejectUnauthorized: true };
  }
  return config;
}

export function pool(): Pool {
  if (!holder.__sensorBridgePool) {
    const created = new Pool(poolConfig());
    // An idle connection dropped by the server or pooler emits an error on the
    // pool; without a listener Node would crash the whole process.
    created.on("error", (err: Error) => {
      console.error("sensor-bridge: idle database connection failed:", err.message);
    });
    holder.__sensorBridgePool = created;
  }
  return holder.__sensorBridgePool;
}
