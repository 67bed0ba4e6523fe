//! Reading Avro object container files within fixed bounds.
//!
//! A backup file may have been copied, edited or made by anyone, so nothing
//! it claims is allocated before it is checked against what hrmig itself
//! writes: the header's size, each block's row count and byte size (before
//! and after decompression), each string's length. A file that breaks a
//! bound is refused naming the block, the row and the reason, and a read
//! holds at most a few blocks' worth of memory whatever the file says.
//!
//! A block's rows are handed back still encoded, for
//! [`read_row`](super::codec::read_row) to decode one by one. The header's
//! schema is handed back as text; the caller compares it with the
//! dictionary's before reading any row.

use super::codec::{Codec, get_long};
use crate::dictionary::Table;
use std::collections::HashMap;
use std::io::Read;

/// Avro's magic bytes, the first four of every object container file.
const MAGIC: [u8; 4] = *b"Obj\x01";

/// Largest header read (magic, metadata, sync marker): hrmig's are under
/// 1 KiB, the schema being the largest entry.
pub const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Largest block, compressed or decompressed. hrmig's hold about 256 KiB
/// plus one row; the bound leaves a wide margin over that while six reads
/// at once still stay within a few tens of megabytes.
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// Why a file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OcfError {
    /// The header is missing, malformed or over its bound.
    #[error("not an Avro object container file: {0}")]
    Header(String),
    /// A block is malformed, over a bound or damaged.
    #[error("block {number} at byte {offset} (from row {first_row}): unreadable: {reason}")]
    Block {
        /// 1 for the first block.
        number: u64,
        /// Where the block starts in the file.
        offset: u64,
        /// The number of its first row in the file, from 1.
        first_row: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What an object container file's header says.
#[derive(Debug)]
pub struct Header {
    codec: Codec,
    schema: String,
    metadata: HashMap<String, Vec<u8>>,
    sync: [u8; 16],
}

impl Header {
    /// The schema's JSON text (`avro.schema`).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A metadata entry other than the schema.
    pub fn metadata(&self, key: &str) -> Option<&[u8]> {
        self.metadata.get(key).map(Vec::as_slice)
    }
}

/// A block's rows, still encoded.
#[derive(Debug)]
pub struct Block<'a> {
    /// 1 for the first block.
    pub number: u64,
    /// Where the block starts in the file.
    pub offset: u64,
    /// The number of its first row in the file, from 1.
    pub first_row: u64,
    /// Rows in the block (1 or more).
    pub count: u64,
    /// The decompressed datums.
    pub data: &'a [u8],
}

impl Block<'_> {
    /// A problem with this block.
    pub fn damaged(&self, reason: String) -> OcfError {
        OcfError::Block {
            number: self.number,
            offset: self.offset,
            first_row: self.first_row,
            reason,
        }
    }
}

