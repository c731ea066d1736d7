//! Term filters: for each string column of a segment and each block of
//! [`BLOCK_ROWS`] rows, a split-block bloom filter of the terms in that
//! block, so a `has` search reads only the blocks that may hold its term.
//!
//! A term is a maximal run of term bytes ([`is_term_byte`]: ASCII letters
//! and digits, and every byte of a non-ASCII character), compared with ASCII
//! letters lower-cased. These are the rules of the engine's `has`, which uses
//! [`is_term_byte`] itself, so the two cannot drift apart. A filter answers
//! "maybe" or "certainly not"; only "certainly not" lets a reader skip rows.
//!
//! The filters live in a sidecar file next to the segment
//! (`<segment>.terms`), named by the segment's catalogue entry, so the pair
//! becomes visible in the same catalogue write. Layout (little-endian):
//! the magic `WPTERMS1`, a `u32` header length, a JSON header (block size,
//! row count, per column the byte offset and size of each block's filter),
//! then the filters. A reader fetches only the 32-byte filter blocks a probe
//! touches, never the whole file.
//!
//! The bloom filter is written here rather than taken from a crate because
//! its bytes are a storage format: the hash, block layout and salts must stay
//! fixed across releases and be probed in place with positioned reads.

use std::collections::HashSet;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

use crate::{StorageError, StorageResult};

/// Rows per filtered block; segments are written with data pages of at most
/// this many rows, so a block maps to about one page per column.
pub const BLOCK_ROWS: usize = 8192;

const MAGIC: &[u8; 8] = b"WPTERMS1";
/// Filter bits per distinct term: about a 1% false-positive rate.
const BITS_PER_TERM: usize = 12;
const BLOCK_BYTES: usize = 32;
const SALT: [u32; 8] =
    [0x47b6_137b, 0x4497_4d91, 0x8824_ad5b, 0xa2b7_289d, 0x7054_95c7, 0x2df1_424b, 0x9efc_4947, 0x5c6b_fb31];

/// Whether `byte` belongs to a term: ASCII alphanumerics and all bytes of
/// non-ASCII characters.
pub fn is_term_byte(byte: u8) -> bool {
    TERM_BYTES[usize::from(byte)]
}

/// [`is_term_byte`] as a table: one load per byte in the tokenising loop.
static TERM_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b >= 0x80;
        byte += 1;
    }
    table
};

