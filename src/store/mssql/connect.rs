//! Connecting to SQL Server: the URL or ADO.NET string, the login (a
//! password or a Microsoft Entra ID token) and the pool's manager.

use super::super::StoreError;
use super::{Conn, ado, entra};
use azure_core::credentials::Secret;
use std::sync::Arc;
use std::time::Duration;
use tiberius::{Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

/// The longest wait for the server to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per process unless the URL says otherwise: an Azure SQL
/// Basic database allows 30 concurrent workers for every instance together.
const DEFAULT_POOL: u32 = 10;
/// Makes connections for the pool, following Azure's redirect; with an
/// Entra ID login, asks for a token before each one.
pub(super) struct Manager {
    pub(super) config: Config,
    pub(super) tokens: Option<Arc<entra::TokenSource>>,
}

/// Why the pool could not open a connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    /// SQL Server refused or could not be reached.
    #[error(transparent)]
    Sql(#[from] tiberius::error::Error),
    /// No token for the Entra ID login; no connection was tried.
    #[error(transparent)]
    Token(#[from] entra::EntraError),
}

impl From<ConnectError> for StoreError {
    fn from(e: ConnectError) -> StoreError {
        match e {
            ConnectError::Sql(e) => StoreError::from(e),
            ConnectError::Token(e) => StoreError::Entra(e),
        }
    }
}

/// The configuration of one login: `base` with the token. The token is
/// asked for per connection (from the credential's cache), so that a
/// connection opened hours after start-up logs in with a fresh one.
fn login_config(base: &Config, token: &Secret) -> Config {
    let mut config = base.clone();
    config.authentication(tiberius::AuthMethod::aad_token(token.secret()));
    config
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ConnectError;

    async fn connect(&self) -> Result<Conn, ConnectError> {
        let config = match &self.tokens {
            Some(tokens) => login_config(&self.config, &tokens.token().await?),
            None => self.config.clone(),
        };
        let mut conn = connect(config).await?;
        // An error inside a transaction rolls it back at once, so that no
        // connection goes back to the pool with half a transaction open.
        conn.simple_query("SET XACT_ABORT ON")
            .await?
            .into_results()
            .await?;
        Ok(conn)
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        let open = conn
            .simple_query("SELECT @@TRANCOUNT")
            .await?
            .into_row()
            .await?
            .and_then(|r| r.get::<i32, _>(0))
            .unwrap_or(0);
        if open == 0 {
            Ok(())
        } else {
            Err(tiberius::error::Error::Protocol("a transaction was left open".into()).into())
        }
    }

    fn has_broken(&self, _: &mut Conn) -> bool {
        false
    }
}

/// Logs why the pool could not open a connection: bb8 retries until its
/// timeout and then reports only the timeout, so the cause (a refused
/// login, a token the identity endpoint would not give) goes to the log.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogConnectErrors;

impl bb8::ErrorSink<ConnectError> for LogConnectErrors {
    fn sink(&self, e: ConnectError) {
        tracing::warn!(error = %e, "cannot open a database connection");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<ConnectError>> {
        Box::new(*self)
    }
}

/// Connects, following up to three redirects: inside Azure, a server in
/// the Redirect policy answers the login with the address of the node
/// that holds the database (`Error::Routing`).
async fn connect(mut config: Config) -> Result<Conn, tiberius::error::Error> {
    for _ in 0..3 {
        // An address that drops packets would otherwise hold the connect
        // for the operating system's SYN timeout (minutes).
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(config.get_addr()))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer from {} within {CONNECT_TIMEOUT:?}",
                        config.get_addr()
                    ),
                )
            })??;
        tcp.set_nodelay(true)?;
        match Client::connect(config.clone(), tcp.compat_write()).await {
            Err(tiberius::error::Error::Routing { host, port }) => {
                config.host(&host);
                config.port(port);
            }
            other => return other,
        }
    }
    Err(tiberius::error::Error::Protocol(
        "the server redirected the connection more than three times".into(),
    ))
}

/// Whether a URL names SQL Server: `mssql://`, `sqlserver://`, or an
/// ADO.NET connection string (`Server=…;Database=…;…`).
pub fn is_mssql_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("mssql://")
        || lower.starts_with("sqlserver://")
        || ((lower.starts_with("server=") || lower.starts_with("data source="))
            && lower.contains(';'))
}

