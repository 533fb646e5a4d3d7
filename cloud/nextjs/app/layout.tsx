import type { Metadata } from "next";
import type { ReactNode } from "react";

export const metadata: Metadata = {
  title: "sensor-bridge cloud",
  description: "Receives what sensor-bridge appliances deliver; shows the fleet",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ margin: 0, fontFamily: "system-ui, sans-serif", color: "#1d232b", background: "#fff" }}>
        {children}
      </body>
    </html>
  );
}
