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
//! the magic (`WPTERMS2`, or `WPTERMS1` for files of earlier releases), a
//! `u32` header length, a JSON header (block size, row count, per column the
//! byte offset and size of each block's filter), then the filters. A reader
//! fetches only the 32-byte filter blocks a probe touches, never the whole
//! file.
//!
//! The two versions differ only in the hash of a term. Version 1 hashed the
//! lower-cased term with XXH64; version 2 ([`term_hash`]) folds case with
//! one OR per eight bytes and mixes whole words, which made building the
//! filters about three times cheaper (flushing paces ingest). Version 1
//! files stay readable: a needle carries its hashes under both versions.
//!
//! The bloom filter is written here rather than taken from a crate because
//! its bytes are a storage format: the hash, block layout and salts must stay
//! fixed across releases and be probed in place with positioned reads.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

use crate::{StorageError, StorageResult};

/// Rows per filtered block; segments are written with data pages of at most
/// this many rows, so a block maps to about one page per column.
pub const BLOCK_ROWS: usize = 8192;

/// The magic of the files written now (version 2 hashes).
const MAGIC: &[u8; 8] = b"WPTERMS2";
/// The magic of files of earlier releases (version 1 hashes).
const MAGIC_V1: &[u8; 8] = b"WPTERMS1";
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

/// Folds ASCII upper case into lower case for eight bytes at once: setting
/// bit 5 of every byte lower-cases `A`..=`Z` and leaves digits and lower
/// case as they are. It also changes some bytes of non-ASCII characters,
/// which only makes two such terms share a hash: a false "maybe", never a
/// missed row.
const FOLD: u64 = 0x2020_2020_2020_2020;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const MULTIPLIER: u64 = 0xff51_afd7_ed55_8ccd;

/// The version 2 hash a filter stores for `term`: case-folded eight bytes
/// at a time (`FOLD`), the last word zero-padded, each word mixed in with
/// a multiply, then the length and a final avalanche. Part of the file
/// format: it must never change for `WPTERMS2` files.
pub fn term_hash(term: &[u8]) -> u64 {
    let mut words = term.chunks_exact(8);
    let mut hash = SEED;
    for word in words.by_ref() {
        hash = mix(hash, u64::from_le_bytes(word.try_into().expect("8 bytes")) | FOLD);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let fold = FOLD >> (8 * (8 - rest.len()));
        hash = mix(hash, u64::from_le_bytes(last) | fold);
    }
    finish(hash, term.len())
}

#[inline]
fn mix(hash: u64, word: u64) -> u64 {
    let hash = (hash ^ word).wrapping_mul(MULTIPLIER);
    hash ^ (hash >> 32)
}

