// "Scan the store's network" on a bridge's page: ask the bridge for a scan,
// see whether it is waiting or done, list the devices it found, and add
// ticked Milesight cameras (sensor id, user, password) to the bridge's next
// config version. Device text is the bridge's (and so the LAN's): it is only
// ever rendered as text. Passwords are write-only: the fields start empty.

import { bridgeConfig } from "../../lib/fleet/adoption";
import { allows, requireRole } from "../../lib/fleet/guard";
import { bridgeScan, deviceKey, sensorForDevice, type ScanDevice } from "../../lib/fleet/scan";
import { utc } from "../../lib/fleet/state";
import styles from "./fleet.module.css";
import { addScannedAction, startScanAction } from "./scan-actions";

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function words(value: unknown): string {
  return Array.isArray(value) ? value.map(str).filter(Boolean).join(", ") : "";
}

function yes(value: unknown, word: string): string {
  return value === true ? word : "";
}

export async function ScanSection({ bridgeId, outcome }: { bridgeId: string; outcome: Record<string, string> }) {
  const person = await requireRole("viewer");
  const mayEdit = allows(person.role, "installer");
  const [{ request, result }, config] = await Promise.all([bridgeScan(bridgeId), bridgeConfig(bridgeId)]);
  const local = config.reported?.config_source === "local";
  const sensors = Array.isArray(config.desired?.document.sensors)
    ? (config.desired.document.sensors as unknown[]).filter((s): s is Record<string, unknown> => typeof s === "object" && s !== null)
    : [];
  const waiting = request !== null && (result === null || request.id > result.scan_id);
  const state = waiting ? "waiting" : result === null ? "none" : result.error ? "failed" : "done";
  const devices: ScanDevice[] = result?.devices ?? [];
  return (
    <section id="scan" data-scan-state={state}>
      <h2>Devices on the store's network</h2>
      <p data-scan-status>
        {state === "none" ? "No scan yet." : null}
        {waiting && request ? (
          <>
            Scan {request.id} asked by {request.requested_by} at {utc(request.requested_at)}: waiting for the bridge (it
            asks at its next heartbeat or config check, within a minute or two).
          </>
        ) : null}
        {!waiting && result ? (
          <>
            Scan {result.scan_id} done at {utc(result.received_at)}
            {result.error ? (
              <span className={styles.alert} data-scan-error-reported>
                {" "}
                — failed on the bridge: {result.error}
              </span>
            ) : (
              `: ${devices.length} device${devices.length === 1 ? "" : "s"} found on ${words(result.looked.interfaces) || "the LAN"}`
            )}
            .
          </>
        ) : null}
      </p>
      {outcome.scan_asked ? (
        <p className={styles.ok} role="status" data-scan-asked={outcome.scan_asked}>
          Scan {outcome.scan_asked} asked for.
        </p>
      ) : null}
      {outcome.scan_added ? (
        <p className={styles.ok} role="status" data-scan-added={outcome.scan_added}>
          Added: saved as config version {outcome.scan_added}.
        </p>
      ) : null}
      {outcome.scan_error ? (
        <p className={styles.error} role="alert" data-scan-error>
          {outcome.scan_error}
        </p>
      ) : null}
      {local ? (
        <p className={styles.muted} data-scan-local>
          Managed on site: this bridge runs its card's config and takes no requests from this page. Over SSH,{" "}
          <code>sensor-bridge discover</code> lists the devices on its network.
        </p>
      ) : mayEdit ? (
        <form action={startScanAction} className={styles.form}>
          <input type="hidden" name="bridge" value={bridgeId} />
          <button type="submit" id="scan-start">
            Scan the store's network
          </button>{" "}
          <span className={styles.muted}>
            {waiting ? "Asking again replaces the waiting scan (a bridge that is off never answers it)." : ""}
          </span>
        </form>
      ) : null}
      {result && devices.length ? (
        <form action={addScannedAction} className={styles.editor} id="scan-form" autoComplete="off">
          <input type="hidden" name="bridge" value={bridgeId} />
          <input type="hidden" name="scan_id" value={String(result.scan_id)} />
          <table className={styles.table} id="scan-devices">
            <thead>
              <tr>
                <th>address</th>
                <th>MAC</th>
                <th>identity</th>
                <th>model</th>
                <th>firmware</th>
                <th>found by</th>
                <th>Milesight</th>
                <th>note</th>
                <th>add as sensor</th>
              </tr>
            </thead>
            <tbody>
              {devices.map((d, i) => {
                const known = sensorForDevice(sensors, d);
                const milesight = d.milesight === true;
                return (
                  <tr key={i} data-device={str(d.address)} data-milesight={milesight ? "yes" : "no"}>
                    <td className={styles.mono}>
                      <input type="hidden" name={`key.${i}`} value={deviceKey(d)} />
                      {Array.isArray(d.addresses) ? words(d.addresses) : str(d.address)}
                    </td>
                    <td className={styles.mono}>{str(d.mac) || "—"}</td>
                    <td className={styles.mono}>{str(d.identity) || "—"}</td>
                    <td>{str(d.model) || "—"}</td>
                    <td>{str(d.firmware) || "—"}</td>
                    <td>{words(d.found_by)}</td>
                    <td>{milesight ? "yes" : "no"}</td>
                    <td>
                      {[d.activated === false ? "not activated: set its password in its web page first" : "", yes(d.needs_credentials, "needs credentials")]
                        .filter(Boolean)
                        .join("; ") || str(d.note)}
                    </td>
                    <td style={{ minWidth: "11rem" }}>
                      {known ? (
                        <span data-in-config={str(known.id)}>
                          in the config as <span className={styles.mono}>{str(known.id)}</span>
                        </span>
                      ) : milesight && mayEdit && !local ? (
                        <>
                          <label className={styles.nowrap}>
                            <input type="checkbox" name={`pick.${i}`} style={{ width: "auto" }} /> add
                          </label>
                          <input name={`id.${i}`} placeholder="sensor id, e.g. entrance-1" maxLength={64} />
                          <input name={`user.${i}`} placeholder="user" defaultValue="admin" maxLength={64} />
                          <input type="password" name={`password.${i}`} placeholder="password" autoComplete="new-password" maxLength={200} />
                        </>
                      ) : (
                        <span className={styles.muted}>—</span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {mayEdit && !local ? (
            <p>
              <button type="submit" id="scan-add">
                Add the ticked cameras to the config
              </button>{" "}
              <span className={styles.muted}>Passwords are never shown again.</span>
            </p>
          ) : local ? (
            <p className={styles.muted}>Managed on site: add cameras in the card's sensor-bridge.toml.</p>
          ) : null}
        </form>
      ) : null}
    </section>
  );
}