/// What a database URL says: the connection, the pool size, whether loads
/// use bulk copy, and an Entra ID login if it asks for one.
pub(super) struct Target {
    pub config: Config,
    pub pool: u32,
    pub bulk: bool,
    pub login: Option<entra::Login>,
}

/// The ADO.NET keywords of the user and password (as tiberius reads them).
const ADO_USER: [&str; 4] = ["user id", "uid", "user", "username"];
const ADO_PASSWORD: [&str; 2] = ["password", "pwd"];

/// The tiberius configuration, pool size and login of a URL.
///
/// `mssql://USER:PASSWORD@HOST[:PORT]/DATABASE?encrypt=true|false|strict&
/// trust_server_certificate=true&pool_size=N&application_name=…&bulk=false&
/// authentication=…&user_id=…&tenant_id=…`, or an ADO.NET string as the
/// Azure portal shows it (`Max Pool Size` sets the pool there,
/// `Authentication=Active Directory …` an Entra ID login). Encryption is
/// required unless the URL says otherwise.
pub(super) fn parse_url(url: &str) -> Result<Target, StoreError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("mssql://") || lower.starts_with("sqlserver://") {
        parse_mssql_url(url)
    } else {
        parse_ado(url)
    }
}

fn parse_ado(url: &str) -> Result<Target, StoreError> {
    let bad = || StoreError::BadUrl(super::super::redact(url));
    let pairs = ado::pairs(url);
    let value = |keys: &[&str]| {
        pairs
            .iter()
            .rev()
            .find(|p| keys.contains(&p.key.as_str()))
            .map(|p| p.value.clone())
            .filter(|v| !v.is_empty())
    };
    let mut pool = DEFAULT_POOL;
    if let Some(v) = value(&["max pool size"]) {
        pool = v.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    }
    let method = match value(&["authentication"]) {
        Some(v) => entra::Method::from_ado(&v)?,
        None => None,
    };
    let login = match method {
        None => None,
        Some(method) => Some(login(
            method,
            value(&ADO_USER),
            value(&ADO_PASSWORD).map(Secret::new),
            value(&["tenant id"]),
        )?),
    };
    if login.is_none() && value(&["tenant id"]).is_some() {
        return Err(tenant_without_entra());
    }
    // tiberius reads User ID and Password as a SQL login; an Entra ID login
    // keeps them (client id and secret) away from it.
    let entra = login.is_some();
    let rest = ado::without(url, |k| {
        k == "authentication"
            || k == "tenant id"
            || (entra && (ADO_USER.contains(&k) || ADO_PASSWORD.contains(&k)))
    });
    let config = Config::from_ado_string(&rest).map_err(|_| bad())?;
    Ok(Target {
        config,
        pool,
        bulk: true,
        login,
    })
}

/// An Entra ID login; a password only goes with a service principal.
fn login(
    method: entra::Method,
    user_id: Option<String>,
    secret: Option<Secret>,
    tenant: Option<String>,
) -> Result<entra::Login, StoreError> {
    if secret.is_some() && method != entra::Method::ServicePrincipal {
        return Err(entra::EntraError::Setting {
            credential: "Entra ID login",
            problem: "a password is only used with Active Directory Service Principal \
                      (service_principal): remove it"
                .into(),
        }
        .into());
    }
    Ok(entra::Login {
        method,
        user_id,
        secret,
        tenant,
    })
}

fn tenant_without_entra() -> StoreError {
    entra::EntraError::Setting {
        credential: "SQL login",
        problem: "a tenant or user_id only goes with an Entra ID login (Authentication=Active \
                  Directory …, authentication= in a URL)"
            .into(),
    }
    .into()
}

