//! TLS for PostgreSQL connections, with libpq's `sslmode` and `sslrootcert`.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require`, which say
//! whether to ask for TLS, and leaves every certificate check to the TLS
//! connector it is given. So both parameters are taken out of the connection
//! string here (URL query or `key=value` keyword form), tokio-postgres is told
//! only whether to ask for TLS and whether to insist, and the rustls
//! connector gets a verifier that checks what libpq's mode promises:
//!
//! | sslmode | TLS | certificate chain | host name |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (default) | when the server offers it | not checked | not checked |
//! | `require` | always | checked only with an `sslrootcert` file (as libpq) | not checked |
//! | `verify-ca` | always | checked | not checked |
//! | `verify-full` | always | checked | checked |
//!
//! Certificates are checked against the `sslrootcert` file, or else against
//! the system's roots plus the well-known public roots (so a managed server
//! such as Azure Database for PostgreSQL verifies with no file at all).
//! Everything here is decided when the store opens: a bad mode or an
//! unreadable file is an error before any connection is tried.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, no certificate check.
    Prefer,
    /// TLS always, no certificate check unless a root file is given.
    Require,
    /// TLS always, the certificate chain checked, not the host name.
    VerifyCa,
    /// TLS always, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, TlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::UnknownMode(other.to_owned())),
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What is wrong with a connection string's TLS settings, or with the
/// server's certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `sslmode` has a value libpq does not define.
    #[error("unknown sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    UnknownMode(String),
    /// The `sslrootcert` file cannot be read or holds no certificate.
    #[error("sslrootcert={path}: {reason}")]
    RootCert {
        /// The file as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// `sslrootcert=system` with a mode that would not check the host name
    /// (libpq refuses this too: the public roots vouch for names only).
    #[error("sslmode={0} may not be used with sslrootcert=system (use verify-full)")]
    WeakModeWithSystemRoots(&'static str),
    /// The server's certificate did not verify.
    #[error("the server certificate of {server} did not verify: {problem}; {hint}")]
    Certificate {
        /// `host:port` as the connection string names it.
        server: String,
        /// What is wrong with the certificate.
        problem: String,
        /// What to change.
        hint: &'static str,
    },
    /// The crypto provider offers no TLS version rustls accepts (a build
    /// problem, not a setting).
    #[error("TLS cannot be set up: {0}")]
    Provider(String),
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS with {server} failed: {reason}")]
    Handshake {
        /// `host:port` as the connection string names it.
        server: String,
        /// rustls' account of it.
        reason: String,
    },
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The system's roots plus the well-known public ones.
    Default,
    /// `sslrootcert=system`: the same roots, said explicitly.
    System,
    /// `sslrootcert=PATH`: only the certificates in this PEM file.
    File(PathBuf),
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing but the handshake signatures (libpq's `prefer`, `require`).
    Nothing,
    /// The chain up to a trusted root, whatever name it was issued for.
    Chain,
    /// The chain and the host name.
    ChainAndName,
}

/// The TLS settings of one connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    mode: SslMode,
    roots: Roots,
}

impl TlsSettings {
    /// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query
    /// or a keyword string, and returns the rest for tokio-postgres to
    /// parse (it would refuse `sslrootcert` and the `verify-*` modes).
    pub fn take(conninfo: &str) -> Result<(String, TlsSettings), TlsError> {
        let (rest, params) = if is_url(conninfo) {
            take_from_url(conninfo)
        } else {
            take_from_keywords(conninfo)
        };
        let mut mode = None;
        let mut roots = Roots::Default;
        // As in libpq, a parameter given twice counts as its last value.
        for (key, value) in params {
            match key {
                Param::Mode => mode = Some(SslMode::parse(&value)?),
                Param::RootCert if value == "system" => roots = Roots::System,
                Param::RootCert => roots = Roots::File(PathBuf::from(value)),
            }
        }
        let mode = match (mode, &roots) {
            (None, Roots::System) => SslMode::VerifyFull,
            (Some(m), Roots::System) if m != SslMode::VerifyFull => {
                return Err(TlsError::WeakModeWithSystemRoots(m.name()));
            }
            (m, _) => m.unwrap_or(SslMode::Prefer),
        };
        Ok((rest, TlsSettings { mode, roots }))
    }

    /// The mode to give tokio-postgres: whether to ask for TLS and whether
    /// to insist on it.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self.mode {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }

    fn check(&self) -> Check {
        match (self.mode, &self.roots) {
            (SslMode::Disable | SslMode::Prefer, _) => Check::Nothing,
            // libpq: "if a root CA file exists, the behavior of
            // sslmode=require will be the same as that of verify-ca".
            (SslMode::Require, Roots::File(_)) | (SslMode::VerifyCa, _) => Check::Chain,
            (SslMode::Require, _) => Check::Nothing,
            (SslMode::VerifyFull, _) => Check::ChainAndName,
        }
    }

    /// The connector for these settings. Reads the `sslrootcert` file
    /// whatever the mode: a file named but unusable is a mistake to report,
    /// not to pass over.
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let file_roots = match &self.roots {
            Roots::File(path) => Some(read_roots(path)?),
            Roots::Default | Roots::System => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match self.check() {
            Check::Nothing => Arc::new(Lenient {
                provider: provider.clone(),
                chain: None,
            }),
            check => {
                let roots = file_roots.unwrap_or_else(default_roots);
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::RootCert {
                            path: self.roots_path(),
                            reason: e.to_string(),
                        })?;
                if check == Check::Chain {
                    Arc::new(Lenient {
                        provider: provider.clone(),
                        chain: Some(webpki),
                    })
                } else {
                    webpki
                }
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Provider(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What PostgreSQL 17 expects of a client; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots_path(&self) -> PathBuf {
        match &self.roots {
            Roots::File(p) => p.clone(),
            Roots::Default | Roots::System => PathBuf::from("system"),
        }
    }
}

/// The `host:port` pairs of a configuration, for messages.
pub fn server_names(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    // The certificate is checked against `host`; `hostaddr` only says
    // where to connect, so it names the server only when `host` is absent.
    let names: Vec<String> = if config.get_hosts().is_empty() {
        (config.get_hostaddrs().iter().enumerate())
            .map(|(i, addr)| format!("{addr}:{}", port(i)))
            .collect()
    } else {
        (config.get_hosts().iter().enumerate())
            .map(|(i, host)| match host {
                Host::Tcp(h) => format!("{h}:{}", port(i)),
                #[cfg(unix)]
                Host::Unix(p) => p.display().to_string(),
            })
            .collect()
    };
    names.join(", ")
}

/// The TLS failure behind a failed connection to `server`, if that is why
/// it failed. Such a failure is not transient: trying again meets the same
/// certificate.
pub fn tls_failure(error: &(dyn std::error::Error + 'static), server: &str) -> Option<TlsError> {
    let mut source = Some(error);
    while let Some(e) = source {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(e) = rustls_error {
            return Some(describe(e, server));
        }
        source = e.source();
    }
    None
}

fn describe(e: &rustls::Error, server: &str) -> TlsError {
    let server = server.to_owned();
    let rustls::Error::InvalidCertificate(c) = e else {
        return TlsError::Handshake {
            server,
            reason: e.to_string(),
        };
    };
    let (problem, hint) = match c {
        CertificateError::UnknownIssuer => (
            "it is not signed by a trusted certificate authority".to_owned(),
            "set sslrootcert=PATH to the CA that signed it",
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
            c.to_string(),
            "connect with a host name the certificate names, or use sslmode=verify-ca",
        ),
        other => (
            other.to_string(),
            "check the server's certificate and the sslrootcert file",
        ),
    };
    TlsError::Certificate {
        server,
        problem,
        hint,
    }
}

fn read_roots(path: &PathBuf) -> Result<RootCertStore, TlsError> {
    let bad = |reason: String| TlsError::RootCert {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("is not a PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("holds a certificate that cannot be used: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// The system's roots (those it can parse) plus the well-known public ones,
/// so that a system without a CA bundle still verifies managed servers.
fn default_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system root certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// `ServerCertVerifier`'s signature methods, each the `rustls::crypto`
/// function of the same name with the provider's algorithms.
macro_rules! signature_checks {
    ($($check:ident),*) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $check(message, cert, dss, &self.provider.signature_verification_algorithms)
        }
    )*};
}

/// The checks of libpq's weaker modes, which still make the server prove
/// that it holds its certificate's key: `prefer` and `require` check no
/// certificate (`chain` is `None`); `verify-ca` checks that the chain leads
/// to a trusted root, whatever the name. webpki checks the chain before the
/// name, so a name mismatch is the only failure that means the chain was
/// good.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    // The handshake signatures are checked as rustls checks them, with the
    // provider's algorithms: one method per TLS version, written once.
    signature_checks!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A parameter handled here rather than by tokio-postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Mode,
    RootCert,
}

impl Param {
    fn of(key: &str) -> Option<Param> {
        match key {
            "sslmode" => Some(Param::Mode),
            "sslrootcert" => Some(Param::RootCert),
            _ => None,
        }
    }
}

fn is_url(conninfo: &str) -> bool {
    conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://")
}

/// Keywords that may open a libpq keyword string (`host=… dbname=…`).
const KEYWORDS: [&str; 12] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "application_name",
    "options",
    "connect_timeout",
    "target_session_attrs",
];

/// Whether `conninfo` is a libpq keyword string: it parses as
/// `key=value` pairs and its first key is a libpq keyword (an ADO.NET string
/// opens with `Server=`, which is not).
pub fn is_keyword_form(conninfo: &str) -> bool {
    parse_keywords(conninfo)
        .ok()
        .and_then(|pairs| pairs.into_iter().next())
        .is_some_and(|(key, _)| KEYWORDS.contains(&key.as_str()))
}

fn take_from_url(url: &str) -> (String, Vec<(Param, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match Param::of(key) {
            Some(param) => {
                let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                taken.push((param, value.into_owned()));
            }
            None => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// Splits a keyword string. One that does not parse is left whole for
/// tokio-postgres to refuse with its own message.
fn take_from_keywords(conninfo: &str) -> (String, Vec<(Param, String)>) {
    let Ok(pairs) = parse_keywords(conninfo) else {
        return (conninfo.to_owned(), Vec::new());
    };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for (key, value) in pairs {
        match Param::of(&key) {
            Some(param) => taken.push((param, value)),
            None => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    (kept.join(" "), taken)
}

/// libpq's keyword grammar: `key = value` pairs separated by white space;
/// a value is single-quoted or runs to the next white space, and a
/// backslash escapes the character after it.
fn parse_keywords(s: &str) -> Result<Vec<(String, String)>, ()> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return Err(());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(()),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or(())?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or(())?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests;
