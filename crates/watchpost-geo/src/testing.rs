//! A database of the GeoIP2 City layout with three networks, written with
//! `mmdb-writer`, for tests of the code that does lookups.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize)]
struct Names {
    names: BTreeMap<&'static str, &'static str>,
}

fn names(en: &'static str, de: &'static str) -> Names {
    Names { names: BTreeMap::from([("en", en), ("de", de)]) }
}

#[derive(Serialize)]
struct Country {
    names: BTreeMap<&'static str, &'static str>,
    iso_code: &'static str,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    time_zone: &'static str,
}

#[derive(Serialize)]
struct City {
    city: Names,
    continent: Names,
    country: Country,
    subdivisions: Vec<Names>,
    location: Location,
}

#[derive(Serialize)]
struct CountryOnly {
    country: Country,
}

/// A database with the GeoIP2 City layout: one /24 in Sydney, one IPv6 /32
/// in Boca Raton, and one IPv4 /16 with only a country.
pub fn sample_database() -> Vec<u8> {
    let mut writer = mmdb_writer::Writer::new("Watchpost-Test-City");
    let sydney = City {
        city: names("Sydney", "Sydney"),
        continent: names("Oceania", "Ozeanien"),
        country: Country { names: BTreeMap::from([("en", "Australia")]), iso_code: "AU" },
        subdivisions: vec![names("New South Wales", "Neusüdwales")],
        location: Location { latitude: -33.8715, longitude: 151.2006, time_zone: "Australia/Sydney" },
    };
    writer.insert("20.53.203.0/24".parse::<ipnet::IpNet>().unwrap(), &sydney).unwrap();
    let boca = City {
        city: names("Boca Raton", "Boca Raton"),
        continent: names("North America", "Nordamerika"),
        country: Country { names: BTreeMap::from([("en", "United States")]), iso_code: "US" },
        subdivisions: vec![names("Florida", "Florida")],
        location: Location { latitude: 26.3594, longitude: -80.0771, time_zone: "America/New_York" },
    };
    writer.insert("2a03:2880::/32".parse::<ipnet::IpNet>().unwrap(), &boca).unwrap();
    let country_only = CountryOnly { country: Country { names: BTreeMap::from([("en", "Sweden")]), iso_code: "SE" } };
    writer.insert("89.160.0.0/16".parse::<ipnet::IpNet>().unwrap(), &country_only).unwrap();
    writer.to_bytes().unwrap()
}
