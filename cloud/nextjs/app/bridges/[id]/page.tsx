// /bridges/<id>: one bridge's sensors, each with its state, last final
// period and people in per hour over the last 7 days.

import type { Metadata } from "next";
import Link from "next/link";
import { notFound } from "next/navigation";
import { Suspense } from "react";
import { alertThresholds } from "../../../lib/bridge/alert-settings";
import { allows, requireFleetViewer } from "../../../lib/fleet/guard";
import { bridgeConfig } from "../../../lib/fleet/adoption";
import { bridgeDetail } from "../../../lib/fleet/queries";
import { age, bridgeState, sensorTone, utc } from "../../../lib/fleet/state";
import styles from "../fleet.module.css";
import { AuditSection } from "../audit-section";
import { ConfigSection } from "../config-editor";
import { HourlyChart } from "../hourly-chart";
import { IngestLogSection } from "../ingest-log-section";
import { ScanSection } from "../scan-section";

export const metadata: Metadata = { title: "Bridge · sensor-bridge", robots: { index: false } };

type Params = Promise<{ id: string }>;
type Search = Promise<Record<string, string | string[] | undefined>>;

export default function BridgePage({ params, searchParams }: { params: Params; searchParams: Search }) {
  return (
    <Suspense fallback={null}>
      <Bridge params={params} searchParams={searchParams} />
    </Suspense>
  );
}

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

async function Bridge({ params, searchParams }: { params: Params; searchParams: Search }) {
  const person = await requireFleetViewer();
  const { id } = await params;
  const search = await searchParams;
  const [detail, config] = await Promise.all([bridgeDetail(id), bridgeConfig(id)]);
  if (detail === null) notFound();
  const { bridge, sensors, series, firstHour } = detail;
  const state = bridgeState(bridge.state, bridge.age_s, bridge.retired, alertThresholds().bridgeMinutes);
  const charts = new Map(series.map((s) => [s.sensor_id, s.counts]));
  return (
    <main className={styles.page}>
      <p className={styles.muted}>
        <Link href="/bridges">← fleet</Link>
      </p>
      <h1>{bridge.label || bridge.id}</h1>
      <p data-bridge={bridge.id} data-tone={state.tone}>
        <span className={`${styles.badge} ${styles[state.tone]}`}>{state.word}</span>{" "}
        <span className={styles.mono}>{bridge.id}</span> · last heartbeat{" "}
        {bridge.age_s === null ? "never" : `${age(bridge.age_s)} ago (${utc(bridge.heartbeat_at)})`} · version{" "}
        {bridge.version ?? "—"} · backlog {bridge.backlog ?? "—"} · dropped {bridge.dropped ?? "—"} · open incidents{" "}
        {bridge.open_incidents}
      </p>
      <h2>Sensors</h2>
      <table className={styles.table} id="sensors">
        <thead>
          <tr>
            <th>sensor</th>
            <th>state</th>
            <th>last final period</th>
            <th>people in per hour, last 7 days</th>
          </tr>
        </thead>
        <tbody>
          {sensors.map((s) => {
            const counts = charts.get(s.sensor_id);
            const word = s.retired ? "retired" : (s.state ?? "not reported");
            return (
              <tr key={s.sensor_id} data-sensor={s.sensor_id}>
                <td>
                  <span className={styles.mono}>{s.sensor_id}</span>
                  <div className={styles.muted}>{s.kinds.join(", ")}</div>
                </td>
                <td>
                  <span className={`${styles.badge} ${styles[s.retired ? "grey" : sensorTone(s.state)]}`}>{word}</span>
                </td>
                <td>{utc(s.last_final)}</td>
                <td>
                  {counts ? (
                    <HourlyChart counts={counts} firstHour={firstHour} label={s.sensor_id} />
                  ) : (
                    <span className={styles.muted}>no line counts</span>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <ConfigSection bridgeId={bridge.id} view={config} saved={one(search.saved)} error={one(search.config_error)} role={person.role} canEdit={allows(person.role, "installer")} />
      <ScanSection bridgeId={bridge.id} outcome={{ scan_asked: one(search.scan_asked), scan_added: one(search.scan_added), scan_error: one(search.scan_error) }} />
      <IngestLogSection bridgeId={bridge.id} search={search} />
      <AuditSection bridgeId={bridge.id} retired={bridge.retired} />
    </main>
  );
}
