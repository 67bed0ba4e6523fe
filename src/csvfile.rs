//! Reading historic CSV files record by record, with the positions and raw
//! text that rejections need, in bounded memory.
//!
//! Tokenising is `csv_core`'s; this layer adds what a loader must report and
//! `csv` does not expose: the physical line where each record starts (quoted
//! fields may span lines), the record's raw text, blank-line counts, records
//! over [`MAX_RECORD_BYTES`] (consumed to their end but never buffered whole),
//! a quote left open at the end of the file, and quotes that `csv_core`
//! would quietly repair (`ab"c`, `"ab"c`): such a record is flagged, never
//! altered. Lines end at LF, CR or CRLF.

use crate::dictionary::check::Checked;
use crate::dictionary::{ErrorCode, FieldError, Table};
use std::io::{self, Read};

/// Longest record accepted, in bytes; longer ones are rejected as `too_long`.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// How much raw text of a too-long record is kept for the rejection log.
pub const MAX_RAW_KEPT: usize = 4 << 10;
/// More fields than any table has, by far; more is a `columns` error.
const MAX_FIELDS: usize = 256;
const READ_BUF: usize = 256 << 10;

/// Why a record could not be split into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Over [`MAX_RECORD_BYTES`]; `bytes` is its full size.
    TooLong {
        /// Size of the whole record.
        bytes: usize,
    },
    /// More than 256 fields.
    TooManyFields,
    /// A quoted field still open when the file ended.
    UnterminatedQuote,
    /// A `"` inside a field that does not start with one (`ab"c`); `field`
    /// counts from 0.
    QuoteInUnquotedField {
        /// The field holding the quote.
        field: usize,
    },
    /// Something other than a delimiter or the end of the record right after
    /// a quoted field's closing quote (`"ab"c`); `field` counts from 0.
    TextAfterQuote {
        /// The quoted field.
        field: usize,
    },
}

impl Malformed {
    /// The rejection of a record of `table` that starts on `line` and
    /// could not be split into fields: one record-level error (or one
    /// naming the column whose quoting is broken), no values.
    pub fn rejection(self, table: Table, line: u64) -> Checked {
        let column = |field: usize| table.columns().get(field).map(|c| c.name);
        let error = match self {
            Malformed::TooLong { bytes } => FieldError::record(
                ErrorCode::TooLong,
                format!(
                    "record is {bytes} bytes, over the {MAX_RECORD_BYTES} byte limit (raw text cut to its first {MAX_RAW_KEPT} bytes)"
                ),
            ),
            Malformed::TooManyFields => FieldError::record(
                ErrorCode::Columns,
                format!(
                    "far more fields than the {} expected",
                    table.columns().len()
                ),
            ),
            Malformed::UnterminatedQuote => FieldError::record(
                ErrorCode::Format,
                format!(
                    "the quoted field opened on line {line} is never closed; the rest of the file is this one record"
                ),
            ),
            Malformed::QuoteInUnquotedField { field } => quote_error(
                column(field),
                field,
                "holds a \" but does not start with one: a field with quotes must be quoted whole, its quotes doubled (\"say \"\"hi\"\"\")",
            ),
            Malformed::TextAfterQuote { field } => quote_error(
                column(field),
                field,
                "has text after its closing quote: a quoted field ends at its closing quote (a quote inside it is doubled: \"\")",
            ),
        };
        Checked {
            values: vec![None; table.columns().len()],
            errors: vec![error],
        }
    }
}

/// A quoting error in field `field` (from 0), named by its column when the
/// table has one there.
fn quote_error(column: Option<&str>, field: usize, what: &str) -> FieldError {
    match column {
        Some(name) => FieldError::column(name, ErrorCode::Format, format!("the field {what}")),
        None => FieldError::record(ErrorCode::Format, format!("field {} {what}", field + 1)),
    }
}

/// Whether a record is `table`'s header line: its fields are the column
/// names, in order (case and surrounding blanks aside).
pub fn is_header(table: Table, fields: impl ExactSizeIterator<Item = impl AsRef<[u8]>>) -> bool {
    let cols = table.columns();
    fields.len() == cols.len()
        && fields.zip(cols).all(|(f, c)| {
            f.as_ref()
                .trim_ascii()
                .eq_ignore_ascii_case(c.name.as_bytes())
        })
}

