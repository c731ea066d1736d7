//! `series_decompose_anomalies(series [, threshold, seasonality, trend,
//! test_points, ad_method, seasonality_threshold])`: the series is split
//! into a seasonal part (the median of the points in the same phase), a
//! trend of what is left (`avg`, `linefit` or `none`) and the residual; a
//! Tukey fence test on the residual scores each point and flags it `1`
//! (rise), `-1` (decline) or `0`. Each component is its own kernel so the
//! binder can name them (`extend (flag, score, baseline) = ...`).
//!
//! Seasonality `-1` asks for autodetection. Kusto's detector is not
//! documented; here the period is the lag in `[2, n/2]` with the highest
//! autocorrelation of the mean-removed series, kept when that correlation
//! reaches the seasonality threshold (0.6 by default).

use datafusion::arrow::array::ArrayRef;
use datafusion::error::{DataFusionError, Result};
use serde_json::Value as Json;

use super::kernel::{dynamics, json_at, long_at, real_at, text_at, Invocation};

/// One output series of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Flag,
    Score,
    Baseline,
}

/// `series_decompose_anomalies(...)`'s anomaly flags.
pub(crate) fn anomaly_flags(call: &Invocation<'_>) -> Result<ArrayRef> {
    component(call, Component::Flag)
}

/// `series_decompose_anomalies(...)`'s anomaly scores.
pub(crate) fn anomaly_scores(call: &Invocation<'_>) -> Result<ArrayRef> {
    component(call, Component::Score)
}

