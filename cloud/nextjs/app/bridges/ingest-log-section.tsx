// "Data received" on a bridge's page: every batch and heartbeat the cloud
// took from it, newest first, 100 a page, with what each batch changed (new
// readings, newer revisions, unchanged re-sends, refused with reasons), so
// "why did Tuesday's count change?" has an answer. Admins also see the form
// that sets how long the log is kept (fleet-wide).

import Link from "next/link";
import { allows, requireFleetViewer } from "../../lib/fleet/guard";
import { ingestLog, retention, type LogKind, type LogRow } from "../../lib/fleet/ingest-log";
import { utc } from "../../lib/fleet/state";
import { setIngestLogKeepAction } from "./ingest-log-actions";
import styles from "./fleet.module.css";

const SHOW: [LogKind, string][] = [
  ["", "all"],
  ["batch", "batches"],
  ["heartbeat", "heartbeats"],
];

type Search = Record<string, string | string[] | undefined>;

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

function seconds(moment: Date): string {
  return `${moment.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function what(row: LogRow): string {
  if (row.kind === "heartbeat") return `heartbeat (${row.state ?? "?"})`;
  return `batch of ${row.records}`;
}

function Reasons({ row }: { row: LogRow }) {
  if (row.refused === 0) return null;
  return (
    <ul className={styles.muted} data-refused-reasons>
      {row.refused_ids.map((r) => (
        <li key={r.id}>
          <span className={styles.mono}>{r.id.slice(0, 12)}…</span> {r.error}
        </li>
      ))}
      {row.refused_more > 0 ? <li>and {row.refused_more} more</li> : null}
    </ul>
  );
}

export async function IngestLogSection({ bridgeId, search }: { bridgeId: string; search: Search }) {
  const person = await requireFleetViewer();
  const raw = one(search.log_kind);
  const kind: LogKind = raw === "batch" || raw === "heartbeat" ? raw : "";
  const before = one(search.log_before);
  const [page, keep] = await Promise.all([ingestLog(bridgeId, kind, before), retention()]);
  const href = (query: Record<string, string>) => {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== ""));
    return `/bridges/${encodeURIComponent(bridgeId)}${q.size ? `?${q.toString()}` : ""}#data-received`;
  };
  const kept = one(search.log_kept);
  const keepError = one(search.log_keep_error);
  return (
    <section id="data-received" data-keep-days={keep.keep_days}>
      <h2>Data received</h2>
      <p className={styles.muted}>
        Every batch and heartbeat the cloud took from this bridge, newest first. A batch refused whole (malformed, too
        large, a wrong key) was not taken and is not listed: the bridge splits, halves or keeps it. Kept{" "}
        {keep.keep_days} days
        {keep.changed_by ? ` (set by ${keep.changed_by}, ${utc(keep.changed_at)})` : ""}.
      </p>
      {allows(person.role, "admin") ? (
        <form action={setIngestLogKeepAction} className={styles.form} id="ingest-log-keep">
          <input type="hidden" name="bridge" value={bridgeId} />
          <label>
            keep the log (days, every bridge)
            <input name="keep_days" type="number" min={1} max={3650} required defaultValue={keep.keep_days} />
          </label>
          <button type="submit">Save</button>
        </form>
      ) : null}
      {kept ? <p className={styles.ok}>Saved: the log is now kept {keep.keep_days} days.</p> : null}
      {keepError ? (
        <p className={styles.error} data-keep-error>
          {keepError}
        </p>
      ) : null}
      <p className={styles.muted}>
        show:{" "}
        {SHOW.map(([k, word], i) => (
          <span key={k}>
            {i ? " · " : ""}
            {k === kind ? <strong>{word}</strong> : <Link href={href({ log_kind: k })}>{word}</Link>}
          </span>
        ))}
      </p>
      {page.rows.length === 0 ? (
        <p className={styles.muted}>nothing received{before ? " before this" : " yet"}</p>
      ) : (
        <table className={styles.table} id="ingest-log">
          <thead>
            <tr>
              <th>received</th>
              <th>what</th>
              <th>batch id</th>
              <th className={styles.num}>new</th>
              <th className={styles.num}>newer revision</th>
              <th className={styles.num}>unchanged</th>
              <th>refused, and why</th>
            </tr>
          </thead>
          <tbody>
            {page.rows.map((row) => (
              <tr
                key={row.id}
                data-log-kind={row.kind}
                data-batch={row.batch_id ?? ""}
                data-new={row.new_readings}
                data-newer={row.newer_revision}
                data-unchanged={row.unchanged}
                data-refused={row.refused}
              >
                <td className={styles.nowrap}>{seconds(row.received_at)}</td>
                <td>{what(row)}</td>
                <td className={styles.mono}>{row.batch_id ?? ""}</td>
                <td className={styles.num}>{row.kind === "batch" ? row.new_readings : ""}</td>
                <td className={styles.num}>{row.kind === "batch" ? row.newer_revision : ""}</td>
                <td className={styles.num}>{row.kind === "batch" ? row.unchanged : ""}</td>
                <td>
                  {row.kind === "batch" ? <span className={row.refused ? styles.alert : undefined}>{row.refused}</span> : ""}
                  <Reasons row={row} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p className={styles.muted}>
        {before ? <Link href={href({ log_kind: kind })}>newest</Link> : null}
        {before && page.older ? " · " : null}
        {page.older ? <Link href={href({ log_kind: kind, log_before: page.older })}>older →</Link> : null}
      </p>
    </section>
  );
}
