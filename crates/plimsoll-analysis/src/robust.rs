//! Robust statistics for short series: the Theil–Sen slope (median of pairwise slopes), which
//! a few outliers or a sawtooth tooth cannot drag the way least squares can.

/// Theil–Sen slope of the points `(x, y)`: the median of `(y_j - y_i) / (x_j - x_i)` over all
/// pairs with distinct `x`. `None` with fewer than two distinct `x`. Quadratic in the number of
/// points: meant for the handful of floor points the detector looks at, not raw series.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(xi, yi)) in points.iter().enumerate() {
        for &(xj, yj) in &points[i + 1..] {
            let dx = xj - xi;
            if dx.abs() > f64::EPSILON {
                slopes.push((yj - yi) / dx);
            }
        }
    }
    median(&mut slopes)
}

/// Median of `values` (reorders them); `None` when empty or when a value is NaN.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mid = values.len() / 2;
    let (_, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if values.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..mid]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// The `q`-quantile of `values` (0 ≤ q ≤ 1, nearest rank; reorders them); `None` when empty
/// or when a value is NaN.
pub(crate) fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let rank = ((values.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, value, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_exact() {
        let points: Vec<_> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert_eq!(theil_sen(&points), Some(3.0));
    }

    #[test]
    fn outliers_do_not_move_the_slope() {
        let mut points: Vec<_> = (0..20).map(|i| (i as f64, 2.0 * i as f64)).collect();
        points[5].1 = 1e9;
        points[13].1 = -1e9;
        let slope = theil_sen(&points).expect("enough points");
        assert!((slope - 2.0).abs() < 0.5, "slope {slope}");
    }

    #[test]
    fn degenerate_inputs_have_no_slope() {
        assert_eq!(theil_sen(&[]), None);
        assert_eq!(theil_sen(&[(1.0, 1.0)]), None);
        assert_eq!(theil_sen(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut values, 0.0), Some(1.0));
        assert_eq!(quantile(&mut values, 0.25), Some(2.0));
        assert_eq!(quantile(&mut values, 1.0), Some(5.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [1.0, f64::NAN]), None);
    }
}
