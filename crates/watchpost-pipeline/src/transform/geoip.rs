//! The `geoip` transform: where the IP address in a field is, from a
//! MaxMind City database (`watchpost-geo`), written under a target field as
//! Logstash's geoip filter does: `country_name`, `country_code2`,
//! `continent_name`, `region_name`, `city_name`, `latitude`, `longitude`
//! and `location` (`{lat, lon}`); fields the record lacks are left out.
//!
//! An address the database does not know (private ranges) or a value that
//! is no address is routine in logs: the event is tagged
//! (`_geoip_lookup_failure` by default) and goes on, as in Logstash, rather
//! than being dead-lettered.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};
use watchpost_geo::GeoDb;

use crate::event::{Event, FieldRef};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct GeoipTransform {
    source: FieldRef,
    target: FieldRef,
    db: Arc<GeoDb>,
    tag_on_failure: Vec<String>,
}

impl GeoipTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<GeoipTransform> {
        let source = options.string("source")?.ok_or_else(|| options.error("option `source` is required"))?;
        let source = FieldRef::parse(&source).map_err(|e| options.error(e))?;
        let target = options.string("target")?.unwrap_or_else(|| "geoip".to_string());
        let target = FieldRef::parse(&target).map_err(|e| options.error(e))?;
        let database = options.string("database")?.ok_or_else(|| {
            options.error("option `database` is required: the path of a MaxMind City database (GeoLite2-City.mmdb)")
        })?;
        let db = GeoDb::open(Path::new(&database)).map_err(|err| options.error(err.to_string()))?;
        let tag_on_failure = match options.take("tag_on_failure") {
            None => vec!["_geoip_lookup_failure".to_string()],
            Some(value) => {
                Options::new(toml::Table::from_iter([("v".to_string(), value)]), options.location()).strings("v")?
            }
        };
        Ok(GeoipTransform { source, target, db: Arc::new(db), tag_on_failure })
    }
}

impl Transform for GeoipTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let Some(Json::String(text)) = event.get(&self.source) else {
            return StepResult::Continue;
        };
        let Some(place) = self.db.lookup_text(text) else {
            for tag in &self.tag_on_failure {
                event.add_tag(tag);
            }
            return StepResult::Continue;
        };
        let mut geo = Map::new();
        let mut put = |name: &str, value: Option<Json>| {
            if let Some(value) = value {
                geo.insert(name.to_string(), value);
            }
        };
        put("country_name", place.country.map(Json::from));
        put("country_code2", place.country_code.map(Json::from));
        put("continent_name", place.continent.map(Json::from));
        put("region_name", place.state.map(Json::from));
        put("city_name", place.city.map(Json::from));
        put("latitude", place.latitude.map(Json::from));
        put("longitude", place.longitude.map(Json::from));
        if let (Some(lat), Some(lon)) = (place.latitude, place.longitude) {
            put("location", Some(json!({"lat": lat, "lon": lon})));
        }
        event.set(&self.target, Json::Object(geo));
        StepResult::Continue
    }
}