/// One record of the file.
#[derive(Debug)]
pub struct Record<'a> {
    /// Physical line (counting from 1) where the record starts.
    pub line: u64,
    /// The record's text without its line terminator; cut to [`MAX_RAW_KEPT`]
    /// bytes when the record is [`Malformed::TooLong`].
    pub raw: &'a [u8],
    /// Set when the fields could not be read.
    pub malformed: Option<Malformed>,
    out: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Record<'a> {
    /// The fields, unquoted. Empty when the record is malformed.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + Clone + 'a {
        let (out, ends) = (self.out, self.ends);
        (0..ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &out[start..ends[i]]
        })
    }

    /// Whether the record is only spaces or tabs (counted as a blank line).
    fn is_whitespace(&self) -> bool {
        self.malformed.is_none() && self.raw.iter().all(|b| *b == b' ' || *b == b'\t')
    }
}

/// A streaming reader of CSV records (comma separated, `"` quoting, LF, CR
/// or CRLF line ends, optional UTF-8 BOM).
pub struct CsvRecords<R> {
    src: R,
    core: csv_core::Reader,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    out: Vec<u8>,
    ends: Vec<usize>,
    raw: Vec<u8>,
    lines: LineEnds,
    /// Whether the last byte consumed ended a line (true at the start).
    at_line_start: bool,
    blank_lines: u64,
    started: bool,
    /// Whether csv_core was given input yet (see `read_one`).
    core_started: bool,
}

impl<R: Read> CsvRecords<R> {
    /// Reads records from `src`.
    pub fn new(src: R) -> Self {
        Self::with_buffer(src, READ_BUF)
    }

    /// A reader whose read buffer holds `bytes` (at most 256 KiB):
    /// a source known to be small (a request body, one logged record)
    /// needs no 256 KiB buffer, zeroed for each reader.
    pub fn with_buffer(src: R, bytes: usize) -> Self {
        CsvRecords {
            src,
            // BOM handling is ours (see `skip_bom`): the parser would only
            // see a BOM that arrives in its first read whole.
            core: csv_core::ReaderBuilder::new().build(),
            buf: vec![0; bytes.clamp(64, READ_BUF)].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            out: vec![0; 4096],
            ends: vec![0; 16],
            raw: Vec::with_capacity(4096),
            lines: LineEnds::default(),
            at_line_start: true,
            blank_lines: 0,
            started: false,
            core_started: false,
        }
    }

