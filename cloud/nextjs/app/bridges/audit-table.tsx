// The audit log as a table: when (UTC), who, from where, what, the
// before/after summary. Every value is rendered as text (React escapes it): a
// label or an error from a bridge never becomes HTML.

import Link from "next/link";
import { type AuditRow, auditSummary } from "../../lib/fleet/audit";
import { utc } from "../../lib/fleet/state";
import styles from "./fleet.module.css";

function seconds(moment: Date): string {
  return `${moment.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function AuditTable({ rows, showBridge }: { rows: AuditRow[]; showBridge: boolean }) {
  if (rows.length === 0) return <p className={styles.muted}>Nothing recorded yet.</p>;
  return (
    <table className={styles.table} data-audit>
      <thead>
        <tr>
          <th>when</th>
          <th>who</th>
          <th>from</th>
          <th>what</th>
          {showBridge ? <th>bridge</th> : null}
          <th>before → after</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => (
          <tr key={row.id} data-audit-row={row.id} data-action={row.action}>
            <td className={styles.nowrap} title={utc(row.at)}>
              {seconds(row.at)}
            </td>
            <td data-actor>{row.actor}</td>
            <td className={styles.mono}>{row.source || "—"}</td>
            <td data-what>{row.action}</td>
            {showBridge ? (
              <td data-bridge-id={row.bridge_id ?? ""}>
                {row.bridge_id ? <Link href={`/bridges/${encodeURIComponent(row.bridge_id)}`}>{row.bridge_id}</Link> : "fleet"}
              </td>
            ) : null}
            <td data-summary>{auditSummary(row)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
