//! Gzip request bodies (RFC 1952) for sinks that compress what they send.
//!
//! A deflate compressor holds a few hundred kilobytes of tables that are zeroed when it is
//! made, and a compressed body is as large as a batch. Made fresh for every request, both
//! land in memory the cache has not seen, and a body freed by the HTTP client on another
//! thread (a plugin's runtime) leaves the next request a new block again. [`Gzip`] keeps its
//! compressors and hands out bodies from a [`BufferPool`], which they return to when the
//! client drops them.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use parking_lot::Mutex;

use crate::plugin::BufferPool;

/// Header and trailer (CRC-32 and size) around the deflate stream.
const FRAMING: usize = 10 + 8;

/// The gzip member header: deflate, no name, no time, unknown OS.
fn header(level: Compression) -> [u8; 10] {
    // XFL: 2 for the slowest level, 4 for the fastest (RFC 1952, 2.3.1).
    let xfl = match level.level() {
        9.. => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// Compression failed; deflate into memory only fails on a bug in the compressor.
#[derive(Debug, thiserror::Error)]
#[error("gzip failed: {0}")]
pub struct GzipError(String);

/// Compresses request bodies at one level, reusing compressors and body buffers.
#[derive(Debug)]
pub struct Gzip {
    level: Compression,
    compressors: Mutex<Vec<Compress>>,
    bodies: Arc<BufferPool>,
}

impl Gzip {
    /// `level` is 1 (fastest) to 9 (smallest).
    pub fn new(level: u32) -> Self {
        Gzip {
            level: Compression::new(level),
            compressors: Mutex::new(Vec::new()),
            bodies: BufferPool::new(),
        }
    }

    /// One gzip member holding `input`, as a body that goes back to the pool when dropped.
    pub fn compress(&self, input: &[u8]) -> Result<Bytes, GzipError> {
        let mut deflate = self
            .compressors
            .lock()
            .pop()
            .unwrap_or_else(|| Compress::new(self.level, false));
        let mut out = self.bodies.take();
        let written = write_member(&mut deflate, self.level, input, &mut out);
        deflate.reset();
        {
            let mut compressors = self.compressors.lock();
            if compressors.len() < BufferPool::KEEP {
                compressors.push(deflate);
            }
        }
        written?;
        Ok(self.bodies.into_bytes(out))
    }
}

fn write_member(
    deflate: &mut Compress,
    level: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), GzipError> {
    // JSON shrinks to a fifth or less at level 1; a body that needs more grows below.
    out.reserve(input.len() / 4 + FRAMING + 64);
    out.extend_from_slice(&header(level));
    loop {
        let consumed = usize::try_from(deflate.total_in())
            .map_err(|_| GzipError("input position out of range".into()))?;
        let rest = input
            .get(consumed..)
            .ok_or_else(|| GzipError("compressor read past the input".into()))?;
        let before = (deflate.total_in(), deflate.total_out());
        match deflate.compress_vec(rest, out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => break,
            // `compress_vec` only fills spare capacity: grow when it is used up.
            Ok(Status::Ok | Status::BufError) if out.len() == out.capacity() => {
                out.reserve(out.capacity().max(4096))
            }
            // Room left and nothing done: looping would never end.
            Ok(_) if (deflate.total_in(), deflate.total_out()) == before => {
                return Err(GzipError("deflate made no progress".into()))
            }
            Ok(_) => {}
            Err(e) => return Err(GzipError(e.to_string())),
        }
    }
    let mut crc = Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input's length modulo 2^32.
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    fn json_lines(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{{\"seq\":{i},\"user\":\"u{}\"}}\n", i % 97).into_bytes())
            .collect()
    }

    #[test]
    fn bodies_decompress_to_their_input_with_header_and_trailer() {
        let gz = Gzip::new(1);
        for input in [Vec::new(), b"x".to_vec(), json_lines(20_000)] {
            let body = gz.compress(&input).expect("compress");
            assert_eq!(&body[..3], &[0x1f, 0x8b, 8], "gzip magic and deflate");
            assert_eq!(body[8], 4, "XFL says fastest");
            let n = body.len();
            let size = u32::from_le_bytes(body[n - 4..].try_into().expect("4 bytes"));
            assert_eq!(size as usize, input.len());
            assert_eq!(gunzip(&body), input);
        }
    }

    #[test]
    fn a_reused_compressor_starts_from_a_clean_state() {
        let gz = Gzip::new(6);
        let first = json_lines(5_000);
        let second = json_lines(7_000);
        let a = gz.compress(&first).expect("compress");
        drop(a);
        let b = gz.compress(&second).expect("compress");
        let c = gz.compress(&first).expect("compress");
        assert_eq!(gunzip(&b), second);
        assert_eq!(gunzip(&c), first);
        assert_eq!(
            gz.compressors.lock().len(),
            1,
            "one compressor served all three"
        );
    }

    #[test]
    fn incompressible_input_grows_the_body() {
        // Random bytes do not shrink: the body outgrows its first reservation.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let input: Vec<u8> = (0..300_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let body = Gzip::new(1).compress(&input).expect("compress");
        assert!(body.len() > input.len());
        assert_eq!(gunzip(&body), input);
    }

    #[test]
    fn a_dropped_body_comes_back_for_the_next_request() {
        let gz = Gzip::new(1);
        let input = json_lines(10_000);
        let body = gz.compress(&input).expect("compress");
        let ptr = body.as_ptr();
        // Dropped on another thread, as an HTTP client on a plugin's runtime does.
        std::thread::spawn(move || drop(body))
            .join()
            .expect("thread");
        // A vector that was freed instead would come back empty, with no capacity.
        let back = gz.bodies.take();
        assert_eq!(back.as_ptr(), ptr, "the same allocation came back");
        assert!(back.is_empty() && back.capacity() >= input.len() / 10);
        gz.bodies.put(back);
        let again = gz.compress(&input).expect("compress");
        assert_eq!(again.as_ptr(), ptr, "and the next body is written into it");
        assert_eq!(gunzip(&again), input);
    }
}
