// /bridges/refused: where an action lands when the person's role is too low
// for it ("your role (viewer) cannot claim bridges"). Nothing was changed.

import type { Metadata } from "next";
import Link from "next/link";
import { Suspense } from "react";
import { requireFleetViewer } from "../../../lib/fleet/guard";
import styles from "../fleet.module.css";

export const metadata: Metadata = { title: "Not allowed · sensor-bridge", robots: { index: false } };

type Search = Promise<Record<string, string | string[] | undefined>>;

export default function RefusedPage({ searchParams }: { searchParams: Search }) {
  return (
    <Suspense fallback={null}>
      <Refused searchParams={searchParams} />
    </Suspense>
  );
}

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

async function Refused({ searchParams }: { searchParams: Search }) {
  const person = await requireFleetViewer();
  const search = await searchParams;
  // only words: the query string is the visitor's, the page must not carry markup or links from it
  const doing = one(search.doing).replace(/[^\p{L}\p{N} ,'-]/gu, "").slice(0, 80) || "do that";
  const needed = ["installer", "admin"].includes(one(search.needed)) ? one(search.needed) : "a higher role";
  return (
    <main className={styles.page}>
      <h1>Not allowed</h1>
      <p className={styles.error} role="alert" data-refused>
        Your role ({person.role}) cannot {doing}: it needs {needed}. Nothing was changed. Ask an admin if you need it.
      </p>
      <p>
        <Link href="/bridges">← fleet</Link>
      </p>
    </main>
  );
}
