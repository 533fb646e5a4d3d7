import type { NextConfig } from "next";

// Nothing the routes or the fleet page need: they work with Next.js's
// defaults, with `cacheComponents: true` (create-next-app's template on
// Next.js 16) and on Next.js 15 alike.
const nextConfig: NextConfig = {
  poweredByHeader: false,
};

export default nextConfig;