    /// Drops a UTF-8 byte order mark at the start of the file.
    fn skip_bom(&mut self) -> io::Result<()> {
        self.started = true;
        while self.len < 3 {
            match self.src.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.eof = self.len == 0;
        if self.buf[..self.len].starts_with(b"\xef\xbb\xbf") {
            self.pos = 3;
        }
        Ok(())
    }

    /// Blank and whitespace-only lines skipped so far.
    pub fn blank_lines(&self) -> u64 {
        self.blank_lines
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.src
    }

    /// The next record, skipping (and counting) blank lines; `None` at the end.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        loop {
            let Some((line, malformed, out_len, ends_len)) = self.read_one()? else {
                return Ok(None);
            };
            let record = Record {
                line,
                raw: &self.raw,
                malformed,
                out: &self.out[..out_len],
                ends: &self.ends[..ends_len],
            };
            if record.is_whitespace() {
                self.blank_lines += 1;
                continue;
            }
            // Re-borrow to satisfy the borrow checker across loop iterations.
            return Ok(Some(Record {
                line,
                raw: &self.raw,
                malformed,
                out: &self.out[..out_len],
                ends: &self.ends[..ends_len],
            }));
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        self.pos = 0;
        self.len = loop {
            match self.src.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.eof = self.len == 0;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn read_one(&mut self) -> io::Result<Option<(u64, Option<Malformed>, usize, usize)>> {
        if !self.started {
            self.skip_bom()?;
        }
        self.raw.clear();
        let (mut out_len, mut ends_len) = (0usize, 0usize);
        let mut total = 0usize;
        let mut start_line: Option<u64> = None;
        let mut too_many = false;
        let mut overflowed = false;
        let mut last_byte = 0u8;
        loop {
            if self.pos == self.len && !self.eof {
                self.fill()?;
            }
            let mut input = &self.buf[self.pos..self.len];
            if !self.core_started {
                // csv_core drops a BOM at the start of the first input it is
                // given, but ours is gone already: what follows is data (a
                // second BOM is U+FEFF text), so its first input is one byte,
                // too short to hold one, whatever the source's read sizes.
                self.core_started = true;
                input = &input[..input.len().min(1)];
            }
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[out_len..], &mut self.ends[ends_len..]);
            let mut consumed = &input[..nin];
            if start_line.is_none() {
                // Skip the line terminators before the record, counting blank lines.
                let gap = consumed
                    .iter()
                    .position(|b| *b != b'\n' && *b != b'\r')
                    .unwrap_or(consumed.len());
                for &b in &consumed[..gap] {
                    if self.lines.count(b) {
                        if self.at_line_start {
                            self.blank_lines += 1;
                        }
                        self.at_line_start = true;
                    }
                }
                consumed = &consumed[gap..];
                if !consumed.is_empty() {
                    start_line = Some(self.lines.ends + 1);
                    self.at_line_start = false;
                }
            }
            if !consumed.is_empty() {
                for &b in consumed {
                    self.lines.count(b);
                }
                last_byte = consumed[consumed.len() - 1];
                total += consumed.len();
                let room = (MAX_RECORD_BYTES + 2).saturating_sub(self.raw.len());
                self.raw
                    .extend_from_slice(&consumed[..consumed.len().min(room)]);
            }
            self.pos += nin;
            out_len += nout;
            ends_len += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    if !grow(&mut self.out, MAX_RECORD_BYTES) {
                        overflowed = true;
                        out_len = 0;
                    }
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if !grow(&mut self.ends, MAX_FIELDS) {
                        too_many = true;
                        ends_len = 0;
                    }
                }
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => return Ok(None),
            }
        }
        let Some(line) = start_line else {
            // Only terminators were left: the end of the file.
            return Ok(None);
        };
        self.at_line_start = matches!(last_byte, b'\n' | b'\r');
        // csv_core consumes the one byte that ends a record (the LF of a CRLF
        // is the next record's leading terminator).
        if matches!(last_byte, b'\n' | b'\r') {
            total -= 1;
            self.raw.truncate(total);
        }
        let malformed = if overflowed || total > MAX_RECORD_BYTES {
            self.raw.truncate(MAX_RAW_KEPT);
            Some(Malformed::TooLong { bytes: total })
        } else if too_many {
            Some(Malformed::TooManyFields)
        } else {
            match quoting(&self.raw) {
                Quoting::Sound => None,
                // Only the last record of a file can end inside quotes: an
                // open quote swallows every line after it.
                Quoting::Open => Some(Malformed::UnterminatedQuote),
                Quoting::Repaired(m) => Some(m),
            }
        };
        if malformed.is_some() {
            out_len = 0;
            ends_len = 0;
        }
        Ok(Some((line, malformed, out_len, ends_len)))
    }
}

/// Doubles `buf`, unless it holds `max` or more already (then `false`):
/// the bound on what one record may take.
fn grow<T: Copy + Default>(buf: &mut Vec<T>, max: usize) -> bool {
    if buf.len() >= max {
        return false;
    }
    let n = buf.len() * 2;
    buf.resize(n, T::default());
    true
}

/// How a record's quotes stand, read the strict way (RFC 4180): a field is
/// quoted only when its first byte is `"`, and then its closing quote is
/// followed by a delimiter or the end of the record.
#[derive(Debug, PartialEq, Eq)]
enum Quoting {
    Sound,
    /// The record ends inside a quoted field.
    Open,
    /// A quote `csv_core` would take for text: the record is not what it
    /// seems, so it is flagged rather than read.
    Repaired(Malformed),
}

fn quoting(raw: &[u8]) -> Quoting {
    // Most records hold no quote at all: one memchr pass says so, instead
    // of the byte-by-byte walk below.
    if !raw.contains(&b'"') {
        return Quoting::Sound;
    }
    #[derive(Clone, Copy)]
    enum At {
        FieldStart,
        Unquoted,
        Quoted,
        /// A `"` inside a quoted field: it closes the field or, doubled, is one quote.
        QuoteInQuoted,
    }
    let (mut at, mut field) = (At::FieldStart, 0usize);
    for &b in raw {
        at = match (at, b) {
            (At::FieldStart | At::Unquoted | At::QuoteInQuoted, b',') => {
                field += 1;
                At::FieldStart
            }
            (At::FieldStart, b'"') => At::Quoted,
            (At::Unquoted, b'"') => {
                return Quoting::Repaired(Malformed::QuoteInUnquotedField { field });
            }
            (At::FieldStart | At::Unquoted, _) => At::Unquoted,
            (At::Quoted, b'"') => At::QuoteInQuoted,
            (At::Quoted, _) => At::Quoted,
            (At::QuoteInQuoted, b'"') => At::Quoted,
            (At::QuoteInQuoted, _) => {
                return Quoting::Repaired(Malformed::TextAfterQuote { field });
            }
        };
    }
    match at {
        At::Quoted => Quoting::Open,
        _ => Quoting::Sound,
    }
}

