// /bridges: the whole fleet, one row per bridge, rendered on the server.
// For the fleet's people (lib/fleet/guard.ts); claiming needs an installer.

import type { Metadata } from "next";
import Link from "next/link";
import { Suspense } from "react";
import { alertThresholds } from "../../lib/bridge/alert-settings";
import { allows, requireFleetViewer } from "../../lib/fleet/guard";
import { fleetRows } from "../../lib/fleet/queries";
import { pendingBridges } from "../../lib/fleet/adoption";
import { age, bridgeState, utc } from "../../lib/fleet/state";
import { claimAction } from "./actions";
import styles from "./fleet.module.css";

export const metadata: Metadata = { title: "Fleet · sensor-bridge", robots: { index: false } };

type Search = Promise<Record<string, string | string[] | undefined>>;

export default function FleetPage({ searchParams }: { searchParams: Search }) {
  // Everything reads the request (credentials) and the database, so it all
  // renders at request time inside the boundary (cacheComponents needs one).
  return (
    <Suspense fallback={null}>
      <Fleet searchParams={searchParams} />
    </Suspense>
  );
}

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

async function Fleet({ searchParams }: { searchParams: Search }) {
  const person = await requireFleetViewer();
  const search = await searchParams;
  const [rows, pending] = await Promise.all([fleetRows(), pendingBridges()]);
  const claimed = one(search.claimed);
  const claimError = one(search.claim_error);
  const silentAfter = alertThresholds().bridgeMinutes;
  const problems = rows.filter((r) => bridgeState(r.state, r.age_s, r.retired, silentAfter).tone === "red").length;
  return (
    <main className={styles.page}>
      <h1>Fleet</h1>
      <p className={styles.muted}>
        {rows.length} bridges, {problems} need attention. Silent means no heartbeat for more than {silentAfter} min.
        {" "}<Link href="/bridges/audit">Audit log</Link>.
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

      <h2 id="claim">Claim a bridge</h2>
      <p className={styles.muted}>
        A bridge started from the fleet image shows an 8-character code (on its card in sensor-bridge-claim.txt, in{" "}
        <span className={styles.mono}>sensor-bridge status</span> and on its /health page). A code works once; five
        wrong codes lock claiming for 15 minutes.
      </p>
      {claimed ? (
        <p className={styles.ok} role="status" data-claimed={claimed}>
          Claimed: the bridge is now <Link href={`/bridges/${encodeURIComponent(claimed)}`}>{claimed}</Link>. Give it a
          config on its page.
        </p>
      ) : null}
      {claimError ? (
        <p className={styles.error} role="alert" data-claim-error>
          {claimError}
        </p>
      ) : null}
      {allows(person.role, "installer") ? null : (
        <p className={styles.muted} data-no-claim>
          Your role ({person.role}) cannot claim bridges: an installer or an admin does that.
        </p>
      )}
      {!allows(person.role, "installer") ? null : (
        <form action={claimAction} className={styles.form} id="claim-form">
          <label>
            code <input name="code" required maxLength={12} placeholder="K7QM-3XPD" autoComplete="off" spellCheck={false} />
          </label>
          <label>
            label <input name="label" required maxLength={200} placeholder="Lisbon Chiado" />
          </label>
          <label>
            time zone <input name="timezone" required maxLength={64} placeholder="Europe/Lisbon" list="zones" />
          </label>
          <label>
            id (optional) <input name="id" maxLength={128} placeholder="from the label" />
          </label>
          <datalist id="zones">
            {Intl.supportedValuesOf("timeZone").map((z) => (
              <option key={z} value={z} />
            ))}
          </datalist>
          <button type="submit">Claim</button>
        </form>
      )}

      <h2>Waiting to be claimed</h2>
      {pending.length === 0 ? (
        <p className={styles.muted}>No bridge is waiting. Unclaimed bridges are forgotten 14 days after they first asked.</p>
      ) : (
        <table className={styles.table} id="pending">
          <thead>
            <tr>
              <th>serial</th>
              <th>LAN address</th>
              <th>hostname</th>
              <th>version</th>
              <th>first seen</th>
              <th>last asked</th>
              <th>note</th>
            </tr>
          </thead>
          <tbody>
            {pending.map((p) => (
              <tr key={`${p.serial}-${p.first_seen.toISOString()}`} data-serial={p.serial}>
                <td className={styles.mono}>{p.serial}</td>
                <td className={styles.mono}>{p.lan_address || "—"}</td>
                <td className={styles.mono}>{p.hostname || "—"}</td>
                <td className={styles.mono}>{p.version || "—"}</td>
                <td>{utc(p.first_seen)}</td>
                <td>{utc(p.last_seen)}</td>
                <td>
                  {p.reflashed_from ? (
                    <span className={styles.alert} data-reflashed>
                      re-flashed (was {p.reflashed_from}): claim it again
                    </span>
                  ) : (
                    ""
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