fn parse_mssql_url(url: &str) -> Result<Target, StoreError> {
    let bad = || StoreError::BadUrl(super::super::redact(url));
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    let mut config = Config::new();
    config.host(parsed.host_str().ok_or_else(bad)?);
    config.port(parsed.port().unwrap_or(1433));
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        config.database(decode(database));
    }
    config.application_name("hrmig");
    config.encryption(EncryptionLevel::Required);
    let mut pool = DEFAULT_POOL;
    let mut bulk = true;
    let mut method = None;
    let mut user_id = Some(decode(parsed.username())).filter(|u| !u.is_empty());
    let mut tenant = None;
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "encrypt" => config.encryption(match v.as_ref() {
                "true" => EncryptionLevel::Required,
                "strict" => EncryptionLevel::Strict,
                "false" => EncryptionLevel::Off,
                "DANGER_PLAINTEXT" => EncryptionLevel::NotSupported,
                _ => return Err(bad()),
            }),
            "trust_server_certificate" if v == "true" => config.trust_cert(),
            "trust_server_certificate" if v == "false" => {}
            "pool_size" => pool = v.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?,
            "application_name" => config.application_name(v),
            "bulk" if v == "true" || v == "false" => bulk = v == "true",
            "authentication" => method = Some(entra::Method::from_url(&v)?),
            "user_id" if !v.is_empty() => user_id = Some(v.into_owned()),
            "tenant_id" if !v.is_empty() => tenant = Some(v.into_owned()),
            _ => return Err(bad()),
        }
    }
    let password = parsed.password().map(decode);
    let method = method.flatten();
    if method.is_none() && (tenant.is_some() || parsed.query_pairs().any(|(k, _)| k == "user_id")) {
        return Err(tenant_without_entra());
    }
    let login = match method {
        Some(method) => Some(login(method, user_id, password.map(Secret::new), tenant)?),
        None => {
            if let Some(user) = user_id {
                config.authentication(tiberius::AuthMethod::sql_server(
                    user,
                    password.unwrap_or_default(),
                ));
            }
            None
        }
    };
    Ok(Target {
        config,
        pool,
        bulk,
        login,
    })
}

