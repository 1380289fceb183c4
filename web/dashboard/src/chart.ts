/** A small live line chart (uPlot): one line per series over the last samples. */
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

export interface ChartProps {
  title: string;
  /** Seconds since the epoch, one per sample. */
  times: number[];
  series: { label: string; values: number[] }[];
  format: (v: number) => string;
}

export function RateChart({ title, times, series, format }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join('\u0000');

  // (Re)made when the set of lines changes; otherwise only its data moves.
  useEffect(() => {
    if (!box.current) return;
    const width = Math.max(280, box.current.clientWidth);
    plot.current = new uPlot(
      {
        width,
        height: 180,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [{ stroke: '#64748b' }, { stroke: '#64748b', size: 64, values: (_u, splits) => splits.map(format) }],
        // Without the cursor on the chart, the legend shows each line's latest value.
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: PALETTE[i % PALETTE.length],
            width: 2,
            value: (u: uPlot, v: number | null, si: number) => format(v ?? (u.data[si]?.at(-1) as number | undefined) ?? 0),
          })),
        ],
      },
      [times, ...series.map((s) => s.values)],
      box.current,
    );
    const resize = () => box.current && plot.current?.setSize({ width: Math.max(280, box.current.clientWidth), height: 180 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)]);
  }, [times, series]);

  return html`<figure class="chart" aria-label=${title}>
    <figcaption>${title}</figcaption>
    <div ref=${box} role="img" aria-label=${`${title}: ${series.map((s) => `${s.label} ${format(s.values.at(-1) ?? 0)}`).join(', ') || 'no data yet'}`}></div>
  </figure>`;
}
