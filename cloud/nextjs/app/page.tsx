import Link from "next/link";

export default function Home() {
  return (
    <main style={{ padding: "1.5rem" }}>
      <h1 style={{ fontSize: "1.25rem" }}>sensor-bridge cloud</h1>
      <p>
        Appliances deliver to <code>/api/bridge/v1/ingest</code> and <code>/api/bridge/v1/heartbeat</code>. The
        state of the fleet: <Link href="/bridges">/bridges</Link>.
      </p>
    </main>
  );
}
