// /bridges/audit: the fleet's audit log, newest first, 50 rows a page
// (?before=<id> pages back, ?bridge=<id> keeps one bridge's rows). Anyone who
// may see the fleet may read it.

import type { Metadata } from "next";
import Link from "next/link";
import { Suspense } from "react";
import { AUDIT_PAGE, auditRows } from "../../../lib/fleet/audit";
import { requireFleetViewer } from "../../../lib/fleet/guard";
import { AuditTable } from "../audit-table";
import styles from "../fleet.module.css";

export const metadata: Metadata = { title: "Audit log · sensor-bridge", robots: { index: false } };

type Search = Promise<Record<string, string | string[] | undefined>>;

export default function AuditPage({ searchParams }: { searchParams: Search }) {
  return (
    <Suspense fallback={null}>
      <Audit searchParams={searchParams} />
    </Suspense>
  );
}

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

async function Audit({ searchParams }: { searchParams: Search }) {
  await requireFleetViewer();
  const search = await searchParams;
  const bridge = one(search.bridge) || null;
  const before = one(search.before) || null;
  const rows = await auditRows(bridge, before);
  const older = new URLSearchParams({ ...(bridge ? { bridge } : {}), before: rows[rows.length - 1]?.id ?? "" });
  return (
    <main className={styles.page}>
      <p className={styles.muted}>
        <Link href="/bridges">← fleet</Link>
        {bridge ? (
          <>
            {" "}
            · <Link href={`/bridges/${encodeURIComponent(bridge)}`}>{bridge}</Link>
          </>
        ) : null}
      </p>
      <h1>Audit log{bridge ? ` of ${bridge}` : ""}</h1>
      <p className={styles.muted}>
        Every change, newest first: claims, config versions (which keys changed, never a password), retire, rotate,
        enroll tokens and people. Nobody can edit or delete a row.
      </p>
      <AuditTable rows={rows} showBridge={bridge === null} />
      <p>
        {before ? <Link href={bridge ? `/bridges/audit?bridge=${encodeURIComponent(bridge)}` : "/bridges/audit"}>newest</Link> : null}
        {before && rows.length === AUDIT_PAGE ? " · " : null}
        {rows.length === AUDIT_PAGE ? <Link href={`/bridges/audit?${older.toString()}`} data-older>older →</Link> : null}
      </p>
    </main>
  );
}