/// Line ends consumed so far: a CR, an LF, or a CRLF counts once.
#[derive(Debug, Default)]
struct LineEnds {
    ends: u64,
    /// Whether the last byte consumed was a CR (an LF next completes it).
    after_cr: bool,
}

impl LineEnds {
    /// Counts `b` if it ends a line; returns whether it did.
    fn count(&mut self, b: u8) -> bool {
        let ends = b == b'\r' || (b == b'\n' && !self.after_cr);
        self.after_cr = b == b'\r';
        self.ends += ends as u64;
        ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Rec {
        line: u64,
        raw: String,
        fields: Vec<String>,
        malformed: Option<Malformed>,
    }

    #[test]
    fn header_lines_are_recognised() {
        let f = |s: &'static str| {
            s.split(',')
                .map(str::as_bytes)
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(is_header(
            Table::HiredEmployees,
            f("id,name,datetime,department_id,job_id")
        ));
        assert!(is_header(Table::Jobs, f(" ID , Job ")));
        assert!(!is_header(Table::Jobs, f("1,job")));
        assert!(!is_header(Table::Jobs, f("id,job,extra")));
    }

    fn read(input: &[u8]) -> (Vec<Rec>, u64) {
        // A tiny read size exercises records split across reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        for trickle in [false, true] {
            let mut r: CsvRecords<Box<dyn Read>> = CsvRecords::new(if trickle {
                Box::new(Trickle(input))
            } else {
                Box::new(input)
            });
            let mut recs = Vec::new();
            while let Some(rec) = r.next_record().unwrap() {
                recs.push(Rec {
                    line: rec.line,
                    raw: String::from_utf8_lossy(rec.raw).into_owned(),
                    fields: rec
                        .fields()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                    malformed: rec.malformed,
                });
            }
            out.push((recs, r.blank_lines()));
        }
        let second = out.pop().unwrap();
        let first = out.pop().unwrap();
        assert_eq!(first, second, "result depends on read sizes");
        first
    }

    /// The line numbers of the records read, and the blank lines counted.
    fn lines(input: &[u8]) -> (Vec<u64>, u64) {
        let (recs, blank) = read(input);
        (recs.iter().map(|r| r.line).collect(), blank)
    }

    #[test]
    fn lines_blank_lines_and_terminators() {
        let input = b"\xef\xbb\xbf1,a\r\n\r\n  \n2,b\n\n3,\"x\ny\",z\n4,c";
        assert_eq!(lines(input), (vec![1, 4, 6, 8], 3));
        let (recs, _) = read(input);
        assert_eq!(recs[0].fields, vec!["1", "a"]);
        assert_eq!(recs[2].fields, vec!["3", "x\ny", "z"]);
        assert_eq!(recs[2].raw, "3,\"x\ny\",z");
        assert_eq!(recs[3].raw, "4,c");
    }

    #[test]
    fn quoted_commas_and_escaped_quotes() {
        let (recs, _) = read(b"1,\"Smith, \"\"Jr\"\"\"\n");
        assert_eq!(recs[0].fields, vec!["1", "Smith, \"Jr\""]);
        assert_eq!(recs[0].malformed, None);
    }

    #[test]
    fn unterminated_quote_at_end_of_file() {
        let (recs, _) = read(b"1,a\n2,\"open\n3,c\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].line, 2);
        assert_eq!(recs[1].malformed, Some(Malformed::UnterminatedQuote));
        // An escaped quote inside a closed field is fine.
        let (recs, _) = read(b"1,\"a\"\"b\"");
        assert_eq!(recs[0].malformed, None);
        let (recs, _) = read(b"1,\"a\"\"b");
        assert_eq!(recs[0].malformed, Some(Malformed::UnterminatedQuote));
    }

    #[test]
    fn records_over_the_limit_are_flagged_and_cut() {
        let mut input = b"1,a\n2,".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        input.extend_from_slice(b"\n3,c\n");
        let (recs, _) = read(&input);
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[1].malformed,
            Some(Malformed::TooLong {
                bytes: MAX_RECORD_BYTES + 12
            })
        );
        assert_eq!(recs[1].raw.len(), MAX_RAW_KEPT);
        assert_eq!(recs[2].fields, vec!["3", "c"]);
        assert_eq!(recs[2].line, 3);
    }

