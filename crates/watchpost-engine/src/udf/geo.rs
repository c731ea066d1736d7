//! Geospatial functions on longitude/latitude pairs in degrees (WGS-84
//! coordinates). Distances are great-circle distances on a sphere, in
//! meters, as Kusto measures them by default.

use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;

use super::kernel::{real_at, reals, Invocation};

/// The radius of the sphere, in meters: the one that reproduces Kusto's
/// documented Seattle to Los Angeles distance (1546754.35 m).
const EARTH_RADIUS_METERS: f64 = 6_371_010.0;

/// `geo_distance_2points(lon1, lat1, lon2, lat2)`: null when a coordinate is
/// missing or out of range.
pub(crate) fn geo_distance_2points(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(reals((0..call.n_rows).map(|row| {
        let coordinate = |idx: usize| real_at(&call.args[idx], row);
        let (lon1, lat1, lon2, lat2) = (coordinate(0)?, coordinate(1)?, coordinate(2)?, coordinate(3)?);
        let valid = |lon: f64, lat: f64| (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat);
        if !valid(lon1, lat1) || !valid(lon2, lat2) {
            return None;
        }
        Some(haversine(lon1, lat1, lon2, lat2))
    })))
}

fn haversine(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let delta_phi = (lat2 - lat1).to_radians();
    let delta_lambda = (lon2 - lon1).to_radians();
    let a = (delta_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (delta_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_METERS * a.sqrt().min(1.0).asin()
}
