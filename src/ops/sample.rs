//! Sample data in the historic format, for demos, tests and benchmarks.
//!
//! Deterministic for a given seed (the generator is a fixed SplitMix64, not
//! a library RNG whose stream may change between versions), and written with
//! no per-row allocation so that 10 M rows take seconds.

use crate::dictionary::{Table, datetime};
use std::io::{self, Write};
use std::path::Path;

/// The twelve departments of the historic files.
pub const DEPARTMENTS: [&str; 12] = [
    "Product Management",
    "Sales",
    "Research and Development",
    "Business Development",
    "Engineering",
    "Human Resources",
    "Services",
    "Support",
    "Marketing",
    "Training",
    "Legal",
    "Accounting",
];

/// Number of jobs generated, as in the historic files.
pub const JOBS: usize = 183;

const TITLES: [&str; 46] = [
    "Marketing Assistant",
    "VP Sales",
    "Biostatistician",
    "Account Representative",
    "VP Marketing",
    "Environmental Specialist",
    "Software Consultant",
    "Office Assistant",
    "Information Systems Manager",
    "Financial Analyst",
    "Web Developer",
    "Staff Accountant",
    "Recruiting Manager",
    "Sales Associate",
    "Geologist",
    "Research Associate",
    "Database Administrator",
    "Systems Administrator",
    "Data Coordinator",
    "Budget/Accounting Analyst",
    "Senior Editor",
    "Payment Adjustment Coordinator",
    "Tax Accountant",
    "Quality Engineer",
    "Help Desk Operator",
    "Structural Analysis Engineer",
    "Nurse Practicioner",
    "Legal Assistant",
    "Human Resources Assistant",
    "Programmer Analyst",
    "Engineer",
    "Developer",
    "Occupational Therapist",
    "Analog Circuit Design manager",
    "Safety Technician",
    "Cost Accountant",
    "Social Worker",
    "Media Manager",
    "Statistician",
    "Chemical Engineer",
    "Automation Specialist",
    "Design Engineer",
    "Clinical Specialist",
    "Executive Secretary",
    "Teacher",
    "Administrative Assistant",
];
const LEVELS: [&str; 4] = ["I", "II", "III", "IV"];

const FIRST: [&str; 32] = [
    "Harold", "Ty", "Lyman", "Lotti", "Gretna", "Marcelo", "Lacee", "Lianne", "Ann", "Bruno",
    "Carmen", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kaia", "Luis", "Mei",
    "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tomás", "Uma", "Víctor", "Wen", "Zoë",
];
const LAST: [&str; 32] = [
    "Vogt",
    "Hofer",
    "Hadye",
    "Crangle",
    "Lightfoot",
    "Gonzalez",
    "O'Hingerty",
    "Huxton",
    "Smith",
    "Silva",
    "Núñez",
    "Okafor",
    "Ivanova",
    "Haddad",
    "Kim",
    "Tanaka",
    "Rossi",
    "Müller",
    "Dubois",
    "Andersen",
    "Kowalski",
    "Nakamura",
    "Fernández",
    "Mensah",
    "Cohen",
    "Park",
    "Lopez-Reyes",
    "Walsh",
    "Novak",
    "Singh",
    "Ahmed",
    "Baker",
];

/// Options of `hrmig gen`.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of employee rows.
    pub employees: u64,
    /// Share of employee rows that break a rule, 0.0 to 1.0.
    pub invalid_rate: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            employees: 2000,
            invalid_rate: 0.035,
            seed: 42,
        }
    }
}

/// SplitMix64: tiny, fast, and stable forever.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The kinds of broken employee rows the generator mixes in.
pub const INVALID_KINDS: [&str; 14] = [
    "missing name",
    "missing datetime",
    "missing department_id",
    "missing job_id",
    "id not an integer",
    "department_id out of range",
    "impossible date",
    "unknown department",
    "unknown job",
    "duplicate id",
    "too few fields",
    "too many fields",
    "name too long",
    "invalid UTF-8",
];

