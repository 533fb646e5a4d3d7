// A bridge's page, bottom: the admin's retire/rotate controls (admins only;
// nobody else is offered them) and the bridge's audit log, newest first.

import Link from "next/link";
import { AUDIT_PAGE, auditRows } from "../../lib/fleet/audit";
import { allows, requireRole } from "../../lib/fleet/guard";
import { AuditTable } from "./audit-table";
import { BridgeAdmin } from "./bridge-admin";

export async function AuditSection({ bridgeId, retired }: { bridgeId: string; retired: boolean }) {
  const person = await requireRole("viewer");
  const rows = await auditRows(bridgeId, null);
  return (
    <>
      {allows(person.role, "admin") ? <BridgeAdmin bridgeId={bridgeId} retired={retired} /> : null}
      <section id="audit">
        <h2>Audit log</h2>
        <AuditTable rows={rows} showBridge={false} />
        {rows.length === AUDIT_PAGE ? (
          <p>
            <Link href={`/bridges/audit?bridge=${encodeURIComponent(bridgeId)}&before=${rows[rows.length - 1]?.id}`}>
              older →
            </Link>
          </p>
        ) : null}
      </section>
    </>
  );
}
