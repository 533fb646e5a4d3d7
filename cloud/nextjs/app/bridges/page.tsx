// /bridges: the whole fleet, one row per bridge, rendered on the server.
// Behind HTTP basic auth (proxy.ts, FLEET_USER / FLEET_PASSWORD).

import type { Metadata } from "next";
import Link from "next/link";
import { Suspense } from "react";
import { alertThresholds } from "../../lib/bridge/alert-settings";
import { requireFleetViewer } from "../../lib/fleet/guard";
import { fleetRows } from "../../lib/fleet/queries";
import { age, bridgeState } from "../../lib/fleet/state";
import styles from "./fleet.module.css";

export const metadata: Metadata = { title: "Fleet · sensor-bridge", robots: { index: false } };

export default function FleetPage() {
  // Everything reads the request (credentials) and the database, so it all
  // renders at request time inside the boundary (cacheComponents needs one).
  return (
    <Suspense fallback={null}>
      <Fleet />
    </Suspense>
  );
}

async function Fleet() {
  await requireFleetViewer();
  const rows = await fleetRows();
  const silentAfter = alertThresholds().bridgeMinutes;
  const problems = rows.filter((r) => bridgeState(r.state, r.age_s, r.retired, silentAfter).tone === "red").length;
  return (
    <main className={styles.page}>
      <h1>Fleet</h1>
      <p className={styles.muted}>
        {rows.length} bridges, {problems} need attention. Silent means no heartbeat for more than {silentAfter} min.
      </p>
      <table className={styles.table} id="fleet">
        <thead>
          <tr>
            <th>bridge</th>
            <th>id</th>
            <th>sensors</th>
            <th>state</th>
            <th className={styles.num}>last heartbeat</th>
            <th>version</th>
            <th className={styles.num}>backlog</th>
            <th className={styles.num}>dropped</th>
            <th className={styles.num}>open incidents</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => {
            const state = bridgeState(r.state, r.age_s, r.retired, silentAfter);
            return (
              <tr key={r.id} data-bridge={r.id} data-state={state.word} data-tone={state.tone}>
                <td>
                  <Link href={`/bridges/${encodeURIComponent(r.id)}`}>{r.label || r.id}</Link>
                </td>
                <td className={`${styles.mono} ${styles.nowrap}`}>{r.id}</td>
                <td className={styles.mono} data-sensors>
                  {r.sensors.length
                    ? r.sensors.map((id, i) => (
                        <span key={id}>
                          {i ? ", " : ""}
                          <span className={styles.nowrap}>{id}</span>
                        </span>
                      ))
                    : "—"}
                </td>
                <td>
                  <span className={`${styles.badge} ${styles[state.tone]}`} data-badge>
                    {state.word}
                  </span>
                </td>
                <td className={styles.num} data-age>
                  {r.age_s === null ? "never" : `${age(r.age_s)} ago`}
                </td>
                <td className={styles.mono}>{r.version ?? "—"}</td>
                <td className={styles.num}>{r.backlog ?? "—"}</td>
                <td className={`${styles.num} ${r.dropped ? styles.alert : ""}`}>{r.dropped ?? "—"}</td>
                <td className={`${styles.num} ${r.open_incidents ? styles.alert : ""}`}>{r.open_incidents}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </main>
  );
}
