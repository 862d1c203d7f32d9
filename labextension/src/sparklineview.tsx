/** A sparkline: one series as a small SVG line chart, scaled to its box. */
import * as React from 'react';

import { SeriesPoint, sparklinePath, valueRange } from './sparkline';

/** The SVG's own coordinate box; CSS stretches it to the card's width. */
const WIDTH = 200;
const HEIGHT = 24;

export interface SparklineProps {
  points: readonly SeriesPoint[];
  /** What is charted, for screen readers and the tooltip. */
  label: string;
  /** The value range; default zero to the largest value. */
  min?: number;
  max?: number;
  maxGap?: number;
  className?: string;
}

export function Sparkline(props: SparklineProps): JSX.Element | null {
  const auto = valueRange(props.points);
  const { d, points } = sparklinePath(props.points, {
    width: WIDTH,
    height: HEIGHT,
    min: props.min ?? auto.min,
    max: props.max ?? auto.max,
    maxGap: props.maxGap
  });
  if (!points) {
    return null;
  }
  return (
    <svg
      className={`jp-GpuEnv-spark${props.className ? ` ${props.className}` : ''}`}
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={props.label}
      data-points={points}
    >
      <title>{props.label}</title>
      <path d={d} vectorEffect="non-scaling-stroke" />
    </svg>
  );
}