/// A percent-decoded URL part (user names and passwords may hold
/// reserved characters).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub(super) fn pool_error(e: bb8::RunError<ConnectError>) -> StoreError {
    match e {
        bb8::RunError::User(e) => e.into(),
        bb8::RunError::TimedOut => {
            StoreError::Unavailable("no database connection within the timeout".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_ado_strings_configure_the_connection() {
        let t = parse_url(
            "mssql://hr%40app:p%3Bss@db.example.com:14330/hr?encrypt=true&pool_size=5&bulk=false",
        )
        .unwrap();
        assert_eq!(t.config.get_addr(), "db.example.com:14330");
        assert_eq!((t.pool, t.bulk), (5, false));
        assert!(t.login.is_none());
        let t = parse_url(
            "Server=tcp:srv.database.windows.net,1433;Database=hr;User ID=app;Password=x;\
             Encrypt=true;TrustServerCertificate=false;Max Pool Size=7",
        )
        .unwrap();
        assert_eq!(t.config.get_addr(), "srv.database.windows.net:1433");
        assert_eq!(t.pool, 7);
        assert!(t.login.is_none());
        let t = parse_url("mssql://u:p@h/db").unwrap();
        assert_eq!((t.pool, t.bulk), (DEFAULT_POOL, true));
        for bad in [
            "mssql://u:p@h/db?encrypt=maybe",
            "mssql://u:p@h/db?pool_size=0",
            "mssql://u:p@h/db?colour=blue",
            "mssql://u:p@h/db?bulk=yes",
            "mssql:///db",
            "Server=tcp:h,1433;Max Pool Size=none",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        // A refused ADO.NET string is not echoed when it holds a password.
        let message = parse_url("Server=tcp:h,1433;UID=u;PWD=s3cret;Max Pool Size=0")
            .err()
            .unwrap()
            .to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(is_mssql_url("Server=tcp:x,1433;Database=y"));
        assert!(is_mssql_url("mssql://h/db") && is_mssql_url("sqlserver://h/db"));
        assert!(!is_mssql_url("postgres://h/db") && !is_mssql_url("sqlite://x.db"));
        assert_eq!(decode("a%40b%3Bc"), "a@b;c");
        assert_eq!(decode("100%"), "100%");
    }

    fn login_of(url: &str) -> entra::Login {
        parse_url(url).unwrap().login.unwrap()
    }

    #[test]
    fn entra_logins_in_both_forms() {
        use entra::Method;
        for (url, method, user) in [
            (
                "mssql://srv.database.windows.net/hr?authentication=managed_identity",
                Method::ManagedIdentity,
                None,
            ),
            (
                "mssql://srv/hr?authentication=managed_identity&user_id=uami-client",
                Method::ManagedIdentity,
                Some("uami-client"),
            ),
            (
                "mssql://uami-client@srv/hr?authentication=default",
                Method::Default,
                Some("uami-client"),
            ),
            (
                "mssql://srv/hr?authentication=workload_identity",
                Method::WorkloadIdentity,
                None,
            ),
            (
                "Server=tcp:srv,1433;Database=hr;Authentication=Active Directory Managed Identity",
                Method::ManagedIdentity,
                None,
            ),
            (
                "Server=tcp:srv,1433;Database=hr;Authentication=\"Active Directory MSI\";\
                 User Id=uami-client",
                Method::ManagedIdentity,
                Some("uami-client"),
            ),
            (
                "Server=tcp:srv,1433;Authentication=Active Directory Default",
                Method::Default,
                None,
            ),
            (
                "Server=tcp:srv,1433;Authentication=Active Directory Workload Identity;UID=c",
                Method::WorkloadIdentity,
                Some("c"),
            ),
        ] {
            let login = login_of(url);
            assert_eq!(login.method, method, "{url}");
            assert_eq!(login.user_id.as_deref(), user, "{url}");
            assert!(login.secret.is_none() && login.tenant.is_none(), "{url}");
        }
        for url in [
            "mssql://app-id:s%3Bcret@srv/hr?authentication=service_principal&tenant_id=t1",
            "Server=tcp:srv,1433;Database=hr;Authentication=Active Directory Service Principal;\
             User ID=app-id;Password='s;cret';Tenant ID=t1",
        ] {
            let t = parse_url(url).unwrap();
            let login = t.login.as_ref().unwrap();
            assert_eq!(login.method, Method::ServicePrincipal, "{url}");
            assert_eq!(login.user_id.as_deref(), Some("app-id"));
            assert_eq!(login.secret.as_ref().map(Secret::secret), Some("s;cret"));
            assert_eq!(login.tenant.as_deref(), Some("t1"));
            // tiberius is not given the client id and secret as a SQL login.
            let shown = format!("{:?}", t.config);
            assert!(!shown.contains("app-id"), "{shown}");
            assert!(!format!("{login:?}").contains("s;cret"));
        }
        // An explicit SQL login stays one.
        let t = parse_url("Server=tcp:srv,1433;Authentication=SqlPassword;User ID=u;Password=p")
            .unwrap();
        assert!(t.login.is_none());
        assert!(format!("{:?}", t.config).contains("SqlServer"));
    }

    #[test]
    fn unknown_or_misplaced_entra_settings_are_refused() {
        for url in [
            "mssql://srv/hr?authentication=password",
            "Server=tcp:srv,1433;Authentication=Active Directory Password;User ID=u;Password=p",
            "Server=tcp:srv,1433;Authentication=Active Directory Interactive",
        ] {
            let message = parse_url(url).err().unwrap().to_string();
            assert!(
                message.contains("unknown Authentication value"),
                "{message}"
            );
            assert!(
                message.contains("Active Directory Managed Identity"),
                "{message}"
            );
            assert!(
                message.contains("managed_identity|service_principal"),
                "{message}"
            );
            assert!(!message.contains("Password=p"), "{message}");
        }
        for url in [
            "mssql://c:s3cret@srv/hr?authentication=managed_identity",
            "Server=tcp:srv,1433;Authentication=Active Directory Default;PWD=s3cret",
            "mssql://u:p@srv/hr?tenant_id=t",
            "mssql://u:p@srv/hr?user_id=c",
            "Server=tcp:srv,1433;User ID=u;Password=p;Tenant ID=t",
        ] {
            let message = parse_url(url).err().unwrap().to_string();
            assert!(message.starts_with("Microsoft Entra ID: "), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn the_login_config_carries_the_token_and_debug_does_not_show_it() {
        let t = parse_url("mssql://srv/hr?authentication=managed_identity").unwrap();
        let config = login_config(&t.config, &Secret::new("eyJ0eXAi.token-value"));
        let shown = format!("{config:?}");
        assert!(shown.contains("auth: AADToken("), "{shown}");
        assert!(!shown.contains("token-value"), "{shown}");
        assert_eq!(config.get_addr(), t.config.get_addr());
        // The base keeps no token: each connection gets the current one.
        assert!(format!("{:?}", t.config).contains("auth: None"));
        let manager = Manager {
            config,
            tokens: None,
        };
        assert!(!format!("{:?}", manager.config).contains("token-value"));
    }
}
