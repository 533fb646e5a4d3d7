// The fleet pages check the credentials themselves too: copied into an app
// without the proxy, they show nothing rather than the fleet to anyone.

import { headers } from "next/headers";
import { notFound } from "next/navigation";
import { fleetAccess } from "./basic-auth";

export async function requireFleetViewer(): Promise<void> {
  const authorization = (await headers()).get("authorization");
  if (fleetAccess(authorization) !== "allowed") notFound();
}