/// Name of job `id` (1-based).
pub fn job_name(id: usize) -> String {
    let i = id - 1;
    format!(
        "{} {}",
        TITLES[i % TITLES.len()],
        LEVELS[i / TITLES.len() % LEVELS.len()]
    )
}

/// Writes `departments.csv`, `jobs.csv` and `hired_employees.csv` into `dir`
/// (created when missing). Returns the number of employee rows that break a rule.
pub fn generate(dir: &Path, opts: &GenOptions) -> io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let open = |t: Table| -> io::Result<io::BufWriter<std::fs::File>> {
        Ok(io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(format!("{}.csv", t.name())))?,
        ))
    };
    let mut w = open(Table::Departments)?;
    for (i, name) in DEPARTMENTS.iter().enumerate() {
        writeln!(w, "{},{}", i + 1, name)?;
    }
    w.flush()?;
    let mut w = open(Table::Jobs)?;
    for id in 1..=JOBS {
        writeln!(w, "{},{}", id, job_name(id))?;
    }
    w.flush()?;
    let mut w = open(Table::HiredEmployees)?;
    let invalid = write_employees(&mut w, opts)?;
    w.flush()?;
    Ok(invalid)
}

/// Writes the employee rows to `w`; returns how many break a rule.
pub fn write_employees(w: &mut impl Write, opts: &GenOptions) -> io::Result<u64> {
    let mut rng = Rng(opts.seed);
    // Hire times spread over 2020-01-01 .. 2023-01-01 (UTC).
    const START: i64 = 1_577_836_800;
    const SPAN: u64 = 94_694_400;
    let mut line = Vec::with_capacity(512);
    let mut invalid = 0;
    for id in 1..=opts.employees {
        line.clear();
        let first = FIRST[rng.below(32) as usize];
        let last = LAST[rng.below(32) as usize];
        let secs = START + rng.below(SPAN) as i64;
        let dept = 1 + rng.below(DEPARTMENTS.len() as u64);
        let job = 1 + rng.below(JOBS as u64);
        let kind = if rng.chance(opts.invalid_rate) {
            invalid += 1;
            // The first row has no earlier id to repeat.
            Some(rng.below(INVALID_KINDS.len() as u64))
                .map(|k| if k == 9 && id == 1 { 0 } else { k })
        } else {
            None
        };
        let mut dt = [0u8; 24];
        let dt = datetime::format_into(secs * 1000, &mut dt);
        match kind {
            Some(4) => line.extend_from_slice(b"abc"),
            Some(9) if id > 1 => push_int(&mut line, id - 1),
            _ => push_int(&mut line, id),
        }
        line.push(b',');
        match kind {
            Some(0) => {}
            Some(12) => line.extend(std::iter::repeat_n(b'x', 256)),
            Some(13) => line.extend_from_slice(b"Caf\xe9 Ol\xe9"),
            _ => {
                line.extend_from_slice(first.as_bytes());
                line.push(b' ');
                line.extend_from_slice(last.as_bytes());
            }
        }
        line.push(b',');
        match kind {
            Some(1) => {}
            Some(6) => line.extend_from_slice(b"2021-02-30T10:00:00Z"),
            _ => line.extend_from_slice(dt.as_bytes()),
        }
        if kind == Some(10) {
            line.push(b'\n');
            w.write_all(&line)?;
            continue;
        }
        line.push(b',');
        match kind {
            Some(2) => {}
            Some(5) => line.extend_from_slice(b"2147483648"),
            Some(7) => line.extend_from_slice(b"99"),
            _ => push_int(&mut line, dept),
        }
        line.push(b',');
        match kind {
            Some(3) => {}
            Some(8) => line.extend_from_slice(b"999"),
            _ => push_int(&mut line, job),
        }
        if kind == Some(11) {
            line.extend_from_slice(b",extra");
        }
        line.push(b'\n');
        w.write_all(&line)?;
    }
    Ok(invalid)
}

fn push_int(line: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    line.extend_from_slice(&digits[i..]);
}
