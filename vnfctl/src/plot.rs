//! Plots of latency and throughput results, written as PNG and SVG.
