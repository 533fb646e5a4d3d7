// A bridge's config on its page: desired vs running (drift), what the bridge
// reported, and the editor that saves the next version. Server-rendered; the
// form posts to a server action. Passwords and the alert ping URL are never
// written into the page: their fields are always empty (blank = unchanged).

import { KINDS, type ConfigView } from "../../lib/fleet/adoption";
import { utc } from "../../lib/fleet/state";
import { saveConfigAction } from "./actions";
import styles from "./fleet.module.css";

type Row = Record<string, unknown>;

function list(value: unknown): Row[] {
  return Array.isArray(value) ? value.filter((v): v is Row => typeof v === "object" && v !== null) : [];
}

function table(value: unknown): Row {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Row) : {};
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

export function ConfigSection({
  bridgeId,
  view,
  saved,
  error,
  role,
  canEdit,
}: {
  bridgeId: string;
  view: ConfigView;
  saved: string;
  error: string;
  role: string;
  canEdit: boolean;
}) {
  const { desired, reported, refused } = view;
  const local = reported?.config_source === "local";
  const running = reported?.running_version ?? null;
  const drift = desired !== null && running !== desired.version;
  const doc = desired?.document ?? {};
  const sensors = [...list(doc.sensors), {}, {}];
  const devices = [...list(table(doc.mqtt).devices), {}];
  const hasPing = str(table(doc.alerts).ping_url) !== "";
  return (
    <section id="config" data-config-source={reported?.config_source ?? ""}>
      <h2>Config</h2>
      <p data-config-versions>
        desired: <strong data-desired>{desired ? `version ${desired.version}` : "none yet"}</strong>
        {desired ? ` (by ${desired.made_by}, ${utc(desired.made_at)})` : ""} · running:{" "}
        <strong data-running>{running === null ? "not reported" : `version ${running}`}</strong>
        {drift && !local ? (
          <span className={styles.alert} data-drift>
            {" "}
            · drift: the bridge does not run the desired version yet
          </span>
        ) : null}
      </p>
      {reported ? (
        <p data-reported-status={reported.status ?? ""}>
          the bridge reported {utc(reported.reported_at)}: source {reported.config_source ?? "—"}, tried version{" "}
          {reported.tried_version ?? "—"}, status <strong>{reported.status ?? "—"}</strong>
          {reported.error ? (
            <span className={styles.alert} data-reported-error>
              {" "}
              — {reported.error}
            </span>
          ) : null}
        </p>
      ) : null}
      {refused.length ? (
        <ul className={styles.muted} data-refused>
          {refused.map((r) => (
            <li key={r.version}>
              version {r.version} {r.refused === "rolled_back" ? "rolled back" : "refused as invalid"} by the bridge
              {r.refused_error ? `: ${r.refused_error}` : ""}; it is never offered again
            </li>
          ))}
        </ul>
      ) : null}
      {saved ? (
        <p className={styles.ok} role="status" data-saved={saved}>
          Saved as version {saved}. The bridge fetches it at its next heartbeat.
        </p>
      ) : null}
      {error ? (
        <p className={styles.error} role="alert" data-config-error>
          {error}
        </p>
      ) : null}
      {local ? (
        <p data-managed-on-site>
          <strong>Managed on site</strong>: a config file on the bridge's card wins over the cloud. Remove the card's
          sensor-bridge.toml to manage it here.
        </p>
      ) : !canEdit ? (
        <p className={styles.muted} data-no-edit>
          Your role ({role}) cannot edit the config: an installer or an admin does that.
        </p>
      ) : (
        <form action={saveConfigAction} className={styles.editor} id="config-form" autoComplete="off">
          <input type="hidden" name="bridge" value={bridgeId} />
          <input type="hidden" name="based_on" value={String(desired?.version ?? 0)} />
          <fieldset>
            <legend>Cameras</legend>
            <table className={styles.table}>
              <thead>
                <tr>
                  <th>id</th>
                  <th>url</th>
                  <th>user</th>
                  <th>password</th>
                  <th>zone</th>
                  <th>kinds</th>
                  <th>remove</th>
                </tr>
              </thead>
              <tbody>
                {sensors.map((s, i) => {
                  const collect = Array.isArray(s.collect) ? s.collect : s.id ? ["line_counts", "region_counts"] : ["line_counts"];
                  const known = str(s.id) !== "";
                  return (
                    <tr key={i} data-sensor-row={str(s.id)}>
                      <td>
                        <input type="hidden" name={`sensor.${i}.was`} value={str(s.id)} />
                        <input type="hidden" name={`sensor.${i}.type`} value={str(s.type) || "milesight-camera"} />
                        <input name={`sensor.${i}.id`} defaultValue={str(s.id)} placeholder="entrance-1" maxLength={64} />
                      </td>
                      <td>
                        <input name={`sensor.${i}.url`} defaultValue={str(s.url)} placeholder="http://camera-1.local" maxLength={200} />
                      </td>
                      <td>
                        <input name={`sensor.${i}.username`} defaultValue={str(s.username)} placeholder="admin" maxLength={64} />
                      </td>
                      <td>
                        <input
                          type="password"
                          name={`sensor.${i}.password`}
                          placeholder={known && str(s.password) ? "unchanged" : ""}
                          autoComplete="new-password"
                          maxLength={200}
                        />
                      </td>
                      <td>
                        <input name={`sensor.${i}.zone`} defaultValue={str(s.timezone)} placeholder="bridge's" maxLength={64} />
                      </td>
                      <td className={styles.nowrap}>
                        {KINDS.map((k) => (
                          <label key={k} className={styles.nowrap}>
                            <input type="checkbox" name={`sensor.${i}.kind.${k}`} defaultChecked={collect.includes(k)} style={{ width: "auto" }} />
                            {k.replace("_counts", "")}{" "}
                          </label>
                        ))}
                      </td>
                      <td>{known ? <input type="checkbox" name={`sensor.${i}.remove`} style={{ width: "auto" }} /> : null}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            <p className={styles.muted}>Leave a password blank to keep the stored one. Passwords are never shown again.</p>
          </fieldset>
          <fieldset>
            <legend>MQTT devices</legend>
            <table className={styles.table}>
              <thead>
                <tr>
                  <th>sensor id</th>
                  <th>serial</th>
                  <th>topic</th>
                  <th>DevEUI</th>
                  <th>model</th>
                  <th>remove</th>
                </tr>
              </thead>
              <tbody>
                {devices.map((d, i) => (
                  <tr key={i}>
                    {(["sensor_id", "serial", "topic", "dev_eui", "model"] as const).map((k) => (
                      <td key={k}>
                        <input name={`device.${i}.${k}`} defaultValue={str(d[k])} maxLength={200} />
                      </td>
                    ))}
                    <td>{str(d.sensor_id) ? <input type="checkbox" name={`device.${i}.remove`} style={{ width: "auto" }} /> : null}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </fieldset>
          <fieldset>
            <legend>Alerts and updates</legend>
            <label>
              alert ping URL{" "}
              <input
                type="password"
                name="alerts.ping_url"
                placeholder={hasPing ? "unchanged (set)" : "https://hc-ping.com/..."}
                autoComplete="new-password"
                maxLength={500}
              />
            </label>
            {hasPing ? (
              <label className={styles.nowrap}>
                <input type="checkbox" name="alerts.ping_url.remove" style={{ width: "auto" }} /> remove the ping URL
              </label>
            ) : null}
            <label>
              update window{" "}
              <input name="update.window" defaultValue={str(table(doc.update).window)} placeholder="Sun 03:00-05:00" maxLength={40} />
            </label>
          </fieldset>
          <button type="submit">Save as version {(desired?.version ?? 0) + 1}</button>
        </form>
      )}
    </section>
  );
}