/// Reads an object container file block by block from `R` (buffer it: the
/// frame is read a byte at a time). The buffers are kept from block to
/// block.
pub struct OcfReader<R> {
    input: R,
    header: Header,
    /// Bytes consumed so far.
    offset: u64,
    blocks: u64,
    rows: u64,
    /// The fewest bytes a datum takes: one per field.
    datum_bytes: u64,
    compressed: Vec<u8>,
    decompressed: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl<R: Read> OcfReader<R> {
    /// Reads the header of a file of `table`'s records.
    pub fn new(input: R, table: Table) -> Result<OcfReader<R>, OcfError> {
        let mut reader = OcfReader {
            input,
            header: Header {
                codec: Codec::Null,
                schema: String::new(),
                metadata: HashMap::new(),
                sync: [0; 16],
            },
            offset: 0,
            blocks: 0,
            rows: 0,
            datum_bytes: table.columns().len().max(1) as u64,
            compressed: Vec::new(),
            decompressed: Vec::new(),
            zstd: None,
        };
        reader.header = reader.read_header().map_err(OcfError::Header)?;
        Ok(reader)
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next block, or `None` at the end of the file. Bytes after the
    /// last block are read as a block, and refused.
    pub fn next_block(&mut self) -> Result<Option<Block<'_>>, OcfError> {
        let (number, offset, first_row) = (self.blocks + 1, self.offset, self.rows + 1);
        let count = match self.read_block() {
            Ok(Some(count)) => count,
            Ok(None) => return Ok(None),
            Err(reason) => {
                return Err(OcfError::Block {
                    number,
                    offset,
                    first_row,
                    reason,
                });
            }
        };
        self.blocks = number;
        self.rows += count;
        let data = match self.header.codec {
            Codec::Null => &self.compressed,
            _ => &self.decompressed,
        };
        Ok(Some(Block {
            number,
            offset,
            first_row,
            count,
            data,
        }))
    }

    /// Reads and checks one block's frame and data; its row count.
    fn read_block(&mut self) -> Result<Option<u64>, String> {
        let Some(count) = self.read_long()? else {
            return Ok(None);
        };
        let most = MAX_BLOCK_BYTES as u64 / self.datum_bytes;
        let count = u64::try_from(count)
            .ok()
            .filter(|c| (1..=most).contains(c))
            .ok_or_else(|| {
                format!(
                    "it claims {count} rows; a block holds 1 to {most} (a row takes at least {} bytes, a block at most {})",
                    self.datum_bytes,
                    block_limit()
                )
            })?;
        let size = self.read_long()?.ok_or_else(ends)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_BLOCK_BYTES)
            .ok_or_else(|| {
                format!(
                    "it claims {size} bytes; a block holds at most {}",
                    block_limit()
                )
            })?;
        self.compressed.clear();
        let got = self.read_up_to(size)?;
        if got < size {
            return Err(format!(
                "the file ends inside the block ({got} of its {size} bytes)"
            ));
        }
        let mut sync = [0u8; 16];
        self.read_exact(&mut sync)?;
        if sync != self.header.sync {
            return Err("its sync marker differs from the header's".into());
        }
        let len = self.decompress()?;
        if count > len as u64 / self.datum_bytes {
            return Err(format!(
                "it claims {count} rows in {len} bytes (a row takes at least {})",
                self.datum_bytes
            ));
        }
        Ok(Some(count))
    }

