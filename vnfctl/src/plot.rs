//! Plots of latency and throughput results, written as PNG and SVG.
//!
//! Three plots, each written twice (`STEM.png` and `STEM.svg`):
//! - [`latency_cdf`]: the cumulative distribution of latency, one line per series, log-scaled x axis;
//! - [`percentiles`]: latency at p50, p90, p99, p99.9 and p99.99 per series (log-scaled y axis);
//! - [`throughput`]: delivered against offered load, one line per series.
//!
//! The SVG keeps text as text (no font needed). The PNG rasterises text with a TrueType font read at run time,
//! by default DejaVu Sans from Debian's `fonts-dejavu-core` ([`DEFAULT_FONT`], overridable with the
//! `VNFCTL_PLOT_FONT` environment variable); a missing font is a [`PlotError::Font`] naming the path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The TrueType font used for PNG text unless `VNFCTL_PLOT_FONT` names another.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The percentiles of the percentile plot.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// PNG size in pixels (SVG uses the same user units).
const SIZE: (u32, u32) = (1024, 640);

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The font for PNG text is missing or unreadable.
    #[error(
        "plot font {path}: {source} (install Debian's fonts-dejavu-core, or set VNFCTL_PLOT_FONT to a .ttf file)"
    )]
    Font {
        path: PathBuf,
        /// Shared: the font is loaded once per process and every later plot reports the same failure.
        #[source]
        source: Arc<FontError>,
    },
    /// Nothing to plot.
    #[error("plot {plot}: {reason}")]
    NoData { plot: &'static str, reason: String },
    /// The drawing backend failed (also file-system errors while writing).
    #[error("plot {path}: {source}")]
    Draw {
        path: PathBuf,
        #[source]
        source: DrawError,
    },
}

/// What was wrong with the font file.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    /// It could not be read.
    #[error(transparent)]
    Read(std::io::Error),
    /// Its bytes are not a font plotters can use.
    #[error("not a TrueType/OpenType font")]
    NotTrueType,
}

/// What the drawing backend reported (plotters' error, which holds the backend's own).
pub type DrawError = Box<dyn std::error::Error + Send + Sync>;

fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> DrawError {
    Box::new(e)
}

