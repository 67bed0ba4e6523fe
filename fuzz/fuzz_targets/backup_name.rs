//! The backup name check (`BackupName::parse`) on arbitrary text:
//!
//! - an accepted name is `<table>-<8 digits>T<9 digits>Z`, with or without
//!   `.avro`, for exactly one table; the stem returned is the name without
//!   `.avro`, holds only `[a-z_]`, digits, `-`, `T` and `Z` (nothing that can
//!   leave the backup folder), and is accepted again, bare or with `.avro`,
//!   as itself;
//! - a name accepted for one table is, for each other table, `NotFound`
//!   (well formed, but that table's backups do not hold it);
//! - any other name is `BadName` for every table, quoting its first 100
//!   characters.

#![no_main]

use hrmig::dictionary::Table;
use hrmig::ops::backup::{BackupError, BackupName};
use libfuzzer_sys::fuzz_target;

fn stamp_shape(stamp: &[u8]) -> bool {
    stamp.len() == 19
        && stamp[..8].iter().all(u8::is_ascii_digit)
        && stamp[8] == b'T'
        && stamp[9..18].iter().all(u8::is_ascii_digit)
        && stamp[18] == b'Z'
}

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    let mut accepted_for = None;
    let mut not_found = 0;
    for table in Table::ALL {
        match BackupName::parse(table, &name) {
            Ok(parsed) => {
                assert_eq!(parsed.table(), table);
                let stem = parsed.as_str().to_owned();
                assert!(
                    accepted_for.replace(table).is_none(),
                    "{name:?} names two tables"
                );
                assert!(
                    name == stem || name == format!("{stem}.avro"),
                    "{name:?} -> {stem:?}"
                );
                let stamp = stem
                    .strip_prefix(table.name())
                    .and_then(|s| s.strip_prefix('-'))
                    .unwrap_or_else(|| panic!("{stem:?} is not named after {table}"));
                assert!(stamp_shape(stamp.as_bytes()), "{stem:?}");
                assert!(
                    stem.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'_' | b'-' | b'T' | b'Z')),
                    "{stem:?}"
                );
                assert_eq!(BackupName::parse(table, &stem).ok(), Some(parsed.clone()));
                let file = format!("{stem}.avro");
                assert_eq!(parsed.file_name(), file);
                assert_eq!(BackupName::parse(table, &file).ok(), Some(parsed));
            }
            Err(BackupError::NotFound(_)) => not_found += 1,
            Err(BackupError::BadName(shown)) => {
                assert_eq!(shown, name.chars().take(100).collect::<String>());
            }
            Err(e) => panic!("{name:?}: {e}"),
        }
    }
    // Well formed for one table means not found for the two others;
    // malformed means malformed for all three.
    match accepted_for {
        Some(_) => assert_eq!(not_found, Table::ALL.len() - 1, "{name:?}"),
        None => assert_eq!(not_found, 0, "{name:?}"),
    }
});