    #[test]
    fn too_many_fields() {
        let line = vec![b','; 300];
        let (recs, _) = read(&line);
        assert_eq!(recs[0].malformed, Some(Malformed::TooManyFields));
    }

    #[test]
    fn quotes_that_would_be_repaired_are_flagged() {
        use Malformed::*;
        let cases: &[(&[u8], Option<Malformed>)] = &[
            (b"2,ab\"c", Some(QuoteInUnquotedField { field: 1 })),
            (b"ab\"c,2", Some(QuoteInUnquotedField { field: 0 })),
            (b"2, \"a\"", Some(QuoteInUnquotedField { field: 1 })),
            (b"3,\"pedro\"holanda", Some(TextAfterQuote { field: 1 })),
            (b"3,\"a\" ,x", Some(TextAfterQuote { field: 1 })),
            (b"\"a\"\"b\"c,1", Some(TextAfterQuote { field: 0 })),
            (b"1,\"ok, quoted\"", None),
            (b"1,\"say \"\"hi\"\"\"", None),
            (b"1,\"\"", None),
            (b"\"1\",\"a\nb\",\"\"\"\"", None),
        ];
        for (input, want) in cases {
            let (recs, _) = read(input);
            assert_eq!(recs.len(), 1, "{}", String::from_utf8_lossy(input));
            assert_eq!(
                recs[0].malformed,
                *want,
                "{}",
                String::from_utf8_lossy(input)
            );
            // The raw text is kept as it was.
            assert_eq!(recs[0].raw.as_bytes(), *input);
            if want.is_some() {
                assert!(recs[0].fields.is_empty());
            }
        }
        let (recs, _) = read(b"1,\"say \"\"hi\"\"\"\n2,\"ok, quoted\"\n");
        assert_eq!(recs[0].fields, vec!["1", "say \"hi\""]);
        assert_eq!(recs[1].fields, vec!["2", "ok, quoted"]);
        // A flagged record does not disturb the next one.
        let (recs, _) = read(b"1,a\"b\n2,c\n");
        assert_eq!(recs[1].fields, vec!["2", "c"]);
        assert_eq!(recs[1].line, 2);
    }

    #[test]
    fn cr_only_and_mixed_line_ends_are_counted() {
        let input = b"1,a\r2,b\r\r3,\"x\ry\"\r4,c\r";
        assert_eq!(lines(input), (vec![1, 2, 4, 6], 1));
        assert_eq!(read(input).0[2].fields, vec!["3", "x\ry"]);
        let mixed = b"1,a\r\n2,b\n3,c\r4,d\r\n\r\n5,e\n\r6,f";
        assert_eq!(lines(mixed), (vec![1, 2, 3, 4, 6, 8], 2));
        // A quoted CRLF is one line end.
        let (recs, _) = read(b"1,\"x\r\ny\"\r\n2,b");
        assert_eq!(recs[1].line, 3);
    }

    #[test]
    fn only_the_first_bom_is_dropped() {
        // A second BOM is text (U+FEFF) of the first field, whatever the read
        // sizes (alone in the parser's first input, it would read as the end
        // of the file).
        let (recs, _) = read(b"\xef\xbb\xbf\xef\xbb\xbf1,a\n2,b\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].raw, "\u{feff}1,a");
        assert_eq!(recs[0].fields, vec!["\u{feff}1", "a"]);
        assert_eq!(recs[1].line, 2);
        let input = b"\xef\xbb\xbf\xef\xbb\xbf\n,\n,";
        assert_eq!(lines(input).0, vec![1, 2, 3]);
        let (recs, _) = read(input);
        assert_eq!(recs[0].fields, vec!["\u{feff}"]);
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(read(b"").0, vec![]);
        assert_eq!(read(b"\n\n").1, 2);
        assert_eq!(read(b"\xef\xbb\xbf").0, vec![]);
    }
}