#[inline]
fn finish(hash: u64, len: usize) -> u64 {
    // The finaliser of MurmurHash3's 64-bit variant.
    let mut hash = hash ^ (len as u64).wrapping_mul(SEED);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The version 1 hash of `term` (XXH64 of the term with ASCII letters
/// lower-cased), for `WPTERMS1` files.
fn term_hash_v1(term: &[u8]) -> u64 {
    if term.iter().any(u8::is_ascii_uppercase) {
        XxHash64::oneshot(0, &term.to_ascii_lowercase())
    } else {
        XxHash64::oneshot(0, term)
    }
}

/// Calls `f` with the [`term_hash`] of every term of the value
/// `data[start..end]`. The same as [`for_each_term`] then [`term_hash`], in
/// one pass made for speed: the value's term bytes are first marked in a
/// bitmap (`masks`, reused between calls), so finding where each term
/// starts and ends is a count of trailing zeros rather than a byte loop
/// with a hard-to-predict branch at every boundary; and words are hashed
/// straight from `data`, past the value's end where `data` goes on (the
/// extra bytes are masked off), so the usual term costs no copy.
fn for_each_term_hash(data: &[u8], start: usize, end: usize, masks: &mut Vec<u64>, mut f: impl FnMut(u64)) {
    let value = &data[start..end];
    masks.clear();
    for chunk in value.chunks(64) {
        let mut mask = 0u64;
        for (bit, byte) in chunk.iter().enumerate() {
            mask |= u64::from(TERM_BYTES[usize::from(*byte)]) << bit;
        }
        masks.push(mask);
    }
    let len = value.len();
    let mut at = 0;
    while let Some(from) = next_bit(masks, at, true, len) {
        let to = next_bit(masks, from, false, len).unwrap_or(len);
        f(hash_in_place(data, start + from, start + to));
        at = to;
    }
}

/// The first position at or after `at`, below `len`, whose bit in `masks`
/// is `set`.
#[inline]
fn next_bit(masks: &[u64], at: usize, set: bool, len: usize) -> Option<usize> {
    let flip = if set { 0 } else { u64::MAX };
    let mut word = at / 64;
    let mut bits = (masks.get(word)? ^ flip) & (u64::MAX << (at % 64));
    loop {
        if bits != 0 {
            let position = word * 64 + bits.trailing_zeros() as usize;
            return (position < len).then_some(position);
        }
        word += 1;
        bits = masks.get(word)? ^ flip;
    }
}

/// [`term_hash`] of `data[from..to]`.
#[inline]
fn hash_in_place(data: &[u8], from: usize, to: usize) -> u64 {
    let len = to - from;
    let mut hash = SEED;
    let mut at = from;
    while at + 8 <= to {
        hash = mix(hash, u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes")) | FOLD);
        at += 8;
    }
    let rest = to - at;
    if rest > 0 {
        let keep = u64::MAX >> (8 * (8 - rest));
        let word = match data.get(at..at + 8) {
            Some(word) => u64::from_le_bytes(word.try_into().expect("8 bytes")) & keep,
            None => {
                let mut last = [0u8; 8];
                last[..rest].copy_from_slice(&data[at..to]);
                u64::from_le_bytes(last)
            }
        };
        hash = mix(hash, word | (FOLD & keep));
    }
    finish(hash, len)
}

/// The term hashes a value must contain for `has`/`has_cs` of a needle (or
/// equality with it) to be true, under both hash versions: every term of
/// the needle is a whole term of any matching text, because the match
/// starts and ends at term boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedleHashes {
    v1: Vec<u64>,
    v2: Vec<u64>,
}

impl NeedleHashes {
    /// True when the needle has no term, which proves nothing.
    pub fn is_empty(&self) -> bool {
        self.v2.is_empty()
    }

    /// The version 2 hashes, sorted and without repeats.
    pub fn hashes(&self) -> &[u64] {
        &self.v2
    }
}

/// The [`NeedleHashes`] of `needle`.
pub fn needle_hashes(needle: &str) -> NeedleHashes {
    let (mut v1, mut v2) = (Vec::new(), Vec::new());
    for_each_term(needle.as_bytes(), |term| {
        v1.push(term_hash_v1(term));
        v2.push(term_hash(term));
    });
    for hashes in [&mut v1, &mut v2] {
        hashes.sort_unstable();
        hashes.dedup();
    }
    NeedleHashes { v1, v2 }
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
    /// A filter sized for `distinct` terms holding `hashes` (repeats are harmless).
    fn with_terms(hashes: &[u64], distinct: usize) -> Bloom {
        let n_blocks = (distinct * BITS_PER_TERM).div_ceil(BLOCK_BYTES * 8).max(1);
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

/// The term hashes of one column in the current block: each hash as it
/// came, repeats included, and a HyperLogLog sketch of how many differ,
/// which sizes the block's filter. An exact set of the hashes cost as much
/// as tokenising: its table outgrows the cache and nearly every insert
/// misses, where appending to a vector and raising one register of a 4 KiB
/// sketch stay in cache.
///
/// The most frequent terms (the keys of `key=value` text, JSON property
/// names) are most of a block's terms; a small direct-mapped table of the
/// hashes seen last skips their repeats before they reach the vector.
struct BlockTerms {
    hashes: Vec<u64>,
    registers: Vec<u8>,
    /// Slot `i` holds the last hash seen whose low bits are `i`, or `!i`
    /// (which no such hash equals) when there is none in this block.
    recent: Vec<u64>,
}

/// Slots of [`BlockTerms::recent`].
const RECENT_SLOTS: usize = 1024;

/// Register index bits of the sketch: 4096 registers, about 1.6% error.
const SKETCH_BITS: u32 = 12;

impl BlockTerms {
    fn new() -> BlockTerms {
        BlockTerms {
            hashes: Vec::new(),
            registers: vec![0; 1 << SKETCH_BITS],
            recent: (0..RECENT_SLOTS as u64).map(|slot| !slot).collect(),
        }
    }

    #[inline]
    fn push(&mut self, hash: u64) {
        let recent = &mut self.recent[hash as usize & (RECENT_SLOTS - 1)];
        if *recent == hash {
            return;
        }
        *recent = hash;
        self.hashes.push(hash);
        let register = (hash >> (64 - SKETCH_BITS)) as usize;
        // The position of the first set bit of the rest; the low guard bit
        // bounds it when the rest is all zeros.
        let rank = ((hash << SKETCH_BITS) | (1 << (SKETCH_BITS - 1))).leading_zeros() as u8 + 1;
        let slot = &mut self.registers[register];
        *slot = (*slot).max(rank);
    }

    /// The estimated number of distinct hashes pushed (HyperLogLog, with
    /// linear counting while many registers are empty).
    fn distinct(&self) -> usize {
        let m = self.registers.len() as f64;
        let (mut sum, mut zeros) = (0.0f64, 0usize);
        for register in &self.registers {
            sum += f64::powi(2.0, -i32::from(*register));
            zeros += usize::from(*register == 0);
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let estimate = alpha * m * m / sum;
        let estimate = if estimate <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { estimate };
        (estimate.round() as usize).min(self.hashes.len())
    }

    fn clear(&mut self) {
        self.hashes.clear();
        self.registers.fill(0);
        for (slot, recent) in self.recent.iter_mut().enumerate() {
            *recent = !(slot as u64);
        }
    }
}

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
///
/// Each column's filters are built on their own ([`ColumnTerms`]), so the
/// segment writer's workers build them for the columns they encode, from
/// the rows they just gathered, on every core.
pub(crate) struct TermFilterBuilder {
    /// The UTF-8 columns: their index in the schema and their filters.
    columns: Vec<(usize, ColumnTerms)>,
}

/// The term filters of one column being built.
pub(crate) struct ColumnTerms {
    name: String,
    /// The term hashes seen in the current block.
    terms: BlockTerms,
    /// Whether repeated values are skipped, and how that pays.
    dedup: Dedup,
    rows_in_block: usize,
    n_rows: usize,
    /// Per finished block: offset of its filter in `data` and its size in 32-byte blocks.
    blocks: Vec<(u64, u32)>,
    data: Vec<u8>,
    /// Scratch for [`for_each_term_hash`].
    masks: Vec<u64>,
}

impl ColumnTerms {
    fn new(name: String) -> ColumnTerms {
        ColumnTerms {
            name,
            terms: BlockTerms::new(),
            dedup: Dedup::default(),
            rows_in_block: 0,
            n_rows: 0,
            blocks: Vec::new(),
            data: Vec::new(),
            masks: Vec::new(),
        }
    }

    /// Adds the column's next rows; `column` must be UTF-8.
    pub(crate) fn push(&mut self, column: &dyn Array) {
        let Some(strings) = column.as_string_opt::<i32>() else { return };
        let (offsets, data) = (strings.value_offsets(), strings.value_data());
        let mut offset = 0;
        while offset < strings.len() {
            let take = (BLOCK_ROWS - self.rows_in_block).min(strings.len() - offset);
            // Repeated values (hosts, actions...) are tokenised once per
            // push; foldhash because SipHash cost more than tokenising.
            let mut values: HashSet<&[u8], foldhash::fast::RandomState> = HashSet::default();
            for row in offset..offset + take {
                if strings.is_null(row) {
                    continue;
                }
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                if self.dedup.enabled() {
                    self.dedup.looked_up += 1;
                    if !values.insert(&data[start..end]) {
                        continue;
                    }
                    self.dedup.new += 1;
                }
                let terms = &mut self.terms;
                for_each_term_hash(data, start, end, &mut self.masks, |hash| terms.push(hash));
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
        let bloom = Bloom::with_terms(&self.terms.hashes, self.terms.distinct());
        self.blocks.push((self.data.len() as u64, bloom.words.len() as u32));
        bloom.write_to(&mut self.data);
        self.terms.clear();
        self.dedup.finish_block();
        self.rows_in_block = 0;
    }
}

impl TermFilterBuilder {
    /// A builder for the UTF-8 columns of `schema`; `None` when it has none.
    pub(crate) fn new(schema: &Schema) -> Option<TermFilterBuilder> {
        let columns: Vec<(usize, ColumnTerms)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| field.data_type() == &DataType::Utf8)
            .map(|(idx, field)| (idx, ColumnTerms::new(field.name().clone())))
            .collect();
        (!columns.is_empty()).then_some(TermFilterBuilder { columns })
    }

    /// Adds the next rows of the segment.
    #[cfg(test)]
    pub(crate) fn push(&mut self, batch: &arrow::record_batch::RecordBatch) {
        for (idx, column) in &mut self.columns {
            column.push(batch.column(*idx).as_ref());
        }
    }

    /// Splits the builder into its columns, with their index in the schema.
    pub(crate) fn into_columns(self) -> Vec<(usize, ColumnTerms)> {
        self.columns
    }

    /// The builder of `columns`, as returned by [`Self::into_columns`].
    pub(crate) fn from_columns(columns: Vec<(usize, ColumnTerms)>) -> TermFilterBuilder {
        TermFilterBuilder { columns }
    }

    /// Writes the filters to `path` (temporary name, fsync, rename).
    pub(crate) fn write(self, path: &Path) -> StorageResult<()> {
        let mut n_rows = 0;
        let mut headers = Vec::with_capacity(self.columns.len());
        let mut data = Vec::new();
        for (_, mut column) in self.columns {
            if column.rows_in_block > 0 {
                column.finish_block();
            }
            n_rows = n_rows.max(column.n_rows);
            let start = data.len() as u64;
            let blocks = column.blocks.iter().map(|(offset, size)| (start + offset, *size)).collect();
            headers.push(ColumnHeader { name: column.name, blocks });
            data.extend_from_slice(&column.data);
        }
        let header = Header { block_rows: BLOCK_ROWS, n_rows, columns: headers };
        let header = serde_json::to_vec(&header).expect("term filter header serializes");
        let tmp = path.with_extension("terms.tmp");
        let mut file = fs::File::create(&tmp).map_err(|source| StorageError::io(&tmp, source))?;
        let mut head = Vec::with_capacity(12 + header.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(header.len() as u32).to_le_bytes());
        head.extend_from_slice(&header);
        file.write_all(&head).map_err(|source| StorageError::io(&tmp, source))?;
        file.write_all(&data).map_err(|source| StorageError::io(&tmp, source))?;
        crate::segment::start_writeback(&file);
        file.sync_all().map_err(|source| StorageError::io(&tmp, source))?;
        fs::rename(&tmp, path).map_err(|source| StorageError::io(path, source))
    }
}

/// An open term filter file.
pub struct TermFilters {
    file: fs::File,
    /// Written with version 1 hashes ([`MAGIC_V1`]).
    v1: bool,
    header: Header,
    data_start: u64,
}

impl TermFilters {
    /// Opens the sidecar at `path` and reads its header.
    pub fn open(path: &Path) -> StorageResult<TermFilters> {
        let file = fs::File::open(path).map_err(|source| StorageError::io(path, source))?;
        let mut head = [0u8; 12];
        file.read_exact_at(&mut head, 0).map_err(|source| StorageError::io(path, source))?;
        let v1 = &head[..8] == MAGIC_V1;
        if &head[..8] != MAGIC && !v1 {
            return Err(StorageError::CorruptCatalog(format!("{}: not a term filter file", path.display())));
        }
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        let mut header = vec![0u8; len];
        file.read_exact_at(&mut header, 12).map_err(|source| StorageError::io(path, source))?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|err| StorageError::CorruptCatalog(format!("{}: {err}", path.display())))?;
        Ok(TermFilters { file, v1, header, data_start: 12 + len as u64 })
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
    /// of the needle's terms. `None` when the column has no filter here,
    /// which proves nothing.
    pub fn may_contain_all(&self, column: &str, needle: &NeedleHashes) -> StorageResult<Option<Vec<bool>>> {
        let hashes = if self.v1 { &needle.v1 } else { &needle.v2 };
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
