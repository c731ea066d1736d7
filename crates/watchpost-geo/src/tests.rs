use super::testing::sample_database;
use super::*;

fn db() -> GeoDb {
    GeoDb::from_bytes(sample_database(), "test").unwrap()
}

#[test]
fn city_records_give_english_names_and_coordinates() {
    let db = db();
    assert_eq!(db.database_type(), "Watchpost-Test-City");
    let place = db.lookup_text("20.53.203.50").unwrap();
    assert_eq!(
        place,
        Place {
            country: Some("Australia".into()),
            country_code: Some("AU".into()),
            continent: Some("Oceania".into()),
            state: Some("New South Wales".into()),
            city: Some("Sydney".into()),
            latitude: Some(-33.8715),
            longitude: Some(151.2006),
        }
    );
    let place = db.lookup_text(" 2a03:2880:f12c:83:face:b00c::25de ").unwrap();
    assert_eq!(place.city.as_deref(), Some("Boca Raton"));
    assert_eq!(place.state.as_deref(), Some("Florida"));
}

#[test]
fn missing_parts_of_a_record_are_none() {
    let place = db().lookup_text("89.160.20.128").unwrap();
    assert_eq!(place.country.as_deref(), Some("Sweden"));
    assert_eq!(place.country_code.as_deref(), Some("SE"));
    assert_eq!((place.city, place.state, place.latitude), (None, None, None));
}

#[test]
fn uncovered_or_malformed_addresses_have_no_place() {
    let db = db();
    assert_eq!(db.lookup_text("10.1.2.3"), None);
    assert_eq!(db.lookup_text("20.53.204.1"), None);
    assert_eq!(db.lookup_text("not an address"), None);
    assert_eq!(db.lookup_text(""), None);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let dir = std::env::temp_dir().join(format!("watchpost-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bogus.mmdb");
    std::fs::write(&path, b"this is not a MaxMind database").unwrap();
    let err = GeoDb::open(&path).unwrap_err();
    assert!(err.to_string().contains("bogus.mmdb"), "{err}");
    let missing = GeoDb::open(&dir.join("missing.mmdb")).unwrap_err();
    assert!(missing.to_string().contains("missing.mmdb"), "{missing}");
    let good = dir.join("good.mmdb");
    std::fs::write(&good, sample_database()).unwrap();
    assert_eq!(GeoDb::open(&good).unwrap().lookup_text("20.53.203.1").unwrap().city.as_deref(), Some("Sydney"));
    std::fs::remove_dir_all(&dir).ok();
}
