//! Event time written as HEC's `time`; the field is read with [`sluice_sdk::time`].
//!
//! HEC wants epoch seconds as a plain decimal. Exponent notation (`1.718E9`) is refused with
//! code 15 by Splunk 10, so the value is written from integer milliseconds, never from a float.

pub use sluice_sdk::time::{parse_millis, parse_raw_millis};

/// Writes epoch milliseconds as decimal seconds with exactly three fraction digits
/// (`1718000000.123`).
pub fn write_seconds(buf: &mut Vec<u8>, millis: i64) {
    let secs = millis.div_euclid(1000);
    let frac = millis.rem_euclid(1000);
    let mut itoa = itoa::Buffer::new();
    buf.extend_from_slice(itoa.format(secs).as_bytes());
    buf.push(b'.');
    buf.push(b'0' + (frac / 100) as u8);
    buf.push(b'0' + (frac / 10 % 10) as u8);
    buf.push(b'0' + (frac % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ms: i64) -> String {
        let mut b = Vec::new();
        write_seconds(&mut b, ms);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn writes_three_fraction_digits() {
        assert_eq!(text(1_718_000_000_123), "1718000000.123");
        assert_eq!(text(1_718_000_000_000), "1718000000.000");
        assert_eq!(text(1_718_000_000_005), "1718000000.005");
        assert_eq!(text(0), "0.000");
        assert_eq!(text(-1_500), "-2.500");
    }
}
