//! The on-disk frame: a fixed 20-byte header followed by the opaque payload.
//!
//! Header layout, all integers little-endian:
//!
//! | offset | size | field                                                   |
//! | ------ | ---- | ------------------------------------------------------- |
//! | 0      | 4    | magic, the bytes `WPLF`                                 |
//! | 4      | 4    | payload length in bytes                                 |
//! | 8      | 8    | LSN of the record                                       |
//! | 16     | 4    | CRC-32 (IEEE) of header bytes `0..16` then the payload  |

use std::fmt;
use std::sync::Mutex;

use crc32fast::Hasher;

use crate::{Lsn, WalError, WalResult};

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 20;
/// Largest payload a single record may carry.
pub const MAX_RECORD_BYTES: usize = u32::MAX as usize - HEADER_LEN;

const MAGIC: [u8; 4] = *b"WPLF";

/// A frame whose payload is encoded and checksummed but which has no LSN yet.
///
/// The expensive work (copying and hashing the payload) happens here, outside the log's lock;
/// [`UnsealedFrame::seal`] only fills in the 20 header bytes.
pub struct UnsealedFrame {
    bytes: Vec<u8>,
    payload_crc: Hasher,
}

/// A complete frame, ready to be written. Its buffer goes back to the
/// spare buffers ([`RecordBuf::with_capacity`]) when it is dropped.
pub struct SealedFrame {
    pub lsn: Lsn,
    pub bytes: Vec<u8>,
}

impl Drop for SealedFrame {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.bytes));
    }
}

/// Buffers of written frames, kept for the next records.
///
/// A record is as big as its request (megabytes), and it is built on one
/// thread of the request pool and freed on another (the commit leader), so
/// the allocator's per-thread caches rarely hand the memory back to the
/// next record: each one faulted in fresh zeroed pages, a measurable part
/// of ingest CPU. Recycling the buffers here keeps their pages warm.
static SPARE: Mutex<Spare> = Mutex::new(Spare { buffers: Vec::new() });
/// Spare buffers kept at most, each at most [`SPARE_MAX_BYTES`].
const SPARE_BUFFERS: usize = 8;
const SPARE_MAX_BYTES: usize = 64 << 20;

/// The spare buffers.
struct Spare {
    buffers: Vec<Vec<u8>>,
}

impl Spare {
    /// The smallest kept buffer of at least `capacity` bytes, emptied.
    fn take(&mut self, capacity: usize) -> Option<Vec<u8>> {
        let (idx, _) = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, buf)| buf.capacity() >= capacity)
            .min_by_key(|(_, buf)| buf.capacity())?;
        Some(self.buffers.swap_remove(idx))
    }

    /// Keeps `buf` when there is room, or in place of a smaller one.
    fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > SPARE_MAX_BYTES {
            return;
        }
        buf.clear();
        if self.buffers.len() < SPARE_BUFFERS {
            self.buffers.push(buf);
        } else if let Some(smallest) = self.buffers.iter_mut().min_by_key(|kept| kept.capacity()) {
            if smallest.capacity() < buf.capacity() {
                *smallest = buf;
            }
        }
    }
}

fn take_spare(capacity: usize) -> Option<Vec<u8>> {
    SPARE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take(capacity)
}

fn give_back(buf: Vec<u8>) {
    SPARE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).give(buf);
}

/// Validated header fields of a frame read back from disk.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub lsn: Lsn,
    pub crc: u32,
}

/// Why a frame read back from disk was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    TornHeader {
        available: u64,
    },
    BadMagic {
        found: [u8; 4],
    },
    TornPayload {
        payload_len: u32,
        available: u64,
    },
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    UnexpectedLsn {
        expected: Lsn,
        found: Lsn,
    },
    /// The segment holds a record whose LSN belongs to the next segment.
    OverrunsNextSegment {
        lsn: Lsn,
        next_segment: Lsn,
    },
}

