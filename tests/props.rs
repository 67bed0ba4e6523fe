//! Property tests: no input makes the reader or the validators panic, and
//! valid rows survive the trip through CSV text unchanged.

use hrmig::csvfile::CsvRecords;
use hrmig::dictionary::check::{check_csv, check_csv_row, check_json, check_json_row};
use hrmig::dictionary::{Table, Value, datetime};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        ".{0,300}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_owned()),
        Just("name".to_owned()),
        Just("datetime".to_owned()),
        Just("department_id".to_owned()),
        Just("job_id".to_owned()),
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn csv_reader_and_checks_never_panic(bytes in prop::collection::vec(
        prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '), any::<u8>()], 0..600)) {
        let mut records = CsvRecords::new(bytes.as_slice());
        let mut count = 0;
        while let Some(rec) = records.next_record().unwrap() {
            count += 1;
            prop_assert!(rec.line >= 1);
            for table in Table::ALL {
                let checked = check_csv(table, rec.fields());
                prop_assert_eq!(checked.values.len(), table.columns().len());
                prop_assert_eq!(check_csv_row(table, rec.fields()), checked.into_row());
            }
        }
        prop_assert!(count <= bytes.len());
    }

    #[test]
    fn json_checks_never_panic(entries in prop::collection::vec((key(), json_value()), 0..8)) {
        for table in Table::ALL {
            let scalars: Vec<(&str, hrmig::dictionary::check::JsonScalar<'_>)> =
                entries.iter().map(|(k, v)| (k.as_str(), v.into())).collect();
            let checked = check_json(table, &scalars);
            prop_assert_eq!(checked.values.len(), table.columns().len());
            if checked.errors.is_empty() {
                prop_assert!(checked.into_row().is_ok());
            }
        }
    }

    /// The one-allocation path gives what the full check gives, for rows
    /// in column order (its case) with values valid or not.
    #[test]
    fn the_row_fast_path_agrees_with_the_full_check(
        values in prop::collection::vec(prop_oneof![
            3 => Just(serde_json::json!(7)),
            3 => Just(serde_json::json!("Ann Lee")),
            3 => Just(serde_json::json!("2021-07-27T16:02:08Z")),
            1 => json_value(),
        ], 0..7),
        renamed in prop::option::of((0usize..7, key())),
    ) {
        for table in Table::ALL {
            let mut keys: Vec<String> = table.columns().iter().map(|c| c.name.to_owned()).collect();
            keys.extend(["extra".to_owned(), "id".to_owned()]);
            if let Some((i, k)) = &renamed && *i < keys.len() {
                keys[*i] = k.clone();
            }
            let scalars: Vec<(&str, hrmig::dictionary::check::JsonScalar<'_>)> =
                keys.iter().zip(&values).map(|(k, v)| (k.as_str(), v.into())).collect();
            prop_assert_eq!(check_json_row(table, &scalars), check_json(table, &scalars).into_row());
        }
    }

    #[test]
    fn valid_rows_round_trip_through_csv(
        id in any::<i32>(),
        name in "[^,\"\r\n\u{0}]{1,255}".prop_filter("not blank", |s| !s.trim().is_empty()),
        ms in -62_135_596_800_000i64..253_402_300_799_000,
        dept in any::<i32>(),
        job in any::<i32>(),
    ) {
        let text = format!("{id},{name},{},{dept},{job}\n", datetime::format(ms));
        let mut records = CsvRecords::new(text.as_bytes());
        let rec = records.next_record().unwrap().unwrap();
        let row = check_csv(Table::HiredEmployees, rec.fields()).into_row().unwrap();
        prop_assert_eq!(check_csv_row(Table::HiredEmployees, rec.fields()), Ok(row.clone()));
        prop_assert_eq!(row.0, vec![
            Value::Int(id),
            Value::Text(name.trim().to_owned()),
            Value::DateTime(ms),
            Value::Int(dept),
            Value::Int(job),
        ]);
    }
}
