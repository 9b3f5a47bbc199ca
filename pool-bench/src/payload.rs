//! The payload of one operation: `positions` coordinates, serialised as 8 bytes each.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes per position in a serialised payload (one little-endian `f64`).
pub const BYTES_PER_POSITION: usize = 8;

/// Builds the positions of operation `index` and serialises them: `positions` × 8 bytes
/// (1,000 positions ≈ 7.81 KiB), as s3db.js built and stringified its payload inside
/// each operation.
///
/// The values depend on `index`, so no two operations share a buffer and the work cannot
/// be hoisted out of the loop.
///
/// ```
/// let payload = pool_bench::build_payload(3, 1_000);
/// assert_eq!(payload.len(), 8_000);
/// ```
pub fn build_payload(index: usize, positions: usize) -> Bytes {
    let coordinates: Vec<f64> = (0..positions)
        .map(|position| index as f64 + position as f64 * 0.5)
        .collect();
    let mut serialised = BytesMut::with_capacity(positions * BYTES_PER_POSITION);
    for coordinate in coordinates {
        serialised.put_f64_le(coordinate);
    }
    serialised.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_eight_bytes_a_position_and_depends_on_the_index() {
        let first = build_payload(1, 2_000);
        let second = build_payload(2, 2_000);
        assert_eq!(first.len(), 16_000);
        assert_ne!(first, second);
        assert_eq!(&first[8..16], &1.5f64.to_le_bytes());
    }
}