/// One line of a latency CDF: `(latency in µs, cumulative fraction 0..=1)` points in increasing latency.
#[derive(Debug, Clone, PartialEq)]
pub struct CdfSeries {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One line of the percentile plot: `(percentile, latency in µs)` for [`PERCENTILES`].
#[derive(Debug, Clone, PartialEq)]
pub struct PercentileSeries {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One line of the throughput plot: `(offered Mpps, delivered Mpps)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputSeries {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The files one plot call wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Written {
    pub png: PathBuf,
    pub svg: PathBuf,
}

/// CDF points of a histogram of nanosecond values, in µs (at most ~200 points, one per distinct bucket step).
pub fn cdf_from_histogram(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len();
    if total == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for v in h.iter_quantiles(4) {
        let us = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        let q = v.quantile_iterated_to();
        if out
            .last()
            .is_none_or(|&(lx, lq): &(f64, f64)| us > lx || q > lq)
        {
            out.push((us.max(0.001), q));
        }
    }
    out
}

/// CDF points of raw nanosecond samples, in µs (sorted; thinned to ≤ 1,000 points, the last always kept).
pub fn cdf_from_samples(samples_ns: &[u64]) -> Vec<(f64, f64)> {
    let mut s = samples_ns.to_vec();
    s.sort_unstable();
    let n = s.len();
    let step = n.div_ceil(1000).max(1);
    let mut out: Vec<(f64, f64)> = s
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % step == 0 || i + 1 == n)
        .map(|(i, &v)| ((v as f64 / 1000.0).max(0.001), (i + 1) as f64 / n as f64))
        .collect();
    out.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
    out
}

/// `(percentile, µs)` for [`PERCENTILES`] from a histogram of nanosecond values; empty when it is empty.
pub fn percentiles_from_histogram(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    PERCENTILES
        .iter()
        .map(|&p| (p, h.value_at_percentile(p) as f64 / 1000.0))
        .collect()
}

/// Writes the latency CDF of `series` to `STEM.png` and `STEM.svg`.
pub fn latency_cdf(stem: &Path, title: &str, series: &[CdfSeries]) -> Result<Written, PlotError> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let (lo, hi) = positive_range("latency CDF", pts.iter().map(|p| p.0))?;
    write_both(
        stem,
        "latency CDF",
        series.len(),
        |r| draw_cdf(r, title, series, lo, hi),
        |r| draw_cdf(r, title, series, lo, hi),
    )
}

fn draw_cdf<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[CdfSeries],
    lo: f64,
    hi: f64,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    {
        let mut chart = titled_chart(root, title, (lo..hi).log_scale(), 0.0f64..1.0f64)?;
        chart
            .configure_mesh()
            .x_desc("latency (µs, log scale)")
            .y_desc("fraction of packets ≤ latency")
            .label_style((FontFamily::SansSerif, 14))
            .draw()
            .map_err(boxed)?;
        for (i, s) in series.iter().enumerate() {
            labelled_line(&mut chart, i, &s.name, &s.points, false)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// Writes the percentile plot (p50..p99.99 per series, log-scaled latency) to `STEM.png` and `STEM.svg`.
pub fn percentiles(
    stem: &Path,
    title: &str,
    series: &[PercentileSeries],
) -> Result<Written, PlotError> {
    let (lo, hi) = positive_range(
        "percentile plot",
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
    )?;
    write_both(
        stem,
        "percentile plot",
        series.len(),
        |r| draw_percentiles(r, title, series, lo, hi),
        |r| draw_percentiles(r, title, series, lo, hi),
    )
}

/// The x position of a percentile: its number of nines, -log10(1 - p/100) (p50 → 0.3, p99 → 2, p99.99 → 4).
fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).log10()
}

fn draw_percentiles<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[PercentileSeries],
    lo: f64,
    hi: f64,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    {
        let mut chart = titled_chart(root, title, 0.0f64..4.3f64, (lo..hi).log_scale())?;
        let fmt = |x: &f64| {
            PERCENTILES
                .iter()
                .find(|&&p| (nines(p) - x).abs() < 0.05)
                .map(|p| format!("p{p}"))
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(44)
            .x_label_formatter(&fmt)
            .disable_x_mesh()
            .x_desc("percentile")
            .y_desc("latency (µs, log scale)")
            .label_style((FontFamily::SansSerif, 14))
            .draw()
            .map_err(boxed)?;
        for (i, s) in series.iter().enumerate() {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(p, v)| (nines(p), v)).collect();
            labelled_line(&mut chart, i, &s.name, &pts, true)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// Writes delivered against offered load (Mpps, linear axes) to `STEM.png` and `STEM.svg`.
pub fn throughput(
    stem: &Path,
    title: &str,
    series: &[ThroughputSeries],
) -> Result<Written, PlotError> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if pts.is_empty() || pts.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
        return Err(PlotError::NoData {
            plot: "throughput plot",
            reason: "no points, or a point that is not a finite number".into(),
        });
    }
    let xmax = pts.iter().map(|p| p.0).fold(0.0f64, f64::max).max(1e-6) * 1.05;
    let ymax = pts.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-6) * 1.1;
    write_both(
        stem,
        "throughput plot",
        series.len(),
        |r| draw_throughput(r, title, series, xmax, ymax),
        |r| draw_throughput(r, title, series, xmax, ymax),
    )
}

fn draw_throughput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[ThroughputSeries],
    xmax: f64,
    ymax: f64,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    {
        let mut chart = titled_chart(root, title, 0.0..xmax, 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("offered load (Mpps)")
            .y_desc("delivered (Mpps)")
            .label_style((FontFamily::SansSerif, 14))
            .draw()
            .map_err(boxed)?;
        for (i, s) in series.iter().enumerate() {
            labelled_line(&mut chart, i, &s.name, &s.points, true)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// A chart over the coordinates `X` × `Y` describe.
type Chart<'a, DB, X, Y> = ChartContext<
    'a,
    DB,
    Cartesian2d<
        <X as plotters::coord::ranged1d::AsRangedCoord>::CoordDescType,
        <Y as plotters::coord::ranged1d::AsRangedCoord>::CoordDescType,
    >,
>;

/// A white canvas with the title and the label areas of the plots here, over `x` × `y`.
fn titled_chart<
    'a,
    DB: DrawingBackend,
    X: plotters::coord::ranged1d::AsRangedCoord,
    Y: plotters::coord::ranged1d::AsRangedCoord,
>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: X,
    y: Y,
) -> Result<Chart<'a, DB, X, Y>, DrawError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(boxed)?;
    ChartBuilder::on(root)
        .caption(title, (FontFamily::SansSerif, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(boxed)
}

/// Series `i` as a line in its palette colour, named in the legend, with a dot on every point if `dots`.
fn labelled_line<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    i: usize,
    name: &str,
    points: &[(f64, f64)],
    dots: bool,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    let color = Palette99::pick(i).to_rgba();
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(boxed)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    if dots {
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(boxed)?;
    }
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FontFamily::SansSerif, 14))
        .draw()
        .map_err(boxed)
}

/// The positive, finite range of `values`, widened a little so lines do not sit on the frame.
fn positive_range(
    plot: &'static str,
    values: impl Iterator<Item = f64>,
) -> Result<(f64, f64), PlotError> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if !v.is_finite() || v <= 0.0 {
            return Err(PlotError::NoData {
                plot,
                reason: format!("latency {v} µs is not a positive finite number"),
            });
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == 0.0 {
        return Err(PlotError::NoData {
            plot,
            reason: "no points".into(),
        });
    }
    Ok((lo / 1.5, hi * 1.5))
}

/// Draws `draw` once on an SVG and once on a PNG backend.
fn write_both(
    stem: &Path,
    plot: &'static str,
    n_series: usize,
    draw_svg: impl Fn(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), DrawError>,
    draw_png: impl Fn(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), DrawError>,
) -> Result<Written, PlotError> {
    if n_series == 0 {
        return Err(PlotError::NoData {
            plot,
            reason: "no series".into(),
        });
    }
    ensure_font()?;
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: DrawError| PlotError::Draw { path, source }
    };
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw_svg(&root).map_err(err(&svg))?;
        root.present().map_err(|e| err(&svg)(boxed(e)))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw_png(&root).map_err(err(&png))?;
        root.present().map_err(|e| err(&png)(boxed(e)))?;
    }
    Ok(Written { png, svg })
}

/// Registers the PNG font once per process (its bytes live for the whole process, as plotters requires).
fn ensure_font() -> Result<(), PlotError> {
    static FONT: OnceLock<Result<(), (PathBuf, Arc<FontError>)>> = OnceLock::new();
    let r = FONT.get_or_init(|| {
        let path = std::env::var_os("VNFCTL_PLOT_FONT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
        let bytes =
            std::fs::read(&path).map_err(|e| (path.clone(), Arc::new(FontError::Read(e))))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| (path, Arc::new(FontError::NotTrueType)))
    });
    r.clone()
        .map_err(|(path, source)| PlotError::Font { path, source })
}

/// A colour-blind-safe palette (Okabe & Ito, without the yellow that vanishes on white), in legend order.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 0, 0),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 158, 115),
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
];

/// One series of the testbed plots, already in plot coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend text.
    pub name: String,
    /// Points in order; for bucketed data a staircase (two points per bucket).
    pub points: Vec<(f64, f64)>,
}

/// x of quantile `q` on the percentile plot: 1/(1−q) (p50 → 2, p99 → 100, p99.99 → 10 000).
pub fn inv_tail(q: f64) -> f64 {
    1.0 / (1.0 - q)
}

/// The largest 1/(1−q) that `samples` support: 10 samples beyond the percentile.
pub fn supported_x(samples: u64) -> f64 {
    samples as f64 / 10.0
}

/// The percentile plot's curve of an HDR CDF (`(µs, q)` points): `(1/(1−q), µs)`, up to what the samples support.
pub fn percentile_curve(cdf_us: &[(f64, f64)], samples: u64) -> Vec<(f64, f64)> {
    let cap = supported_x(samples);
    cdf_us
        .iter()
        .filter(|(_, q)| *q < 1.0 && *q > 0.0)
        .map(|&(us, q)| (inv_tail(q), us))
        .filter(|(x, _)| *x <= cap)
        .collect()
}

/// The CCDF curve of an HDR CDF: `(µs, P(latency > µs))`, down to what the samples support.
pub fn ccdf_curve(cdf_us: &[(f64, f64)], samples: u64) -> Vec<(f64, f64)> {
    let floor = 10.0 / samples.max(1) as f64;
    cdf_us
        .iter()
        .map(|&(us, q)| (us, 1.0 - q))
        .filter(|(_, t)| *t >= floor)
        .collect()
}

/// A kernel histogram (`(upper bound in s, cumulative count)`, log2 buckets) as a staircase on the percentile
/// plot: each bucket's quantile span drawn at its upper bound, up to what the samples support.
pub fn bucket_percentile_steps(buckets: &[(f64, u64)]) -> Vec<(f64, f64)> {
    let total = buckets.last().map_or(0, |b| b.1);
    let cap = supported_x(total);
    let mut out = Vec::new();
    let mut prev = 0u64;
    for &(le, c) in buckets {
        if c <= prev || !le.is_finite() {
            prev = prev.max(c);
            continue;
        }
        let (x0, x1) = (
            inv_tail(prev as f64 / total as f64),
            inv_tail(c as f64 / total as f64).min(cap),
        );
        if x0 >= cap {
            break;
        }
        out.push((x0, le * 1e6));
        out.push((x1, le * 1e6));
        prev = c;
    }
    out
}

/// A kernel histogram as a CCDF staircase: `P(latency > bound)` known at each bucket bound, flat in between.
pub fn bucket_ccdf_steps(buckets: &[(f64, u64)]) -> Vec<(f64, f64)> {
    let total = buckets.last().map_or(0, |b| b.1);
    if total == 0 {
        return Vec::new();
    }
    let floor = 10.0 / total as f64;
    let mut out = Vec::new();
    let mut tail = 1.0;
    let mut last_le: Option<f64> = None;
    for &(le, c) in buckets.iter().filter(|(le, _)| le.is_finite()) {
        let t = 1.0 - c as f64 / total as f64;
        if t >= 1.0 {
            last_le = Some(le * 1e6);
            continue;
        }
        if out.is_empty() {
            out.push((last_le.unwrap_or(le * 1e6 / 2.0), 1.0));
        }
        out.push((le * 1e6, tail));
        if t < floor {
            break;
        }
        out.push((le * 1e6, t));
        tail = t;
    }
    out
}

/// Tick text of a log axis: integers without decimals, small values with as few as needed.
pub fn tick(v: f64) -> String {
    if v >= 1.0 {
        format!("{:.0}", v)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The percentile of x = 1/(1−p): `p99.9`.
fn percentile_tick(x: &f64) -> String {
    let p = 100.0 - 100.0 / x;
    if p < 0.0 {
        return String::new();
    }
    let s = format!("{p:.3}");
    format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
}

/// The testbed's plots of one traffic run, written as `STEM-percentiles` and `STEM-ccdf` (PNG and SVG): the
/// main flow's end-to-end one-way latency and each function's kernel histogram (already in chain order).
pub fn testbed_plots(
    dir: &Path,
    stem: &str,
    r: &crate::testbed::traffic::TrafficResult,
    functions: &[crate::testbed::metrics::FunctionReport],
) -> Result<Vec<PathBuf>, PlotError> {
    let Some(main) = r.main().or_else(|| r.flows.iter().find(|f| f.samples > 0)) else {
        return Ok(Vec::new());
    };
    let s = &r.settings;
    let hooks: Vec<String> = s.hook.iter().map(|(i, h)| format!("{h} on {i}")).collect();
    let kernel_samples: u64 = functions
        .iter()
        .map(|f| f.buckets.last().map_or(0, |b| b.1))
        .max()
        .unwrap_or(0);
    let subtitle = format!(
        "{} → {}: {:.0} pps, {} B packets, {:.1} s, {}; {} end-to-end samples, up to {} per function in the kernel",
        main.flow.source,
        main.flow.destination,
        s.rate_pps,
        s.packet_size,
        s.duration_s,
        hooks.join(", "),
        main.samples,
        kernel_samples
    );
    let e2e = format!("end to end, one-way (pktgen, {} samples)", main.samples);
    let kernel = |f: &crate::testbed::metrics::FunctionReport| {
        format!("{} (kernel, log2 buckets at upper bounds)", f.name)
    };
    let mut pct = vec![Curve {
        name: e2e.clone(),
        points: percentile_curve(&main.cdf_us, main.samples),
    }];
    let mut ccdf = vec![Curve {
        name: e2e,
        points: ccdf_curve(&main.cdf_us, main.samples),
    }];
    for f in functions {
        pct.push(Curve {
            name: kernel(f),
            points: bucket_percentile_steps(&f.buckets),
        });
        ccdf.push(Curve {
            name: kernel(f),
            points: bucket_ccdf_steps(&f.buckets),
        });
    }
    pct.retain(|c| !c.points.is_empty());
    ccdf.retain(|c| !c.points.is_empty());
    let title = format!("{}: latency by percentile", s.chain);
    let a = curves_plot(
        &dir.join(format!("{stem}-percentiles")),
        &title,
        &subtitle,
        &pct,
        Axes::Percentile,
    )?;
    let title = format!("{}: latency tail (CCDF)", s.chain);
    let b = curves_plot(
        &dir.join(format!("{stem}-ccdf")),
        &title,
        &subtitle,
        &ccdf,
        Axes::Ccdf,
    )?;
    Ok(vec![a.png, a.svg, b.png, b.svg])
}

/// The two layouts of [`curves_plot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axes {
    /// x: 1/(1−p) (log, labelled as percentiles), y: latency µs (log).
    Percentile,
    /// x: latency µs (log), y: fraction slower (log).
    Ccdf,
}

/// Writes `curves` on log–log axes with a title and a subtitle, each series in its own colour, marker and dash.
pub fn curves_plot(
    stem: &Path,
    title: &str,
    subtitle: &str,
    curves: &[Curve],
    axes: Axes,
) -> Result<Written, PlotError> {
    let (x0, x1) = positive_range(
        "testbed plot",
        curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)),
    )?;
    let (y0, y1) = positive_range(
        "testbed plot",
        curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)),
    )?;
    let (x0, x1) = match axes {
        Axes::Percentile => (1.0, x1.max(10.0)),
        Axes::Ccdf => (x0, x1),
    };
    let (y0, y1) = match axes {
        // headroom above the highest line for the legend
        Axes::Percentile => (y0, y1 * 60.0),
        Axes::Ccdf => (y0, 1.5),
    };
    let range = (x0, x1, y0, y1);
    write_both(
        stem,
        "testbed plot",
        curves.len(),
        |r| draw_curves(r, title, subtitle, curves, axes, range),
        |r| draw_curves(r, title, subtitle, curves, axes, range),
    )
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    curves: &[Curve],
    axes: Axes,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(boxed)?;
    let area = root
        .titled(title, (FontFamily::SansSerif, 24))
        .map_err(boxed)?;
    let area = area
        .titled(subtitle, (FontFamily::SansSerif, 14))
        .map_err(boxed)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(boxed)?;
    let ytick = |v: &f64| tick(*v);
    let xtick = |v: &f64| tick(*v);
    let (xdesc, ydesc) = match axes {
        Axes::Percentile => ("percentile (axis: 1/(1−p), log)", "latency (µs, log)"),
        Axes::Ccdf => ("latency (µs, log)", "fraction of packets slower (log)"),
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(xdesc)
        .y_desc(ydesc)
        .y_label_formatter(&ytick)
        .label_style((FontFamily::SansSerif, 14));
    if axes == Axes::Percentile {
        mesh.x_label_formatter(&percentile_tick);
    } else {
        mesh.x_label_formatter(&xtick);
    }
    mesh.draw().map_err(boxed)?;
    for (i, c) in curves.iter().enumerate() {
        styled_curve(&mut chart, i, c)?;
    }
    legend(
        &mut chart,
        match axes {
            // in the headroom above every line
            Axes::Percentile => SeriesLabelPosition::UpperLeft,
            Axes::Ccdf => SeriesLabelPosition::UpperRight,
        },
    )
}

