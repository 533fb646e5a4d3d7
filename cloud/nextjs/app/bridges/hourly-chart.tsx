// People in per hour over the last 7 days, as server-rendered SVG: one
// polyline vertex per hour, oldest left, no client JavaScript.

import styles from "./fleet.module.css";

const WIDTH = 340;
const HEIGHT = 64;
const TOP = 12;

export function HourlyChart({ counts, firstHour, label }: { counts: number[]; firstHour: Date; label: string }) {
  const peak = Math.max(1, ...counts);
  const step = counts.length > 1 ? WIDTH / (counts.length - 1) : 0;
  const points = counts
    .map((n, i) => `${(i * step).toFixed(1)},${(TOP + (HEIGHT - TOP) * (1 - n / peak)).toFixed(1)}`)
    .join(" ");
  const total = counts.reduce((a, b) => a + b, 0);
  const from = firstHour.toISOString().slice(0, 13).replace("T", " ");
  return (
    <svg
      className={styles.chart}
      width={WIDTH}
      height={HEIGHT + 1}
      viewBox={`0 0 ${WIDTH} ${HEIGHT + 1}`}
      role="img"
      aria-label={`${label}: people in per hour since ${from}:00 UTC, ${total} in all`}
      data-hours={counts.length}
      data-first-hour={firstHour.toISOString()}
    >
      <title>{`${label}: ${total} in over ${counts.length} hours, peak ${peak} per hour`}</title>
      <line x1="0" y1={HEIGHT} x2={WIDTH} y2={HEIGHT} />
      <text x="0" y="9">{`peak ${peak}/h`}</text>
      <polyline points={points} />
    </svg>
  );
}
