//! Turning message values into record values: JSON is validated in place, raw is passed on,
//! Confluent-framed Avro is decoded to JSON with the writer schema from the registry.

use apache_avro::Schema;
use serde::de::IgnoredAny;
use sluice_sdk::{Bytes, Record};

use crate::schema_registry::{SchemaError, SchemaRegistry};

/// Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the datum.
const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

/// Marks a value that is not one JSON document. Parsing into `IgnoredAny` checks the syntax
/// without building anything.
pub fn check_json(record: &mut Record) {
    if record.value.is_empty() {
        record.decode_error = Some("empty value is not JSON".into());
        return;
    }
    if let Err(e) = serde_json::from_slice::<IgnoredAny>(&record.value) {
        record.decode_error = Some(format!("value is not valid JSON: {e}").into());
    }
}

/// Splits a Confluent-framed value into schema id and datum.
pub fn split_frame(value: &[u8]) -> Result<(u32, &[u8]), String> {
    if value.len() < HEADER_LEN {
        return Err(format!(
            "value of {} bytes is too short for the Schema Registry wire format",
            value.len()
        ));
    }
    if value[0] != MAGIC {
        return Err(format!(
            "unknown Schema Registry magic byte {} (expected 0)",
            value[0]
        ));
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok((id, &value[HEADER_LEN..]))
}

/// Decodes one Avro datum written with `schema` into JSON text.
pub fn avro_to_json(schema: &Schema, mut datum: &[u8]) -> Result<Vec<u8>, String> {
    let value = apache_avro::from_avro_datum(schema, &mut datum, None)
        .map_err(|e| format!("Avro datum does not match its schema: {e}"))?;
    if !datum.is_empty() {
        return Err(format!(
            "Avro datum has {} bytes left over after decoding",
            datum.len()
        ));
    }
    let json = serde_json::Value::try_from(value)
        .map_err(|e| format!("Avro value has no JSON form: {e}"))?;
    serde_json::to_vec(&json).map_err(|e| format!("JSON encoding failed: {e}"))
}

/// Decodes one record in place. `Ok` covers both success and a record marked with a decode
/// error; `Err` means the registry is unreachable and the record must be tried again later.
pub async fn decode_avro(
    registry: &mut SchemaRegistry,
    record: &mut Record,
) -> Result<(), SchemaError> {
    let (id, datum) = match split_frame(&record.value) {
        Ok(f) => f,
        Err(e) => {
            record.decode_error = Some(e.into());
            return Ok(());
        }
    };
    let schema = match registry.schema(id).await {
        Ok(s) => s,
        Err(SchemaError::Permanent(e)) => {
            record.decode_error = Some(e.into());
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match avro_to_json(&schema, datum) {
        Ok(json) => record.value = Bytes::from(json),
        Err(e) => record.decode_error = Some(format!("schema id {id}: {e}").into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::Origin;

    fn rec(v: &'static [u8]) -> Record {
        Record::new(v, Origin::new("t".into(), 0, 0))
    }

    #[test]
    fn json_validation() {
        let mut r = rec(br#"{"a": [1, 2, {"b": null}]}"#);
        check_json(&mut r);
        assert_eq!(r.decode_error, None);
        for bad in [&b"not json"[..], b"{\"a\": 1", b"", b"{} {}"] {
            let mut r = Record::new(Bytes::copy_from_slice(bad), Origin::new("t".into(), 0, 0));
            check_json(&mut r);
            assert!(r.decode_error.is_some(), "{bad:?}");
        }
    }

    #[test]
    fn frames() {
        assert_eq!(split_frame(&[0, 0, 0, 1, 2, 9]).unwrap(), (258, &[9u8][..]));
        assert!(split_frame(&[0, 0, 0]).is_err());
        assert!(split_frame(&[1, 0, 0, 0, 1]).unwrap_err().contains("magic"));
    }

    #[test]
    fn avro_datum_to_json() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[
                {"name":"id","type":"long"},
                {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}},
                {"name":"note","type":["null","string"],"default":null}]}"#,
        )
        .unwrap();
        let mut value = apache_avro::types::Record::new(&schema).unwrap();
        value.put("id", 7i64);
        value.put("kind", apache_avro::types::Value::Enum(1, "B".into()));
        value.put(
            "note",
            apache_avro::types::Value::Union(1, Box::new("hi".into())),
        );
        let datum = apache_avro::to_avro_datum(&schema, value).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&avro_to_json(&schema, &datum).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 7, "kind": "B", "note": "hi"})
        );
        assert!(avro_to_json(&schema, &datum[..1]).is_err());
        let mut long = datum.clone();
        long.push(0);
        assert!(avro_to_json(&schema, &long)
            .unwrap_err()
            .contains("left over"));
    }
}
