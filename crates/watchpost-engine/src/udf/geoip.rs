//! `geo_info_from_ip_address(ip)` and the DCR transform function
//! `geo_location(ip)`: where an address is, from the MaxMind database the
//! server was given (`serve --geoip-db`).
//!
//! Unlike the other row-wise functions these carry state, the opened
//! database, so they are a UDF of their own rather than a plain kernel.
//!
//! Answers: a bag of the fields the database's record has (`country`,
//! `state`, `city`, `latitude`, `longitude`; `geo_location` adds the
//! continent as `region`); `{}` when the address is not covered or no
//! database is configured; null when the argument is null or not an
//! address.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use serde_json::{Map, Value as Json};
use watchpost_geo::{GeoDb, Place};

use super::kernel::text_at;

/// Which function: the two differ only in the fields they return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GeoFlavor {
    /// `geo_info_from_ip_address`.
    Info,
    /// `geo_location`.
    Location,
}

/// The call of the `flavor` function on `ip` (text), looking up in `db`.
pub(crate) fn call(flavor: GeoFlavor, db: Option<Arc<GeoDb>>, ip: Expr) -> Expr {
    let signature = Signature::one_of(vec![TypeSignature::Any(1)], Volatility::Immutable);
    ScalarUDF::from(GeoIpFunction { flavor, db, signature }).call(vec![ip])
}

#[derive(Debug)]
struct GeoIpFunction {
    flavor: GeoFlavor,
    db: Option<Arc<GeoDb>>,
    signature: Signature,
}

impl PartialEq for GeoIpFunction {
    fn eq(&self, other: &GeoIpFunction) -> bool {
        let same_db = match (&self.db, &other.db) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.flavor == other.flavor && same_db
    }
}

impl Eq for GeoIpFunction {}

impl Hash for GeoIpFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.flavor.hash(state);
        self.db.as_ref().map(Arc::as_ptr).hash(state);
    }
}

impl ScalarUDFImpl for GeoIpFunction {
    fn name(&self) -> &str {
        match self.flavor {
            GeoFlavor::Info => "geo_info_from_ip_address",
            GeoFlavor::Location => "geo_location",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(scalar) => {
                let array = scalar.to_array_of_size(1)?;
                let result = self.lookup_all(&array);
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?))
            }
            ColumnarValue::Array(array) => {
                let array = super::kernel::without_dictionary(array.clone())?;
                Ok(ColumnarValue::Array(self.lookup_all(&array)))
            }
        }
    }
}

impl GeoIpFunction {
    /// One answer per row. Logs repeat addresses, so each distinct address
    /// of the batch is looked up once.
    fn lookup_all(&self, ips: &ArrayRef) -> ArrayRef {
        let mut seen: HashMap<&str, Option<String>> = HashMap::new();
        let mut out = StringBuilder::with_capacity(ips.len(), ips.len() * 16);
        for row in 0..ips.len() {
            let Some(text) = text_at(ips, row) else {
                out.append_null();
                continue;
            };
            let answer = seen.entry(text).or_insert_with(|| self.answer(text));
            out.append_option(answer.as_deref());
        }
        Arc::new(out.finish())
    }

    fn answer(&self, text: &str) -> Option<String> {
        let address = watchpost_geo::parse_address(text)?;
        let place = self.db.as_ref().and_then(|db| db.lookup(address)).unwrap_or_default();
        Some(Json::Object(self.bag(place)).to_string())
    }

    fn bag(&self, place: Place) -> Map<String, Json> {
        let mut bag = Map::new();
        let mut put = |name: &str, value: Option<Json>| {
            if let Some(value) = value {
                bag.insert(name.to_string(), value);
            }
        };
        put("country", place.country.map(Json::from));
        if self.flavor == GeoFlavor::Location {
            put("region", place.continent.map(Json::from));
        }
        put("state", place.state.map(Json::from));
        put("city", place.city.map(Json::from));
        put("latitude", place.latitude.map(Json::from));
        put("longitude", place.longitude.map(Json::from));
        bag
    }
}
