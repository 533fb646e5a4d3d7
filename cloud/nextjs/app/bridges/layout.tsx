// Every fleet page: the session line (who, role, sign-out) above the page.

import { Suspense, type ReactNode } from "react";
import { SessionBar } from "./session-bar";

export default function FleetLayout({ children }: { children: ReactNode }) {
  return (
    <>
      <Suspense fallback={null}>
        <SessionBar />
      </Suspense>
      {children}
    </>
  );
}