/// A record payload built in place, behind room for the frame header, so
/// that appending it to the log copies nothing. Write the payload through
/// [`std::io::Write`], then hand it to [`crate::Wal::append_buf`].
pub struct RecordBuf {
    bytes: Vec<u8>,
}

impl RecordBuf {
    /// An empty payload with room for `payload_capacity` bytes.
    pub fn with_capacity(payload_capacity: usize) -> RecordBuf {
        let capacity = HEADER_LEN + payload_capacity;
        let mut bytes = take_spare(capacity).unwrap_or_else(|| Vec::with_capacity(capacity));
        bytes.extend_from_slice(&[0; HEADER_LEN]);
        RecordBuf { bytes }
    }

    /// The payload written so far.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// Appends bytes to the payload.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

impl std::io::Write for RecordBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl UnsealedFrame {
    /// Copies and checksums `payload` into a new frame buffer.
    pub fn new(payload: &[u8]) -> WalResult<UnsealedFrame> {
        let mut buf = RecordBuf::with_capacity(payload.len());
        buf.extend_from_slice(payload);
        UnsealedFrame::from_buf(buf)
    }

    /// Checksums the payload of `buf`, keeping its buffer as the frame.
    pub fn from_buf(buf: RecordBuf) -> WalResult<UnsealedFrame> {
        let payload = buf.payload();
        if payload.len() > MAX_RECORD_BYTES {
            return Err(WalError::RecordTooLarge { len: payload.len(), max: MAX_RECORD_BYTES });
        }
        let mut payload_crc = Hasher::new();
        payload_crc.update(payload);
        Ok(UnsealedFrame { bytes: buf.bytes, payload_crc })
    }

    /// Assigns `lsn` and writes the header, including the checksum.
    pub fn seal(self, lsn: Lsn) -> SealedFrame {
        let UnsealedFrame { mut bytes, payload_crc } = self;
        let payload_len = u32::try_from(bytes.len() - HEADER_LEN).expect("length checked in `UnsealedFrame::new`");
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4..8].copy_from_slice(&payload_len.to_le_bytes());
        bytes[8..16].copy_from_slice(&lsn.to_le_bytes());
        let mut crc = Hasher::new();
        crc.update(&bytes[0..16]);
        crc.combine(&payload_crc);
        bytes[16..20].copy_from_slice(&crc.finalize().to_le_bytes());
        SealedFrame { lsn, bytes }
    }
}

