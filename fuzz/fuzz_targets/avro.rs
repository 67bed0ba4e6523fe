//! The backup files' reader (`ops::backup::ocf`) on arbitrary bytes, read as a
//! file of each table:
//!
//! - it never panics, and never allocates past its bounds (run with
//!   `-malloc_limit_mb=64`: scripts/fuzz does), whatever the file claims;
//! - a block it accepts holds 1 or more rows, at most `MAX_BLOCK_BYTES`
//!   decompressed, with at least one byte per field of every row;
//! - rows decoded from an accepted block pass the data rules, as a loaded
//!   row does.

#![no_main]

mod common;

use hrmig::dictionary::Table;
use hrmig::ops::backup::codec::read_row;
use hrmig::ops::backup::ocf::{MAX_BLOCK_BYTES, OcfReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for table in Table::ALL {
        let Ok(mut reader) = OcfReader::new(data, table) else {
            continue;
        };
        let fields = table.columns().len() as u64;
        // Every block read consumes input: the loop ends with the data.
        while let Ok(Some(block)) = reader.next_block() {
            assert!(block.count >= 1, "{block:?}");
            assert!(block.data.len() <= MAX_BLOCK_BYTES);
            assert!(block.count * fields <= block.data.len() as u64, "{block:?}");
            let mut at = 0;
            for _ in 0..block.count {
                match read_row(table, block.data, &mut at) {
                    Ok(row) => common::check_row(table, &row),
                    Err(_) => break,
                }
                assert!(at <= block.data.len());
            }
        }
    }
});