/// Calls `f` with every term of `text`, in order.
pub fn for_each_term(text: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = None;
    for (idx, byte) in text.iter().enumerate() {
        match (is_term_byte(*byte), start) {
            (true, None) => start = Some(idx),
            (false, Some(from)) => {
                f(&text[from..idx]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        f(&text[from..]);
    }
}

/// The hash a filter stores for `term`, with ASCII letters lower-cased.
pub fn term_hash(term: &[u8]) -> u64 {
    if term.iter().any(u8::is_ascii_uppercase) {
        let mut small = [0u8; 64];
        if let Some(buf) = small.get_mut(..term.len()) {
            buf.copy_from_slice(term);
            buf.make_ascii_lowercase();
            return XxHash64::oneshot(0, buf);
        }
        XxHash64::oneshot(0, &term.to_ascii_lowercase())
    } else {
        XxHash64::oneshot(0, term)
    }
}

/// The term hashes a value must contain for `has`/`has_cs` of `needle` (or
/// equality with it) to be true: every term of the needle is a whole term
/// of any matching text, because the match starts and ends at term
/// boundaries. Empty when the needle has no term, which proves nothing.
pub fn needle_hashes(needle: &str) -> Vec<u64> {
    let mut hashes = Vec::new();
    for_each_term(needle.as_bytes(), |term| hashes.push(term_hash(term)));
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

fn block_index(hash: u64, n_blocks: usize) -> usize {
    (((hash >> 32) * n_blocks as u64) >> 32) as usize
}

fn block_mask(hash: u64) -> [u32; 8] {
    let key = hash as u32;
    SALT.map(|salt| 1u32 << (key.wrapping_mul(salt) >> 27))
}

/// A split-block bloom filter being built.
struct Bloom {
    words: Vec<[u32; 8]>,
}

impl Bloom {
    fn with_terms(hashes: &HashSet<u64, IdentityBuild>) -> Bloom {
        let n_blocks = (hashes.len() * BITS_PER_TERM).div_ceil(BLOCK_BYTES * 8).max(1);
        let mut words = vec![[0u32; 8]; n_blocks];
        for hash in hashes {
            let block = &mut words[block_index(*hash, n_blocks)];
            for (word, bit) in block.iter_mut().zip(block_mask(*hash)) {
                *word |= bit;
            }
        }
        Bloom { words }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        for block in &self.words {
            for word in block {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
    }
}

/// A `u64` that already is a hash needs no hashing again.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type IdentityBuild = BuildHasherDefault<IdentityHasher>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    block_rows: usize,
    n_rows: usize,
    columns: Vec<ColumnHeader>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ColumnHeader {
    name: String,
    /// Per block: offset of its filter from the start of the data section,
    /// and its number of 32-byte filter blocks.
    blocks: Vec<(u64, u32)>,
}

/// Whether a column's repeated values are worth looking up before they are
/// tokenised: they are for hosts or actions, they are not for free text,
/// where every value is new and the lookup is pure cost.
#[derive(Debug, Clone, Copy, Default)]
struct Dedup {
    /// Blocks to tokenise without lookups before trying them again.
    off_for: u32,
    /// In the current block: values looked up, and values that were new.
    looked_up: usize,
    new: usize,
}

impl Dedup {
    /// Blocks a mostly-unique column is tokenised without lookups.
    const RETRY_AFTER: u32 = 8;

    fn enabled(&self) -> bool {
        self.off_for == 0
    }

    /// At a block's end: stop looking up when at least half the values
    /// were new; count down towards the next try otherwise.
    fn finish_block(&mut self) {
        if self.off_for > 0 {
            self.off_for -= 1;
        } else if self.looked_up > 0 && self.new * 2 >= self.looked_up {
            self.off_for = Self::RETRY_AFTER;
        }
        self.looked_up = 0;
        self.new = 0;
    }
}

/// Builds the term filters of a segment from its rows, in file order.
pub(crate) struct TermFilterBuilder {
    columns: Vec<(usize, String)>,
    /// Per column: the term hashes seen in the current block.
    terms: Vec<HashSet<u64, IdentityBuild>>,
    /// Per column: whether repeated values are skipped, and how that pays.
    dedup: Vec<Dedup>,
    rows_in_block: usize,
    n_rows: usize,
    headers: Vec<ColumnHeader>,
    data: Vec<u8>,
}

impl TermFilterBuilder {
    /// A builder for the UTF-8 columns of `schema`; `None` when it has none.
    pub(crate) fn new(schema: &Schema) -> Option<TermFilterBuilder> {
        let columns: Vec<(usize, String)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| field.data_type() == &DataType::Utf8)
            .map(|(idx, field)| (idx, field.name().clone()))
            .collect();
        if columns.is_empty() {
            return None;
        }
        let n = columns.len();
        Some(TermFilterBuilder {
            headers: columns.iter().map(|(_, name)| ColumnHeader { name: name.clone(), blocks: Vec::new() }).collect(),
            columns,
            terms: vec![HashSet::default(); n],
            dedup: vec![Dedup::default(); n],
            rows_in_block: 0,
            n_rows: 0,
            data: Vec::new(),
        })
    }

    /// Adds the next rows of the segment.
    pub(crate) fn push(&mut self, batch: &RecordBatch) {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (BLOCK_ROWS - self.rows_in_block).min(batch.num_rows() - offset);
            for (slot, (column_idx, _)) in self.columns.iter().enumerate() {
                let Some(strings) = batch.column(*column_idx).as_string_opt::<i32>() else { continue };
                let terms = &mut self.terms[slot];
                let dedup = &mut self.dedup[slot];
                // Repeated values (hosts, actions...) are tokenised once per
                // batch; foldhash because SipHash cost more than tokenising.
                let mut values: HashSet<&[u8], foldhash::fast::RandomState> = HashSet::default();
                for row in offset..offset + take {
                    if strings.is_null(row) {
                        continue;
                    }
                    let value = strings.value(row).as_bytes();
                    if dedup.enabled() {
                        dedup.looked_up += 1;
                        if !values.insert(value) {
                            continue;
                        }
                        dedup.new += 1;
                    }
                    for_each_term(value, |term| {
                        terms.insert(term_hash(term));
                    });
                }
            }
            self.rows_in_block += take;
            self.n_rows += take;
            offset += take;
            if self.rows_in_block == BLOCK_ROWS {
                self.finish_block();
            }
        }
    }

    fn finish_block(&mut self) {
        for (slot, header) in self.headers.iter_mut().enumerate() {
            let bloom = Bloom::with_terms(&self.terms[slot]);
            header.blocks.push((self.data.len() as u64, bloom.words.len() as u32));
            bloom.write_to(&mut self.data);
            self.terms[slot].clear();
            self.dedup[slot].finish_block();
        }
        self.rows_in_block = 0;
    }

    /// Writes the filters to `path` (temporary name, fsync, rename).
    pub(crate) fn write(mut self, path: &Path) -> StorageResult<()> {
        if self.rows_in_block > 0 {
            self.finish_block();
        }
        let header = Header { block_rows: BLOCK_ROWS, n_rows: self.n_rows, columns: self.headers };
        let header = serde_json::to_vec(&header).expect("term filter header serializes");
        let tmp = path.with_extension("terms.tmp");
        let mut file = fs::File::create(&tmp).map_err(|source| StorageError::io(&tmp, source))?;
        let mut head = Vec::with_capacity(12 + header.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(header.len() as u32).to_le_bytes());
        head.extend_from_slice(&header);
        file.write_all(&head).map_err(|source| StorageError::io(&tmp, source))?;
        file.write_all(&self.data).map_err(|source| StorageError::io(&tmp, source))?;
        file.sync_all().map_err(|source| StorageError::io(&tmp, source))?;
        fs::rename(&tmp, path).map_err(|source| StorageError::io(path, source))
    }
}

/// An open term filter file.
pub struct TermFilters {
    file: fs::File,
    header: Header,
    data_start: u64,
}

impl TermFilters {
    /// Opens the sidecar at `path` and reads its header.
    pub fn open(path: &Path) -> StorageResult<TermFilters> {
        let file = fs::File::open(path).map_err(|source| StorageError::io(path, source))?;
        let mut head = [0u8; 12];
        file.read_exact_at(&mut head, 0).map_err(|source| StorageError::io(path, source))?;
        if &head[..8] != MAGIC {
            return Err(StorageError::CorruptCatalog(format!("{}: not a term filter file", path.display())));
        }
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        let mut header = vec![0u8; len];
        file.read_exact_at(&mut header, 12).map_err(|source| StorageError::io(path, source))?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|err| StorageError::CorruptCatalog(format!("{}: {err}", path.display())))?;
        Ok(TermFilters { file, header, data_start: 12 + len as u64 })
    }

    /// Rows per block.
    pub fn block_rows(&self) -> usize {
        self.header.block_rows
    }

    /// Rows covered.
    pub fn n_rows(&self) -> usize {
        self.header.n_rows
    }

    /// Number of blocks.
    pub fn n_blocks(&self) -> usize {
        self.header.n_rows.div_ceil(self.header.block_rows.max(1))
    }

    /// Per block, whether it may hold a value of `column` with every term
    /// of `hashes` (from [`needle_hashes`]). `None` when the column has no
    /// filter here, which proves nothing.
    pub fn may_contain_all(&self, column: &str, hashes: &[u64]) -> StorageResult<Option<Vec<bool>>> {
        let Some(entry) = self.header.columns.iter().find(|entry| entry.name == column) else {
            return Ok(None);
        };
        let mut result = Vec::with_capacity(entry.blocks.len());
        let mut buf = [0u8; BLOCK_BYTES];
        for (offset, n_blocks) in &entry.blocks {
            let mut maybe = true;
            for hash in hashes {
                let block = block_index(*hash, *n_blocks as usize);
                let at = self.data_start + offset + (block * BLOCK_BYTES) as u64;
                self.file
                    .read_exact_at(&mut buf, at)
                    .map_err(|source| StorageError::Io { path: "term filter".into(), source })?;
                let mask = block_mask(*hash);
                let present = buf
                    .chunks_exact(4)
                    .zip(mask)
                    .all(|(word, bit)| u32::from_le_bytes(word.try_into().expect("4 bytes")) & bit != 0);
                if !present {
                    maybe = false;
                    break;
                }
            }
            result.push(maybe);
        }
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests;