    /// Decompresses the block just read (the null codec leaves it where it
    /// is); its decompressed length. Every codec stops at
    /// [`MAX_BLOCK_BYTES`] of output.
    fn decompress(&mut self) -> Result<usize, String> {
        let over = || format!("it decompresses to more than {}", block_limit());
        match self.header.codec {
            Codec::Null => return Ok(self.compressed.len()),
            Codec::Deflate => {
                use miniz_oxide::inflate::TINFLStatus;
                self.decompressed = miniz_oxide::inflate::decompress_to_vec_with_limit(
                    &self.compressed,
                    MAX_BLOCK_BYTES,
                )
                .map_err(|e| match e.status {
                    TINFLStatus::HasMoreOutput => over(),
                    status => format!("its deflate data is damaged ({status:?})"),
                })?;
            }
            Codec::Snappy => {
                let Some(end) = self.compressed.len().checked_sub(4) else {
                    return Err("it is shorter than a snappy block's CRC-32".into());
                };
                let (body, crc) = self.compressed.split_at(end);
                let damaged = |e: snap::Error| format!("its snappy data is damaged: {e}");
                let len = snap::raw::decompress_len(body).map_err(damaged)?;
                if len > MAX_BLOCK_BYTES {
                    return Err(format!(
                        "it claims to decompress to {len} bytes; a block holds at most {}",
                        block_limit()
                    ));
                }
                self.decompressed.clear();
                self.decompressed.resize(len, 0);
                let n = snap::raw::Decoder::new()
                    .decompress(body, &mut self.decompressed)
                    .map_err(damaged)?;
                self.decompressed.truncate(n);
                let stored = crc.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                let actual = crc32fast::hash(&self.decompressed);
                if stored != actual {
                    return Err(format!(
                        "the CRC-32 of its data is {actual:08x}, the block says {stored:08x}"
                    ));
                }
            }
            Codec::Zstandard => {
                let zstd = match &mut self.zstd {
                    Some(z) => z,
                    None => self.zstd.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| format!("zstandard is not available: {e}"))?,
                    ),
                };
                // Decoded straight into a buffer of the bound (one
                // allocation, kept): no window buffer, and output that
                // would pass the bound is an error, not a reallocation.
                self.decompressed.clear();
                self.decompressed.reserve_exact(MAX_BLOCK_BYTES);
                zstd.decompress_to_buffer(&self.compressed, &mut self.decompressed)
                    .map_err(|e| {
                        format!(
                            "its zstandard data is damaged or decompresses to more than {}: {e}",
                            block_limit()
                        )
                    })?;
                if self.decompressed.len() > MAX_BLOCK_BYTES {
                    return Err(over());
                }
            }
        }
        Ok(self.decompressed.len())
    }

    fn read_header(&mut self) -> Result<Header, String> {
        let mut magic = [0u8; 4];
        let got = self.read_up_to_array(&mut magic)?;
        if got == 0 {
            return Err("the file is empty".into());
        }
        if got < magic.len() || magic != MAGIC {
            return Err("it does not start with Avro's magic bytes Obj\\x01".into());
        }
        let mut metadata = HashMap::new();
        loop {
            let count = self.header_long()?;
            if count == 0 {
                break;
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                self.header_long()?;
            }
            // Each entry is at least two bytes (two empty strings).
            let left = MAX_HEADER_BYTES.saturating_sub(self.offset);
            if count.unsigned_abs() > left / 2 {
                return Err(format!(
                    "its metadata claims {count} entries, more than fit in a header of at most {MAX_HEADER_BYTES} bytes"
                ));
            }
            for _ in 0..count.unsigned_abs() {
                let key = String::from_utf8(self.header_bytes()?)
                    .map_err(|_| "a metadata key is not UTF-8 text".to_owned())?;
                let value = self.header_bytes()?;
                if metadata.contains_key(&key) {
                    return Err(format!("metadata key {key:?} appears twice"));
                }
                metadata.insert(key, value);
            }
        }
        let mut sync = [0u8; 16];
        self.read_exact(&mut sync)
            .map_err(|_| "the file ends inside its header".to_owned())?;
        let codec = match metadata.get("avro.codec").map(Vec::as_slice) {
            None => Codec::Null,
            Some(name) => [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstandard]
                .into_iter()
                .find(|c| c.name().as_bytes() == name)
                .ok_or_else(|| {
                    format!(
                        "codec {:?} is not one of null, deflate, snappy and zstandard",
                        String::from_utf8_lossy(name)
                    )
                })?,
        };
        let schema = metadata
            .remove("avro.schema")
            .ok_or_else(|| "its header has no avro.schema".to_owned())?;
        let schema =
            String::from_utf8(schema).map_err(|_| "its schema is not UTF-8 text".to_owned())?;
        Ok(Header {
            codec,
            schema,
            metadata,
            sync,
        })
    }

    /// A long inside the header, which must not pass its bound.
    fn header_long(&mut self) -> Result<i64, String> {
        if self.offset >= MAX_HEADER_BYTES {
            return Err(format!(
                "its header is over {MAX_HEADER_BYTES} bytes (hrmig writes under 1 KiB)"
            ));
        }
        self.read_long()?
            .ok_or_else(|| "the file ends inside its header".to_owned())
    }

    /// A length-prefixed string or bytes inside the header.
    fn header_bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = self.header_long()?;
        let left = MAX_HEADER_BYTES.saturating_sub(self.offset);
        let len = u64::try_from(len)
            .ok()
            .filter(|l| *l <= left)
            .ok_or_else(|| {
                format!(
                    "a metadata entry claims {len} bytes, more than fit in a header of at most {MAX_HEADER_BYTES} bytes"
                )
            })? as usize;
        let mut out = Vec::with_capacity(len);
        let got = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut out)
            .map_err(read_failed)?;
        self.offset += got as u64;
        if got < len {
            return Err("the file ends inside its header".into());
        }
        Ok(out)
    }

    /// A zig-zag long; `None` when the input ends before its first byte.
    fn read_long(&mut self) -> Result<Option<i64>, String> {
        let mut buf = [0u8; 10];
        for i in 0..buf.len() {
            let mut byte = [0u8];
            if self.read_up_to_array(&mut byte)? == 0 {
                return if i == 0 { Ok(None) } else { Err(ends()) };
            }
            buf[i] = byte[0];
            if byte[0] < 0x80 {
                return Ok(get_long(&buf[..=i], &mut 0));
            }
        }
        Err("a number runs past ten bytes".into())
    }

    /// Appends up to `n` bytes to `self.compressed`; how many came.
    fn read_up_to(&mut self, n: usize) -> Result<usize, String> {
        // Read as it comes, not reserved: a file shorter than its claim
        // costs only what it holds.
        let got = (&mut self.input)
            .take(n as u64)
            .read_to_end(&mut self.compressed)
            .map_err(read_failed)?;
        self.offset += got as u64;
        Ok(got)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        if self.read_up_to_array(buf)? < buf.len() {
            return Err(ends());
        }
        Ok(())
    }

    /// Fills `buf` unless the input ends first; how many bytes came.
    fn read_up_to_array(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_failed(e)),
            }
        }
        self.offset += got as u64;
        Ok(got)
    }
}

