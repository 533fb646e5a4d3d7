// Why a TLS connection to the database failed, in terms of the setting that
// fixes it. Without this a missing CA is a bare "internal error".
//
// Supabase signs its certificates with its own CA: `sslmode=require` in
// DATABASE_URL makes pg verify against the system CAs and fail with
// SELF_SIGNED_CERT_IN_CHAIN; DATABASE_CA_CERT is the fix.

const CERTIFICATE_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

const FIX_CA =
  "set DATABASE_CA_CERT to the PEM of the database's CA certificate (Supabase: Project Settings → Database → " +
  "SSL Configuration) and leave sslmode out of DATABASE_URL, or put ?sslmode=no-verify in DATABASE_URL " +
  "for an encrypted but unverified connection";

/** A sentence naming the TLS problem and the setting to change, or null when `err` is not one. */
export function databaseTlsProblem(err: unknown, env: NodeJS.ProcessEnv = process.env): string | null {
  if (!(err instanceof Error)) return null;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && CERTIFICATE_CODES.has(code)) {
    const ca = env.DATABASE_CA_CERT
      ? "DATABASE_CA_CERT is set but does not verify the server's certificate: check it is the CA of this database"
      : FIX_CA;
    return `the database's certificate was not accepted (${code}: ${err.message}); ${ca}`;
  }
  if (/server does not support SSL/i.test(err.message)) {
    return (
      `the database does not speak TLS (${err.message}); remove sslmode from DATABASE_URL and DATABASE_CA_CERT, ` +
      "or connect to a server that has TLS on"
    );
  }
  if (/PEM|certificate/i.test(err.message) && env.DATABASE_CA_CERT) {
    return `DATABASE_CA_CERT could not be used (${err.message}): it must be the PEM text, -----BEGIN CERTIFICATE----- included`;
  }
  return null;
}