type LogLog<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// Series `i`: palette colour `i`, solid (even) or dashed (odd) line, and a marker shape of its own on about a
/// dozen of its points.
fn styled_curve<'a, DB: DrawingBackend + 'a>(
    chart: &mut LogLog<'a, DB>,
    i: usize,
    c: &Curve,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    let color = PALETTE[i % PALETTE.len()];
    let style = color.stroke_width(2);
    let pts = c.points.clone();
    let anno = if i.is_multiple_of(2) {
        chart
            .draw_series(LineSeries::new(pts, style))
            .map_err(boxed)?
    } else {
        chart
            .draw_series(DashedLineSeries::new(pts, 8, 5, style))
            .map_err(boxed)?
    };
    let shape = i % 4;
    anno.label(&c.name).legend(move |(x, y)| {
        EmptyElement::at((x, y))
            + PathElement::new(vec![(0, 0), (24, 0)], style)
            + marker((12, 0), shape, color)
    });
    let step = (c.points.len() / 12).max(1);
    chart
        .draw_series(
            c.points
                .iter()
                .step_by(step)
                .map(|&p| EmptyElement::at(p) + marker((0, 0), shape, color)),
        )
        .map_err(boxed)?;
    Ok(())
}

/// A marker of shape `shape` (circle, triangle, square, cross) at pixel offset `at`.
fn marker<DB: DrawingBackend>(
    at: (i32, i32),
    shape: usize,
    color: RGBColor,
) -> DynElement<'static, DB, (i32, i32)> {
    let (x, y) = at;
    match shape {
        0 => Circle::new((x, y), 4, color.filled()).into_dyn(),
        1 => Polygon::new(
            vec![(x, y - 5), (x - 5, y + 4), (x + 5, y + 4)],
            color.filled(),
        )
        .into_dyn(),
        2 => Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], color.filled()).into_dyn(),
        _ => {
            PathElement::new(vec![(x - 5, y - 5), (x + 5, y + 5)], color.stroke_width(2)).into_dyn()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_buckets_become_staircases_cut_where_samples_end() {
        // 100 samples: 50 at <= 1 µs, 40 at <= 2 µs, 10 at <= 4 µs
        let b = [
            (0.5e-6, 0),
            (1e-6, 50),
            (2e-6, 90),
            (4e-6, 100),
            (f64::INFINITY, 100),
        ];
        // percentile plot: p0..p50 at 1 µs, p50..p90 at 2 µs, then capped at 1/(1-p) = 10 (100 samples / 10)
        assert_eq!(
            bucket_percentile_steps(&b),
            [(1.0, 1.0), (2.0, 1.0), (2.0, 2.0), (10.0, 2.0)]
        );
        // CCDF: flat between bounds, known at each bound, stopped under 10 samples' worth (0.1)
        let c = bucket_ccdf_steps(&b);
        assert_eq!(c[0], (0.5, 1.0));
        assert_eq!(c[1], (1.0, 1.0));
        assert!((c[2].1 - 0.5).abs() < 1e-9 && c[2].0 == 1.0);
        assert!(c.iter().all(|p| p.1 >= 0.1 - 1e-9), "{c:?}");
        assert!(bucket_ccdf_steps(&[(1e-6, 0)]).is_empty());
    }

    #[test]
    fn ticks_are_integers_and_percentiles_read_as_such() {
        assert_eq!(tick(10000.0), "10000");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(percentile_tick(&100.0), "p99");
        assert_eq!(percentile_tick(&1000.0), "p99.9");
        assert_eq!(percentile_tick(&2.0), "p50");
        // a percentile the samples do not support is not drawn
        let cdf = [(1.0, 0.5), (2.0, 0.99), (3.0, 0.999), (4.0, 1.0)];
        let c = percentile_curve(&cdf, 1000);
        assert_eq!(c.len(), 2, "p99.9 needs 10 000 samples: {c:?}");
        assert!((c[1].0 - 100.0).abs() < 1e-6 && c[1].1 == 2.0, "{c:?}");
    }

    fn hist(values: impl Iterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
        for v in values {
            h.record(v).expect("record");
        }
        h
    }

    #[test]
    fn writes_png_and_svg_with_series_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        // VNFCTL_PLOT_KEEP=DIR keeps a copy of the files for a look.
        let keep = std::env::var_os("VNFCTL_PLOT_KEEP").map(PathBuf::from);
        let fast = hist((0..10_000u64).map(|i| 5_000 + (i * 7919) % 20_000));
        let slow = hist((0..10_000u64).map(|i| 40_000 + (i * 104_729) % 900_000));
        let cdf = vec![
            CdfSeries {
                name: "chain-xdp".into(),
                points: cdf_from_histogram(&fast),
            },
            CdfSeries {
                name: "nftables".into(),
                points: cdf_from_samples(
                    &(0..5000u64).map(|i| 50_000 + i * 97).collect::<Vec<_>>(),
                ),
            },
        ];
        let pct = vec![
            PercentileSeries {
                name: "chain-xdp".into(),
                points: percentiles_from_histogram(&fast),
            },
            PercentileSeries {
                name: "ipvs".into(),
                points: percentiles_from_histogram(&slow),
            },
        ];
        let tput = vec![ThroughputSeries {
            name: "ceiling".into(),
            points: vec![(0.5, 0.5), (1.0, 0.98), (2.0, 1.4)],
        }];
        let written = [
            latency_cdf(&dir.path().join("cdf"), "latency CDF", &cdf).expect("cdf"),
            percentiles(&dir.path().join("pct"), "percentiles", &pct).expect("pct"),
            throughput(&dir.path().join("tput"), "throughput", &tput).expect("tput"),
        ];
        let names: [&[&str]; 3] = [
            &["chain-xdp", "nftables"],
            &["chain-xdp", "ipvs"],
            &["ceiling"],
        ];
        for (w, names) in written.iter().zip(names) {
            let png = std::fs::read(&w.png).expect("png");
            assert_eq!(
                &png[..8],
                b"\x89PNG\r\n\x1a\n",
                "{} is not a PNG",
                w.png.display()
            );
            assert!(
                png.len() > 10_000,
                "{} is suspiciously small",
                w.png.display()
            );
            let svg = std::fs::read_to_string(&w.svg).expect("svg");
            assert!(
                svg.starts_with("<svg") || svg.contains("<svg "),
                "{} is not an SVG",
                w.svg.display()
            );
            assert!(svg.trim_end().ends_with("</svg>"));
            for n in names {
                assert!(svg.contains(n), "{} lacks series name {n}", w.svg.display());
            }
            assert!(
                svg.contains("<polyline") || svg.contains("<path"),
                "no lines drawn"
            );
        }
        // Percentile ticks are labelled by name, the CDF axis by unit.
        if let Some(keep) = keep {
            for w in &written {
                for f in [&w.png, &w.svg] {
                    std::fs::copy(f, keep.join(f.file_name().expect("name"))).expect("keep");
                }
            }
        }
        let pct_svg = std::fs::read_to_string(&written[1].svg).expect("svg");
        assert!(pct_svg.contains("p99.9"));
        let cdf_svg = std::fs::read_to_string(&written[0].svg).expect("svg");
        assert!(cdf_svg.contains("latency (µs, log scale)"));
    }

    #[test]
    fn cdf_points_increase_and_end_at_one() {
        let h = hist((1..=1000u64).map(|i| i * 1000));
        let pts = cdf_from_histogram(&h);
        assert!(pts.len() > 10);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!((pts.last().expect("last").1 - 1.0).abs() < 1e-9);
        let p = percentiles_from_histogram(&h);
        assert_eq!(p.len(), PERCENTILES.len());
        assert!((p[0].1 - 500.0).abs() < 1.0, "p50 {}", p[0].1);
        let s = cdf_from_samples(&[3000, 1000, 2000]);
        assert_eq!(s, vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = latency_cdf(&dir.path().join("x"), "t", &[]).expect_err("no series");
        assert!(e.to_string().contains("no "), "{e}");
        let bad = [CdfSeries {
            name: "a".into(),
            points: vec![(0.0, 0.5)],
        }];
        let e = latency_cdf(&dir.path().join("x"), "t", &bad).expect_err("zero latency");
        assert!(e.to_string().contains("positive"), "{e}");
    }
}
