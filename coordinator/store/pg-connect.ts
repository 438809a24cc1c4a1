import { readFileSync } from "node:fs";
import pg from "pg";

// How the coordinator reaches PostgreSQL: a pool from the config's URL, the
// password from a file (or PGPASSFILE, which libpq's rules and `pg` read), TLS
// with a CA of the operator's, and rows shaped as SQLite returns them so that
// both stores map rows to records with the same code (sqlite-rows.ts).

export interface PostgresOptions {
  /** postgres://user@host:port/database (no password in it: see passwordFile). */
  url: string;
  /** A 0600 file holding the password; without it PGPASSFILE / ~/.pgpass apply. */
  passwordFile?: string;
  /** Verify the server with this CA (PEM); `tls: { ca }` turns TLS on. */
  tls?: { ca?: string; cert?: string; key?: string; servername?: string };
  /** Connections this coordinator may hold (default 10). */
  poolSize?: number;
}

const INT8 = 20;
const BOOL = 16;
const JSON_OID = 114;
const JSONB = 3802;

/**
 * BIGINT as a number (milliseconds and sequence numbers stay far below 2^53), booleans as
 * 0/1 and JSON as its text: the shapes better-sqlite3 gives, so sqlite-rows.ts maps both.
 */
const ROW_TYPES = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8) return (v: string) => Number(v);
    if (oid === BOOL) return (v: string) => (v === "t" ? 1 : 0);
    if (oid === JSONB || oid === JSON_OID) return (v: string) => v;
    // biome-ignore lint/suspicious/noExplicitAny: pg's own parser table is untyped by format
    return pg.types.getTypeParser(oid, format as any);
  },
};

export function openPool(options: PostgresOptions): pg.Pool {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new Error(`store.postgres: not a URL: ${options.url}`);
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new Error(`store.postgres: expected postgres://…, got ${url.protocol}`);
  }
  if (url.password) {
    throw new Error("store.postgres: put the password in passwordFile (or PGPASSFILE), not in the URL");
  }
  const password = options.passwordFile ? readFileSync(options.passwordFile, "utf8").trim() : undefined;
  const tls = options.tls && {
    ca: options.tls.ca ? readFileSync(options.tls.ca, "utf8") : undefined,
    cert: options.tls.cert ? readFileSync(options.tls.cert, "utf8") : undefined,
    key: options.tls.key ? readFileSync(options.tls.key, "utf8") : undefined,
    servername: options.tls.servername,
    rejectUnauthorized: true,
  };
  // Not `connectionString`: what pg parses from it overrides the rest, the password included.
  const pool = new pg.Pool({
    // ?host=/run/postgresql names a socket directory; [::1] is an IPv6 address.
    host: url.searchParams.get("host") ?? decodeURIComponent(url.hostname).replace(/^\[|\]$/g, ""),
    port: url.port ? Number(url.port) : 5432,
    user: decodeURIComponent(url.username) || undefined,
    database: decodeURIComponent(url.pathname.slice(1)) || undefined,
    ...(password !== undefined ? { password } : {}),
    ...(tls ? { ssl: tls } : {}),
    max: options.poolSize ?? 10,
    types: ROW_TYPES,
    application_name: "dragnet-coordinator",
  });
  return pool;
}

/**
 * Runs `work` on one of the pool's connections. While a connection is lent out the pool no
 * longer listens for its errors: one the server drops meanwhile (a restart, a fail-over) would
 * be an uncaught exception, so it is listened for here, and a connection that failed is
 * destroyed rather than handed out again.
 */
export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on("error", onError);
  try {
    return await work(client);
  } catch (err) {
    broken ??= err instanceof Error && isConnectionError(err) ? err : undefined;
    throw err;
  } finally {
    client.off("error", onError);
    client.release(broken);
  }
}

/** An error of the connection itself (not of a statement): the connection is not used again. */
function isConnectionError(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return (
    code === undefined || code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03"
  );
}

/** Runs `work` in one transaction on one of the pool's connections; rolls back when it throws. */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query("BEGIN");
    try {
      const out = await work(client);
      await client.query("COMMIT");
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
  });
}

/** Ids of `table` starting with `prefix` (a bound value, never SQL; starts_with is collation-free), in order. */
export async function idsByPrefix(
  pool: pg.Pool,
  table: "actions" | "evidence" | "incidents" | "schedules",
  prefix: string,
  limit: number,
): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM ${table} WHERE starts_with(id, $1) ORDER BY id COLLATE "C" LIMIT $2`,
    [prefix, limit],
  );
  return rows.map((r) => r.id);
}
