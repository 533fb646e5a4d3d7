"use client";
// An admin's controls on a bridge's page: retire it and rotate its key, each
// behind a confirm step (open the box, then press the button that names the
// bridge). The new key is shown once, here, to be put on the bridge; it is in
// no URL and the page never shows it again. Rendered only for admins; the
// actions check the role again on the server.

import { useActionState } from "react";
import { type AdminOutcome, retireAction, rotateAction } from "./audit-actions";
import styles from "./fleet.module.css";

function Outcome({ state }: { state: AdminOutcome }) {
  return (
    <>
      {state.error ? (
        <p className={styles.error} role="alert" data-admin-error>
          {state.error}
        </p>
      ) : null}
      {state.done ? (
        <p className={styles.ok} data-admin-done>
          {state.done}
        </p>
      ) : null}
    </>
  );
}

export function BridgeAdmin({ bridgeId, retired }: { bridgeId: string; retired: boolean }) {
  const [retireState, retire, retiring] = useActionState(retireAction, {});
  const [rotateState, rotate, rotating] = useActionState(rotateAction, {});
  return (
    <section id="admin">
      <h2>Admin</h2>
      {retired ? (
        <p className={styles.muted}>This bridge is retired: its key is refused. Rotate its key to bring it back.</p>
      ) : (
        <details data-retire>
          <summary>Retire this bridge…</summary>
          <p className={styles.muted}>
            Its key is refused and it raises no alerts; its readings stay. Rotating its key brings it back.
          </p>
          <form action={retire} className={styles.form}>
            <input type="hidden" name="bridge" value={bridgeId} />
            <input type="hidden" name="confirm" value={bridgeId} />
            <button type="submit" disabled={retiring} data-confirm-retire>
              Retire {bridgeId} now
            </button>
          </form>
        </details>
      )}
      <Outcome state={retireState} />
      <details data-rotate>
        <summary>Rotate its key…</summary>
        <p className={styles.muted}>
          The bridge&apos;s key stops working at once; put the new one (shown once) in its config&apos;s [uplink] api_key.
        </p>
        <form action={rotate} className={styles.form}>
          <input type="hidden" name="bridge" value={bridgeId} />
          <input type="hidden" name="confirm" value={bridgeId} />
          <button type="submit" disabled={rotating} data-confirm-rotate>
            Give {bridgeId} a new key now
          </button>
        </form>
      </details>
      <Outcome state={rotateState} />
      {rotateState.key ? (
        <p data-new-key>
          New key, shown once: <code className={styles.mono}>{rotateState.key}</code>
        </p>
      ) : null}
    </section>
  );
}