/// `series_decompose_anomalies(...)`'s baseline (seasonal plus trend).
pub(crate) fn anomaly_baseline(call: &Invocation<'_>) -> Result<ArrayRef> {
    component(call, Component::Baseline)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trend {
    Average,
    LineFit,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Options {
    threshold: f64,
    /// `None` to autodetect, `Some(0)` for no seasonality.
    period: Option<usize>,
    trend: Trend,
    test_points: usize,
    /// The percentiles of the fence: 10/90 for `ctukey`, 25/75 for `tukey`.
    percentiles: (f64, f64),
    seasonality_threshold: f64,
}

fn component(call: &Invocation<'_>, component: Component) -> Result<ArrayRef> {
    let mut values = Vec::with_capacity(call.n_rows);
    for row in 0..call.n_rows {
        let series = match json_at(&call.args[0], call.arg_types[0], row) {
            Json::Array(items) => items.iter().map(Json::as_f64).collect::<Vec<_>>(),
            _ => {
                values.push(None);
                continue;
            }
        };
        let options = options_at(call, row)?;
        let analysis = analyze(&series, &options);
        let out: Vec<Json> = match component {
            Component::Flag => analysis.flags.into_iter().map(Json::from).collect(),
            Component::Score => analysis.scores.into_iter().map(real_json).collect(),
            Component::Baseline => analysis.baseline.into_iter().map(real_json).collect(),
        };
        values.push(Some(Json::Array(out)));
    }
    Ok(dynamics(values))
}

fn real_json(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number)
}

/// The optional arguments of `row`, with Kusto's defaults.
fn options_at(call: &Invocation<'_>, row: usize) -> Result<Options> {
    let arg = |idx: usize| call.args.get(idx).filter(|array| !array.is_null(row));
    let threshold = arg(1).and_then(|array| real_at(array, row)).unwrap_or(1.5);
    let period = match arg(2).and_then(|array| long_at(array, row)).unwrap_or(-1) {
        -1 => None,
        period if period >= 0 => Some(period as usize),
        other => return Err(invalid(format!("seasonality must be -1, 0 or a positive period, got {other}"))),
    };
    let trend = match arg(3).and_then(|array| text_at(array, row)).unwrap_or("avg") {
        "avg" => Trend::Average,
        "linefit" => Trend::LineFit,
        "none" => Trend::None,
        other => return Err(invalid(format!("trend must be 'avg', 'linefit' or 'none', got '{other}'"))),
    };
    let test_points = arg(4).and_then(|array| long_at(array, row)).unwrap_or(0).max(0) as usize;
    let percentiles = match arg(5).and_then(|array| text_at(array, row)).unwrap_or("ctukey") {
        "ctukey" => (10.0, 90.0),
        "tukey" => (25.0, 75.0),
        other => return Err(invalid(format!("ad_method must be 'ctukey' or 'tukey', got '{other}'"))),
    };
    let seasonality_threshold = arg(6).and_then(|array| real_at(array, row)).unwrap_or(0.6);
    Ok(Options { threshold, period, trend, test_points, percentiles, seasonality_threshold })
}

fn invalid(message: String) -> DataFusionError {
    DataFusionError::Execution(format!("series_decompose_anomalies(): {message}"))
}

struct Analysis {
    flags: Vec<i64>,
    scores: Vec<f64>,
    baseline: Vec<f64>,
}

/// Decomposes `series` (nulls are missing points) and scores its residual.
fn analyze(series: &[Option<f64>], options: &Options) -> Analysis {
    let n_points = series.len();
    let n_learn = n_points.saturating_sub(options.test_points);
    let learn = &series[..n_learn];
    let period = match options.period {
        Some(period) => period,
        None => detect_period(learn, options.seasonality_threshold),
    };
    let seasonal = seasonal_component(learn, period, n_points);
    let deseasonalized: Vec<Option<f64>> =
        learn.iter().zip(&seasonal).map(|(value, season)| value.map(|value| value - season)).collect();
    let trend = trend_component(&deseasonalized, options.trend, n_points);
    let baseline: Vec<f64> = seasonal.iter().zip(&trend).map(|(season, trend)| season + trend).collect();
    let residuals: Vec<Option<f64>> =
        series.iter().zip(&baseline).map(|(value, base)| value.map(|value| value - base)).collect();
    let mut learned: Vec<f64> = residuals[..n_learn].iter().flatten().copied().collect();
    learned.sort_by(f64::total_cmp);
    let low = percentile(&learned, options.percentiles.0);
    let high = percentile(&learned, options.percentiles.1);
    let range = high - low;
    let scores: Vec<f64> = residuals
        .iter()
        .map(|residual| match *residual {
            Some(residual) if range > 0.0 && residual > high => (residual - high) / range,
            Some(residual) if range > 0.0 && residual < low => (residual - low) / range,
            _ => 0.0,
        })
        .collect();
    let flags = scores
        .iter()
        .map(|score| {
            if *score > options.threshold {
                1
            } else if *score < -options.threshold {
                -1
            } else {
                0
            }
        })
        .collect();
    Analysis { flags, scores, baseline }
}

/// The median of the learned points in each phase, repeated over the
/// whole series; zeros without seasonality.
fn seasonal_component(learn: &[Option<f64>], period: usize, n_points: usize) -> Vec<f64> {
    if period == 0 {
        return vec![0.0; n_points];
    }
    let medians: Vec<f64> = (0..period)
        .map(|phase| {
            let mut values: Vec<f64> = learn.iter().skip(phase).step_by(period).flatten().copied().collect();
            values.sort_by(f64::total_cmp);
            percentile(&values, 50.0)
        })
        .collect();
    (0..n_points).map(|idx| medians[idx % period]).collect()
}

/// The trend of the learned points, extended over the whole series.
fn trend_component(learn: &[Option<f64>], trend: Trend, n_points: usize) -> Vec<f64> {
    let points: Vec<(f64, f64)> =
        learn.iter().enumerate().filter_map(|(idx, value)| value.map(|value| (idx as f64, value))).collect();
    if points.is_empty() || trend == Trend::None {
        return vec![0.0; n_points];
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    if trend == Trend::Average {
        return vec![mean_y; n_points];
    }
    let covariance: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    let slope = if variance > 0.0 { covariance / variance } else { 0.0 };
    (0..n_points).map(|idx| mean_y + slope * (idx as f64 - mean_x)).collect()
}

/// The lag in `[2, n/2]` with the highest autocorrelation, if it reaches
/// `threshold`; 0 (no seasonality) otherwise.
fn detect_period(learn: &[Option<f64>], threshold: f64) -> usize {
    let values: Vec<f64> = learn.iter().map(|value| value.unwrap_or(0.0)).collect();
    let n_points = values.len();
    if n_points < 4 {
        return 0;
    }
    let mean = values.iter().sum::<f64>() / n_points as f64;
    let centered: Vec<f64> = values.iter().map(|value| value - mean).collect();
    let energy: f64 = centered.iter().map(|value| value * value).sum();
    if energy <= 0.0 {
        return 0;
    }
    let mut best = (0, threshold);
    for lag in 2..=n_points / 2 {
        let correlation: f64 = centered.iter().zip(&centered[lag..]).map(|(a, b)| a * b).sum::<f64>() / energy
            * n_points as f64
            / (n_points - lag) as f64;
        // A multiple of the period correlates as well; keep the shortest.
        if correlation > best.1 + 1e-9 || (best.0 == 0 && correlation >= best.1) {
            best = (lag, correlation);
        }
    }
    best.0
}

/// The `p`th percentile of sorted values, interpolated; 0 when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        len => {
            let rank = p / 100.0 * (len - 1) as f64;
            let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
            sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(period: Option<usize>, trend: Trend) -> Options {
        Options { threshold: 1.5, period, trend, test_points: 0, percentiles: (10.0, 90.0), seasonality_threshold: 0.6 }
    }

    #[test]
    fn flags_a_spike_and_a_drop_against_a_flat_baseline() {
        let mut series: Vec<Option<f64>> = (0..20).map(|idx| Some(10.0 + (idx % 2) as f64)).collect();
        series[5] = Some(60.0);
        series[12] = Some(-40.0);
        let analysis = analyze(&series, &options(Some(0), Trend::Average));
        assert_eq!(analysis.flags[5], 1);
        assert_eq!(analysis.flags[12], -1);
        assert_eq!(analysis.flags.iter().filter(|flag| **flag != 0).count(), 2);
    }

    #[test]
    fn detects_a_weekly_like_period() {
        let series: Vec<Option<f64>> = (0..42).map(|idx| Some(if idx % 7 == 0 { 100.0 } else { 10.0 })).collect();
        assert_eq!(detect_period(&series, 0.6), 7);
        let flat: Vec<Option<f64>> = (0..42).map(|_| Some(5.0)).collect();
        assert_eq!(detect_period(&flat, 0.6), 0);
    }

    #[test]
    fn linefit_follows_a_line() {
        let series: Vec<Option<f64>> = (0..10).map(|idx| Some(2.0 * idx as f64 + 1.0)).collect();
        let analysis = analyze(&series, &options(Some(0), Trend::LineFit));
        assert!((analysis.baseline[9] - 19.0).abs() < 1e-9);
        assert!(analysis.flags.iter().all(|flag| *flag == 0));
    }
}