/// [`MAX_BLOCK_BYTES`] as a problem states it.
fn block_limit() -> String {
    format!("{MAX_BLOCK_BYTES} bytes ({} MiB)", MAX_BLOCK_BYTES >> 20)
}

fn ends() -> String {
    "the file ends inside the block".into()
}

fn read_failed(e: std::io::Error) -> String {
    format!("read failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{Row, Value};
    use crate::ops::backup::codec::tests::jobs;
    use crate::ops::backup::codec::{put_long, read_row};

    const MARKER: [u8; 16] = *b"0123456789abcdef";

    /// The header apache-avro writes for `table` with `codec`.
    fn header(table: Table, codec: apache_avro::Codec) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(&table.avro_schema()).unwrap();
        apache_avro::Writer::builder()
            .schema(&schema)
            .writer(Vec::new())
            .codec(codec)
            .marker(MARKER)
            .build()
            .unwrap()
            .into_inner()
            .unwrap()
    }

    /// A block frame: count, size, data, marker.
    fn block(count: i64, data: &[u8], marker: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::new();
        put_long(&mut out, count);
        put_long(&mut out, data.len() as i64);
        out.extend_from_slice(data);
        out.extend_from_slice(marker);
        out
    }

    /// Every row of a jobs file, or the first problem.
    fn read_jobs(file: &[u8]) -> Result<Vec<Row>, String> {
        read_all(Table::Jobs, file)
    }

    fn read_all(table: Table, file: &[u8]) -> Result<Vec<Row>, String> {
        let mut ocf = OcfReader::new(file, table).map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        while let Some(b) = ocf.next_block().map_err(|e| e.to_string())? {
            let mut at = 0;
            for _ in 0..b.count {
                rows.push(read_row(table, b.data, &mut at)?);
            }
            if at != b.data.len() {
                return Err(b.damaged("bytes left".into()).to_string());
            }
        }
        Ok(rows)
    }

    fn codecs() -> [apache_avro::Codec; 4] {
        [
            apache_avro::Codec::Null,
            apache_avro::Codec::Deflate(Default::default()),
            apache_avro::Codec::Snappy,
            apache_avro::Codec::Zstandard(Default::default()),
        ]
    }

    proptest::proptest! {
        /// Arbitrary bytes, after a good header or not, and good files with
        /// a byte changed and cut anywhere: a problem, never a panic.
        #[test]
        fn no_input_makes_the_reader_panic(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            codec in 0..4usize,
            table in 0..Table::ALL.len(),
            at in proptest::prelude::any::<usize>(),
            xor in 1..=255u8,
            cut in proptest::prelude::any::<usize>(),
        ) {
            let table = Table::ALL[table];
            let codec = codecs()[codec];
            let head = header(table, codec);
            let _ = read_all(table, &tail);
            let _ = read_all(table, &[head.clone(), tail.clone()].concat());
            let mut data = jobs(&[(1, "Engineer"), (2, "Analyst"), (3, "Clerk")]);
            codec.compress(&mut data).unwrap();
            let mut file = [head, block(3, &data, &MARKER)].concat();
            let len = file.len();
            file[at % len] ^= xor;
            file.truncate(cut % (len + 1));
            let _ = read_all(table, &file);
        }
    }

    fn err(file: &[u8]) -> String {
        read_jobs(file).unwrap_err()
    }

    #[test]
    fn every_codec_reads_back() {
        let data = jobs(&[(1, "Engineer"), (2, "Analyst")]);
        for codec in codecs() {
            let mut compressed = data.clone();
            codec.compress(&mut compressed).unwrap();
            let file = [header(Table::Jobs, codec), block(2, &compressed, &MARKER)].concat();
            let rows = read_jobs(&file).unwrap();
            assert_eq!(rows.len(), 2, "{codec:?}");
            assert_eq!(rows[1].0[1], Value::Text("Analyst".into()));
        }
    }

    #[test]
    fn a_header_is_checked_and_bounded() {
        assert!(err(b"").contains("the file is empty"));
        assert!(err(b"PK\x03\x04 a zip").contains("magic bytes"));
        let mut good = header(Table::Jobs, apache_avro::Codec::Null);
        assert!(read_jobs(&good).unwrap().is_empty());
        good.pop();
        assert!(err(&good).contains("ends inside its header"));
        // An entry claiming a gigabyte, a map claiming 2^40 entries.
        let mut file = MAGIC.to_vec();
        put_long(&mut file, 1);
        put_long(&mut file, 1 << 30);
        assert!(
            err(&file).contains("claims 1073741824 bytes"),
            "{}",
            err(&file)
        );
        let mut file = MAGIC.to_vec();
        put_long(&mut file, 1 << 40);
        assert!(err(&file).contains("entries"), "{}", err(&file));
        // Entries that are each small but add up past the bound.
        let mut file = MAGIC.to_vec();
        for i in 0..100 {
            put_long(&mut file, 1);
            let key = format!("k{i}");
            put_long(&mut file, key.len() as i64);
            file.extend_from_slice(key.as_bytes());
            put_long(&mut file, 1000);
            file.extend_from_slice(&[b'x'; 1000]);
        }
        assert!(err(&file).contains("header"), "{}", err(&file));
    }

    #[test]
    fn unknown_codecs_and_missing_schemas_are_refused() {
        let mut file = MAGIC.to_vec();
        put_long(&mut file, 1);
        for s in ["avro.codec", "bzip2"] {
            put_long(&mut file, s.len() as i64);
            file.extend_from_slice(s.as_bytes());
        }
        put_long(&mut file, 0);
        file.extend_from_slice(&MARKER);
        assert!(err(&file).contains("codec \"bzip2\""), "{}", err(&file));
        let mut file = MAGIC.to_vec();
        put_long(&mut file, 0);
        file.extend_from_slice(&MARKER);
        assert!(err(&file).contains("no avro.schema"), "{}", err(&file));
    }

    #[test]
    fn block_frames_are_bounded_before_reading() {
        let head = header(Table::Jobs, apache_avro::Codec::Null);
        let data = jobs(&[(1, "a")]);
        let frame = |count: i64, size: i64| {
            let mut out = head.clone();
            put_long(&mut out, count);
            put_long(&mut out, size);
            out.extend_from_slice(&data);
            out
        };
        for (count, size, expect) in [
            (0, 3, "claims 0 rows"),
            (-5, 3, "claims -5 rows"),
            (1 << 61, 3, "claims 2305843009213693952 rows"),
            (1, 400_000_000, "claims 400000000 bytes"),
            (1, -1, "claims -1 bytes"),
            (1, 100, "ends inside the block (3 of its 100 bytes)"),
        ] {
            let e = err(&frame(count, size));
            assert!(e.starts_with("block 1 at byte "), "{e}");
            assert!(e.contains(expect), "{count} {size}: {e}");
        }
        // The count must fit the bytes: 3 bytes hold at most one jobs row.
        let e = err(&[head.clone(), block(2, &data, &MARKER)].concat());
        assert!(e.contains("claims 2 rows in 3 bytes"), "{e}");
        let e = err(&[head.clone(), block(1, &data, b"fedcba9876543210")].concat());
        assert!(e.contains("sync marker"), "{e}");
        let second = [head.clone(), block(1, &data, &MARKER), b"x".to_vec()].concat();
        let e = err(&second);
        assert!(
            e.starts_with("block 2 at byte") && e.contains("from row 2"),
            "{e}"
        );
    }

    #[test]
    fn rows_must_fill_their_block_exactly() {
        let head = header(Table::Jobs, apache_avro::Codec::Null);
        let mut data = jobs(&[(1, "a")]);
        data.push(0);
        let e = err(&[head.clone(), block(1, &data, &MARKER)].concat());
        assert!(e.contains("bytes left"), "{e}");
        let data = jobs(&[(1, "a"), (2, "b")]);
        let e = err(&[head, block(3, &data, &MARKER)].concat());
        assert!(e.contains("unreadable: id"), "{e}");
    }

    #[test]
    fn decompression_stops_at_the_bound() {
        let zeros = vec![0u8; MAX_BLOCK_BYTES + 1];
        for codec in &codecs()[1..] {
            let codec = *codec;
            let mut compressed = zeros.clone();
            codec.compress(&mut compressed).unwrap();
            let file = [header(Table::Jobs, codec), block(1, &compressed, &MARKER)].concat();
            let e = err(&file);
            assert!(e.contains(&MAX_BLOCK_BYTES.to_string()), "{codec:?}: {e}");
        }
        // A snappy length claiming 200 MB, refused before decompressing.
        let mut claim = Vec::new();
        let mut n = 200_000_000u64;
        while n >= 0x80 {
            claim.push((n as u8) | 0x80);
            n >>= 7;
        }
        claim.push(n as u8);
        claim.extend_from_slice(&[0; 4]);
        let file = [
            header(Table::Jobs, apache_avro::Codec::Snappy),
            block(1, &claim, &MARKER),
        ]
        .concat();
        assert!(err(&file).contains("claims to decompress to 200000000 bytes"));
    }

    #[test]
    fn a_snappy_crc_and_damaged_data_are_caught() {
        let mut compressed = jobs(&[(1, "Engineer")]);
        apache_avro::Codec::Snappy
            .compress(&mut compressed)
            .unwrap();
        let head = header(Table::Jobs, apache_avro::Codec::Snappy);
        let mut bad_crc = compressed.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let e = err(&[head.clone(), block(1, &bad_crc, &MARKER)].concat());
        assert!(e.contains("CRC-32"), "{e}");
        let e = err(&[head, block(1, &[1, 2, 3], &MARKER)].concat());
        assert!(e.contains("shorter than a snappy block's CRC-32"), "{e}");
        let mut deflated = jobs(&[(1, "Engineer")]);
        apache_avro::Codec::Deflate(Default::default())
            .compress(&mut deflated)
            .unwrap();
        deflated.truncate(deflated.len() / 2);
        let head = header(Table::Jobs, apache_avro::Codec::Deflate(Default::default()));
        let e = err(&[head, block(1, &deflated, &MARKER)].concat());
        assert!(e.contains("deflate data is damaged"), "{e}");
        let head = header(
            Table::Jobs,
            apache_avro::Codec::Zstandard(Default::default()),
        );
        let e = err(&[head, block(1, b"not zstd", &MARKER)].concat());
        assert!(e.contains("zstandard data is damaged"), "{e}");
    }
}
