//! IP geolocation from a MaxMind DB file (GeoLite2-City, GeoIP2-City or
//! any database with their record layout), for KQL's
//! `geo_info_from_ip_address`, the DCR transform function `geo_location`
//! and the pipeline's `geoip` step.
//!
//! Watchpost ships no database: MaxMind's licence asks each user to accept
//! it, so the operator downloads one and names it (`serve --geoip-db`).
//! Without one, lookups answer "unknown", which is what the functions
//! document for an address the database does not cover.
//!
//! The reader is the `maxminddb` crate; this crate only picks the fields
//! Kusto returns and keeps the English names.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {message}")]
pub struct GeoError {
    pub path: PathBuf,
    pub message: String,
}

/// Where an address is, as far as the database knows. Fields the record
/// lacks are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Place {
    /// The country's English name, `"Australia"`.
    pub country: Option<String>,
    /// The country's ISO 3166-1 alpha-2 code, `"AU"`.
    pub country_code: Option<String>,
    /// The continent's English name, `"Oceania"`.
    pub continent: Option<String>,
    /// The first-level subdivision's English name, `"New South Wales"`.
    pub state: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// An opened database, read into memory once and shared by every lookup.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
    source: String,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb").field("source", &self.source).field("type", &self.database_type()).finish()
    }
}

impl GeoDb {
    /// Reads the database at `path` and checks its layout.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let bytes =
            std::fs::read(path).map_err(|err| GeoError { path: path.to_path_buf(), message: err.to_string() })?;
        GeoDb::from_bytes(bytes, &path.display().to_string())
            .map_err(|message| GeoError { path: path.to_path_buf(), message })
    }

    /// A database held in memory; `source` names it in messages.
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<GeoDb, String> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|err| err.to_string())?;
        Ok(GeoDb { reader, source: source.to_string() })
    }

    /// The `database_type` of the file's metadata, `"GeoLite2-City"`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Where `address` is; `None` when the database has no record for it
    /// (private ranges, for example) or the record cannot be decoded.
    pub fn lookup(&self, address: IpAddr) -> Option<Place> {
        let result = self.reader.lookup(address).ok()?;
        let record: CityRecord<'_> = result.decode().ok()??;
        let english = |names: Names<'_>| names.en.map(str::to_string);
        let place = Place {
            country: english(record.country.names),
            country_code: record.country.iso_code.map(str::to_string),
            continent: english(record.continent.names),
            state: record.subdivisions.into_iter().next().and_then(|subdivision| english(subdivision.names)),
            city: english(record.city.names),
            latitude: record.location.latitude,
            longitude: record.location.longitude,
        };
        Some(place)
    }

    /// [`GeoDb::lookup`] of an address written as text (IPv4 or IPv6);
    /// `None` when the text is not an address.
    pub fn lookup_text(&self, text: &str) -> Option<Place> {
        self.lookup(parse_address(text)?)
    }
}

/// An address in text, with surrounding spaces allowed.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

// The subset of the GeoIP2 City record layout that lookups return. Every
// part is optional in the format, so every part defaults.

#[derive(Deserialize, Default)]
#[serde(default)]
struct CityRecord<'a> {
    #[serde(borrow)]
    city: Named<'a>,
    #[serde(borrow)]
    continent: Named<'a>,
    #[serde(borrow)]
    country: Country<'a>,
    #[serde(borrow)]
    subdivisions: Vec<Named<'a>>,
    location: Location,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    names: Names<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Country<'a> {
    #[serde(borrow)]
    names: Names<'a>,
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Names<'a> {
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// A small database for tests (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;
