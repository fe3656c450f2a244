//! Turning message values into record values: JSON is validated in place, raw is passed on,
//! Confluent-framed Avro is decoded to JSON with the writer schema from the registry.

use apache_avro::Schema;
use sluice_sdk::{Bytes, Record};

use crate::schema_registry::{SchemaError, SchemaRegistry};

/// Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the datum.
const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

/// Marks a value that is not one JSON text (`sluice_sdk::json::check`: the syntax and UTF-8,
/// without building anything).
pub fn check_json(record: &mut Record) {
    if record.value.is_empty() {
        record.decode_error = Some("empty value is not JSON".into());
        return;
    }
    match sluice_sdk::json::check(&record.value) {
        Ok(()) => record.mark_json_checked(),
        Err(e) => record.decode_error = Some(format!("value is not valid JSON: {e}").into()),
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

/// Deepest nesting (records, arrays, maps, unions) a datum may have: recursive schemas would
/// otherwise let a hostile datum exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Array and map items allowed per datum byte, plus [`ITEMS_BASE`]. Items of `null` or of an
/// empty record take no bytes, so a few bytes could otherwise claim billions of them.
const ITEMS_PER_BYTE: usize = 8;
const ITEMS_BASE: usize = 1024;

/// Walks a datum without building anything and refuses what the decoder must not be handed:
/// lengths past the end of the datum, more items than the datum can reasonably hold, nesting
/// deeper than [`MAX_DEPTH`]. The Avro decoder reserves memory for a claimed length before
/// reading it, so a six-byte message could otherwise make it allocate gigabytes.
fn check_datum(schema: &Schema, datum: &[u8]) -> Result<(), String> {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)
        .map_err(|e| format!("schema cannot be resolved: {e}"))?;
    let mut walk = Walk {
        names: resolved.get_names(),
        items_left: ITEMS_BASE.saturating_add(datum.len().saturating_mul(ITEMS_PER_BYTE)),
        data: datum,
    };
    walk.value(schema, &None, 0)
}

struct Walk<'a, 's> {
    names: &'a apache_avro::schema::NamesRef<'s>,
    items_left: usize,
    data: &'a [u8],
}

impl Walk<'_, '_> {
    fn take(&mut self, n: usize) -> Result<(), String> {
        if n > self.data.len() {
            return Err(format!(
                "a length of {n} bytes runs past the end of the datum ({} left)",
                self.data.len()
            ));
        }
        self.data = &self.data[n..];
        Ok(())
    }

    /// A zigzag varint (Avro `int` and `long`).
    fn long(&mut self) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.data.split_first() else {
                return Err("the datum ends inside a number".into());
            };
            self.data = rest;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err("a number is longer than 10 bytes".into())
    }

    fn length(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("negative length {n}"))
    }

    fn value(
        &mut self,
        schema: &Schema,
        ns: &apache_avro::schema::Namespace,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.take(1),
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4),
            Schema::Double => self.take(8),
            Schema::Duration => self.take(12),
            Schema::Bytes | Schema::String | Schema::BigDecimal | Schema::Uuid => {
                let n = self.length()?;
                self.take(n)
            }
            Schema::Fixed(f) => self.take(f.size),
            Schema::Decimal(d) => self.value(&d.inner, ns, depth + 1),
            Schema::Union(u) => {
                let i = self.long()?;
                let variant = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| format!("union branch {i} does not exist"))?;
                self.value(variant, ns, depth + 1)
            }
            Schema::Record(r) => {
                let name = r.name.fully_qualified_name(ns);
                for field in &r.fields {
                    self.value(&field.schema, &name.namespace, depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(a) => self.blocks(|w| w.value(&a.items, ns, depth + 1)),
            Schema::Map(m) => self.blocks(|w| {
                let n = w.length()?;
                w.take(n)?;
                w.value(&m.types, ns, depth + 1)
            }),
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(ns);
                let target = self
                    .names
                    .get(&name)
                    .ok_or_else(|| format!("unknown schema reference {}", name.name))?;
                self.value(target, &name.namespace, depth + 1)
            }
        }
    }

    /// Array and map blocks: a count (negative: followed by the block's byte size), the
    /// items, until a zero count.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            if count > self.items_left {
                return Err(format!(
                    "a block claims {count} items, more than the datum can hold"
                ));
            }
            self.items_left -= count;
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

