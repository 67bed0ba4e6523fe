use super::*;

fn settings(conninfo: &str) -> Result<(String, TlsSettings), TlsError> {
    TlsSettings::take(conninfo)
}

fn mode(conninfo: &str) -> SslMode {
    settings(conninfo).unwrap().1.mode
}

#[test]
fn every_sslmode_in_a_url_and_what_it_checks() {
    use tokio_postgres::config::SslMode as Driver;
    let base = "postgres://u@h/db";
    assert_eq!(mode(base), SslMode::Prefer);
    for (value, expected, driver, check) in [
        ("disable", SslMode::Disable, Driver::Disable, Check::Nothing),
        ("prefer", SslMode::Prefer, Driver::Prefer, Check::Nothing),
        ("require", SslMode::Require, Driver::Require, Check::Nothing),
        (
            "verify-ca",
            SslMode::VerifyCa,
            Driver::Require,
            Check::Chain,
        ),
        (
            "verify-full",
            SslMode::VerifyFull,
            Driver::Require,
            Check::ChainAndName,
        ),
    ] {
        let (rest, s) = settings(&format!("{base}?sslmode={value}")).unwrap();
        assert_eq!(rest, base);
        assert_eq!(s.mode, expected);
        assert_eq!(s.driver_mode(), driver);
        assert_eq!(s.check(), check, "{value}");
    }
}

#[test]
fn require_with_a_root_file_checks_the_chain_as_libpq_does() {
    let (_, s) = settings("postgres://h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
    assert_eq!(s.check(), Check::Chain);
    let (_, s) = settings("postgres://h/db?sslrootcert=/ca.pem").unwrap();
    assert_eq!(s.check(), Check::Nothing, "prefer never checks");
}

#[test]
fn other_parameters_stay_for_the_driver() {
    let (rest, s) = settings(
        "postgres://u@h/db?application_name=x&sslrootcert=%2Ftmp%2Fmy%20ca.pem&sslmode=verify-ca&connect_timeout=3",
    )
    .unwrap();
    assert_eq!(
        rest,
        "postgres://u@h/db?application_name=x&connect_timeout=3"
    );
    assert_eq!(s.roots, Roots::File(PathBuf::from("/tmp/my ca.pem")));
    rest.parse::<tokio_postgres::Config>().unwrap();
}

#[test]
fn an_unknown_sslmode_is_named() {
    for conninfo in ["postgres://h/db?sslmode=bogus", "host=h sslmode=bogus"] {
        let e = settings(conninfo).unwrap_err();
        assert!(
            matches!(&e, TlsError::UnknownMode(m) if m == "bogus"),
            "{e}"
        );
        assert!(e.to_string().contains("verify-full"), "{e}");
    }
    // Case matters to libpq too.
    assert!(settings("postgres://h/db?sslmode=Require").is_err());
}

#[test]
fn keyword_form() {
    let (rest, s) =
        settings("host=db.example.com  user = me sslmode=verify-full sslrootcert='/a dir/ca.pem'")
            .unwrap();
    assert_eq!(s.mode, SslMode::VerifyFull);
    assert_eq!(s.roots, Roots::File(PathBuf::from("/a dir/ca.pem")));
    let config: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(config.get_user(), Some("me"));
    assert_eq!(server_names(&config), "db.example.com:5432");

    let (rest, _) = settings(r"host=h password=a\'b\\c sslmode=require").unwrap();
    let config: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(config.get_password(), Some(&br"a'b\c"[..]));
}

#[test]
fn keyword_form_is_told_from_other_strings() {
    assert!(is_keyword_form("host=h dbname=d"));
    assert!(is_keyword_form("  user='a b' host=h"));
    assert!(!is_keyword_form("Server=tcp:h,1433;Database=d;"));
    assert!(!is_keyword_form("host"));
    assert!(!is_keyword_form("host='unterminated"));
    assert!(!is_keyword_form("postgres://h/db"));
    assert!(!is_keyword_form(""));
}

#[test]
fn sslrootcert_system_means_verify_full() {
    let (_, s) = settings("postgres://h/db?sslrootcert=system").unwrap();
    assert_eq!(
        (s.mode, s.roots.clone()),
        (SslMode::VerifyFull, Roots::System)
    );
    assert!(matches!(
        settings("postgres://h/db?sslrootcert=system&sslmode=require"),
        Err(TlsError::WeakModeWithSystemRoots("require"))
    ));
    settings("postgres://h/db?sslrootcert=system&sslmode=verify-full").unwrap();
}

#[test]
fn a_missing_or_unreadable_root_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (path, says) in [
        (missing.clone(), "cannot be read"),
        (dir.path().to_owned(), "cannot be read"),
        (empty, "no PEM certificate"),
    ] {
        for mode in ["prefer", "require", "verify-full"] {
            let url = format!(
                "postgres://h/db?sslmode={mode}&sslrootcert={}",
                path.display()
            );
            let (_, s) = settings(&url).unwrap();
            let e = s.connector().err().unwrap();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("sslrootcert={}", path.display())),
                "{text}"
            );
            assert!(text.contains(says), "{text}");
        }
    }
}

#[test]
fn default_roots_are_not_empty() {
    assert!(default_roots().len() >= webpki_roots::TLS_SERVER_ROOTS.len());
    let (_, s) = settings("postgres://h/db?sslmode=verify-full").unwrap();
    s.connector().unwrap();
}

#[test]
fn certificate_failures_are_found_under_io_errors() {
    #[derive(Debug, thiserror::Error)]
    #[error("error performing TLS handshake")]
    struct Driver(#[source] std::io::Error);
    let io = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
    );
    let e = tls_failure(&Driver(io), "db.example.com:5432").unwrap();
    let text = e.to_string();
    assert!(
        text.contains("certificate of db.example.com:5432"),
        "{text}"
    );
    assert!(text.contains("sslrootcert"), "{text}");

    let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    assert!(tls_failure(&Driver(plain), "h:1").is_none());
}