impl FrameHeader {
    /// Parses a header, checking only the magic; the checksum needs the payload.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader, Corruption> {
        let magic: [u8; 4] = bytes[0..4].try_into().expect("slice of length 4");
        if magic != MAGIC {
            return Err(Corruption::BadMagic { found: magic });
        }
        Ok(FrameHeader {
            payload_len: u32::from_le_bytes(bytes[4..8].try_into().expect("slice of length 4")),
            lsn: u64::from_le_bytes(bytes[8..16].try_into().expect("slice of length 8")),
            crc: u32::from_le_bytes(bytes[16..20].try_into().expect("slice of length 4")),
        })
    }

    /// Checks the stored checksum against the header bytes and `payload`.
    pub fn verify(&self, header: &[u8; HEADER_LEN], payload: &[u8]) -> Result<(), Corruption> {
        let mut crc = Hasher::new();
        crc.update(&header[0..16]);
        crc.update(payload);
        let computed = crc.finalize();
        if computed != self.crc {
            return Err(Corruption::ChecksumMismatch { stored: self.crc, computed });
        }
        Ok(())
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::TornHeader { available } => {
                write!(f, "torn frame header: {available} of {HEADER_LEN} bytes present")
            }
            Corruption::BadMagic { found } => write!(f, "bad frame magic {found:02x?}"),
            Corruption::TornPayload { payload_len, available } => {
                write!(f, "torn frame payload: {available} of {payload_len} bytes present")
            }
            Corruption::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            Corruption::UnexpectedLsn { expected, found } => {
                write!(f, "unexpected lsn {found}, expected {expected}")
            }
            Corruption::OverrunsNextSegment { lsn, next_segment } => {
                write!(f, "lsn {lsn} belongs to the next segment, which starts at {next_segment}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(frame: &SealedFrame) -> [u8; HEADER_LEN] {
        frame.bytes[..HEADER_LEN].try_into().unwrap()
    }

    /// Buffers of written frames are handed out again, smallest fitting
    /// first, emptied; the pool keeps the larger ones when full.
    #[test]
    fn spare_buffers_are_reused_best_fit_first() {
        let mut spare = Spare { buffers: Vec::new() };
        let big = Vec::<u8>::with_capacity(4 << 20);
        let mut small = Vec::<u8>::with_capacity(1 << 20);
        small.extend_from_slice(b"old bytes");
        let (big_at, small_at) = (big.as_ptr(), small.as_ptr());
        spare.give(big);
        spare.give(small);
        let got = spare.take(1000).unwrap();
        assert_eq!((got.as_ptr(), got.len()), (small_at, 0));
        assert!(spare.take(8 << 20).is_none());
        let got = spare.take(2 << 20).unwrap();
        assert_eq!(got.as_ptr(), big_at);
        for _ in 0..SPARE_BUFFERS {
            spare.give(Vec::with_capacity(1024));
        }
        spare.give(Vec::with_capacity(1 << 20));
        assert_eq!(spare.buffers.len(), SPARE_BUFFERS);
        assert!(spare.take(1 << 20).is_some(), "a full pool keeps the larger buffer");
        spare.give(Vec::with_capacity(SPARE_MAX_BYTES + 1));
        assert!(spare.take(SPARE_MAX_BYTES + 1).is_none(), "oversized buffers are not kept");
    }

    #[test]
    fn sealed_frame_round_trips() {
        let frame = UnsealedFrame::new(b"hello").unwrap().seal(42);
        assert_eq!(frame.bytes.len(), HEADER_LEN + 5);
        let header_bytes = header_of(&frame);
        let header = FrameHeader::parse(&header_bytes).unwrap();
        assert_eq!(header.payload_len, 5);
        assert_eq!(header.lsn, 42);
        header.verify(&header_bytes, b"hello").unwrap();
    }

    #[test]
    fn combined_crc_equals_crc_of_header_then_payload() {
        let frame = UnsealedFrame::new(b"payload bytes").unwrap().seal(7);
        let mut expected = Hasher::new();
        expected.update(&frame.bytes[0..16]);
        expected.update(&frame.bytes[HEADER_LEN..]);
        assert_eq!(frame.bytes[16..20], expected.finalize().to_le_bytes());
    }

    #[test]
    fn empty_payload_is_a_valid_frame() {
        let frame = UnsealedFrame::new(b"").unwrap().seal(1);
        let header_bytes = header_of(&frame);
        let header = FrameHeader::parse(&header_bytes).unwrap();
        header.verify(&header_bytes, b"").unwrap();
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let frame = UnsealedFrame::new(b"abc").unwrap().seal(3);
        for byte in 0..frame.bytes.len() {
            for bit in 0..8 {
                let mut bytes = frame.bytes.clone();
                bytes[byte] ^= 1 << bit;
                let header_bytes: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
                let outcome = FrameHeader::parse(&header_bytes)
                    .and_then(|header| header.verify(&header_bytes, &bytes[HEADER_LEN..]).map(|()| header));
                assert!(outcome.is_err(), "flip of bit {bit} in byte {byte} went unnoticed");
            }
        }
    }

    #[test]
    fn bad_magic_is_reported() {
        let mut bytes = header_of(&UnsealedFrame::new(b"x").unwrap().seal(1));
        bytes[0] = b'X';
        assert!(matches!(FrameHeader::parse(&bytes), Err(Corruption::BadMagic { .. })));
    }
}