/// Decodes one Avro datum written with `schema` into JSON text.
pub fn avro_to_json(schema: &Schema, mut datum: &[u8]) -> Result<Vec<u8>, String> {
    check_datum(schema, datum).map_err(|e| format!("Avro datum is malformed: {e}"))?;
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
        // JSON text is UTF-8 (RFC 8259 section 8.1): a string holding other bytes is refused,
        // and the letter says where.
        let mut r = rec(b"{\"name\": \"caf\xe9\"}");
        check_json(&mut r);
        assert_eq!(
            r.decode_error.as_deref(),
            Some("value is not valid JSON: invalid UTF-8 at byte 13")
        );
        let mut r = rec(b"{\"n\": tru}");
        check_json(&mut r);
        let e = r.decode_error.unwrap_or_default();
        assert!(e.contains("line 1 column"), "{e}");
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

    /// Every shape of Avro the decoder walks: nested records, unions, enums, arrays, maps,
    /// fixed, bytes and logical types.
    const RICH: &str = r#"{"type":"record","name":"Event","namespace":"fuzz","fields":[
        {"name":"id","type":"long"},
        {"name":"score","type":"int"},
        {"name":"ratio","type":"double"},
        {"name":"weight","type":"float"},
        {"name":"ok","type":"boolean"},
        {"name":"user","type":"string"},
        {"name":"blob","type":"bytes"},
        {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}},
        {"name":"note","type":["null","string","long"]},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"nulls","type":{"type":"array","items":"null"}},
        {"name":"attrs","type":{"type":"map","values":"int"}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"uid","type":{"type":"string","logicalType":"uuid"}},
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[
            {"name":"depth","type":"int"},
            {"name":"next","type":["null","Inner"]}]}}]}"#;

    fn valid_datum() -> Vec<u8> {
        use apache_avro::types::Value;
        let schema = Schema::parse_str(RICH).unwrap();
        let json = serde_json::json!({
            "id": 7, "score": -3, "ratio": 0.5, "weight": 1.5, "ok": true, "user": "alice",
            "blob": "xyz", "hash": "abcd", "kind": "B", "note": "hi",
            "tags": ["a", "bb"], "nulls": [null, null], "attrs": {"k": 1, "l": 2},
            "at": 1_700_000_000_000_i64, "day": 19000,
            "uid": "550e8400-e29b-41d4-a716-446655440000",
            "inner": {"depth": 1, "next": {"depth": 2, "next": null}}
        });
        let Value::Map(fields) = Value::from(json) else {
            unreachable!()
        };
        let value = Value::Map(fields).resolve(&schema).unwrap();
        apache_avro::to_avro_datum(&schema, value).unwrap()
    }

    /// Hostile values through the real decode entry point: random bytes, random bytes behind
    /// a valid frame header, and mutations of a valid encoding. Nothing may panic or
    /// allocate without bound; every record either decodes to JSON or carries its error.
    #[tokio::test]
    async fn hostile_avro_never_panics() {
        use rand::{Rng, SeedableRng};
        let emulator = sluice_testkit::schema_registry::SchemaRegistry::start().await;
        let id = emulator.register("fuzz-value", RICH);
        let mut registry = SchemaRegistry::new(&crate::config::SchemaRegistryConfig {
            url: emulator.url(),
            username: None,
            password: None,
            tls: None,
        })
        .unwrap();
        let valid = frame(id, &valid_datum());
        let mut decoded_ok = 0;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x51_u64 << 32 | 0xce);
        for case in 0..6000 {
            let value: Vec<u8> = match case % 3 {
                0 => (0..rng.random_range(0..48)).map(|_| rng.random()).collect(),
                1 => {
                    let mut v = frame(id, &[]);
                    v.extend((0..rng.random_range(0..96)).map(|_| rng.random::<u8>()));
                    v
                }
                _ => {
                    let mut v = valid.clone();
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(5..v.len());
                        match rng.random_range(0..4) {
                            0 => v[at] = rng.random(),
                            1 => v[at] ^= 1 << rng.random_range(0..8),
                            2 => v.truncate(at),
                            _ => v.insert(at, rng.random()),
                        }
                        if v.len() <= 5 {
                            break;
                        }
                    }
                    v
                }
            };
            let mut record = Record::new(Bytes::from(value.clone()), Origin::new("t".into(), 0, 0));
            decode_avro(&mut registry, &mut record).await.unwrap();
            match &record.decode_error {
                None => {
                    serde_json::from_slice::<serde_json::Value>(&record.value)
                        .unwrap_or_else(|e| panic!("decoded value is not JSON ({e}): {value:?}"));
                    decoded_ok += 1;
                }
                Some(_) => assert_eq!(&record.value[..], &value[..], "original kept for the DLQ"),
            }
        }
        assert!(decoded_ok > 0, "some mutations still decode");
    }

    fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
        sluice_testkit::schema_registry::frame(id, datum)
    }

    /// A few bytes that claim a huge block of items must not make the decoder reserve memory
    /// for all of them.
    #[test]
    fn a_huge_item_count_is_refused_without_allocating_it() {
        let schema = Schema::parse_str(r#"{"type":"array","items":"null"}"#).unwrap();
        // zigzag varint of 400_000_000 items, then the end of the array.
        let mut datum = Vec::new();
        let mut n: u64 = 400_000_000 << 1;
        while n >= 0x80 {
            datum.push((n as u8) | 0x80);
            n >>= 7;
        }
        datum.push(n as u8);
        datum.push(0);
        let started = std::time::Instant::now();
        let r = avro_to_json(&schema, &datum);
        assert!(r.is_err(), "{:?}", r.map(|v| v.len()));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));

        // A recursive schema nested a million levels deep must not exhaust the stack.
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
        )
        .unwrap();
        let mut datum = vec![2u8; 1_000_000];
        datum.push(0);
        let e = avro_to_json(&schema, &datum).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }
}
