//! Microsoft Entra ID logins to Azure SQL: no password in the connection
//! string, an access token for `https://database.windows.net/` instead.
//!
//! [`Login`] is what a connection string asks for (`Authentication=Active
//! Directory …` or `authentication=…` in a URL); [`TokenSource`] turns it into
//! one credential of the `azure_identity` crate and asks that credential for a
//! token before every new connection. The credentials cache their token and
//! fetch a new one within five minutes of its expiry, so a connection the pool
//! opens hours after start-up logs in with a valid token; every request is
//! bounded by a wait (10 s unless `HRMIG_TOKEN_TIMEOUT_MS` says otherwise), so
//! an identity endpoint that never answers fails fast with a message naming
//! the credential.
//!
//! Tokens and secrets are held as [`Secret`]s, whose `Debug` prints nothing;
//! no error of this module carries one.

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, FixedRetryOptions, RetryOptions};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The scope of Azure SQL tokens: the resource `https://database.windows.net/`
/// followed by `/.default` (hence the double slash).
pub const SCOPE: &str = "https://database.windows.net//.default";

/// How long one token request may take unless `HRMIG_TOKEN_TIMEOUT_MS` says
/// otherwise: App Service's endpoint answers in milliseconds; a VM's metadata
/// service that has not answered in 10 s is not going to help a login.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The accepted values, for error messages.
const ACCEPTED: &str = "Active Directory Managed Identity (alias Active Directory MSI), \
     Active Directory Service Principal, Active Directory Workload Identity, \
     Active Directory Default or Sql Password; in a mssql:// URL authentication=\
     managed_identity|service_principal|workload_identity|default|sql_password";

/// Where a credential reads its settings: the process environment in
/// production, a table in tests (the process environment is shared by every
/// test of a binary). Returns `None` for a variable that is unset or empty.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as an [`Env`].
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// Errors of Entra ID logins. None carries a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// The `Authentication` value is not one hrmig knows.
    #[error("unknown Authentication value {0:?}: use {ACCEPTED}")]
    UnknownMethod(String),
    /// A setting the credential needs is missing or wrong.
    #[error("{credential}: {problem}")]
    Setting {
        /// The credential.
        credential: &'static str,
        /// What is missing and where to put it.
        problem: String,
    },
    /// The identity service did not answer within the wait.
    #[error(
        "{credential} did not answer within {} s: {fix}",
        wait.as_secs_f64()
    )]
    NoAnswer {
        /// Which credential, and where its endpoint came from.
        credential: String,
        /// The wait.
        wait: Duration,
        /// What to check.
        fix: &'static str,
    },
    /// The identity service refused the token request or could not be asked.
    #[error("{credential} failed{}: {cause}; {fix}", status.map(|s| format!(" with HTTP {s}")).unwrap_or_default())]
    Failed {
        /// Which credential, and where its endpoint came from.
        credential: String,
        /// The HTTP status of the answer, if there was one.
        status: Option<u16>,
        /// What the credential said (no token, no secret).
        cause: String,
        /// What to check.
        fix: &'static str,
    },
}

/// The Entra ID login methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The app's managed identity (App Service / Functions endpoint, or a
    /// VM's metadata service).
    ManagedIdentity,
    /// An app registration's client id and secret.
    ServicePrincipal,
    /// A federated token file (Kubernetes workload identity).
    WorkloadIdentity,
    /// The first of environment, workload identity and managed identity
    /// whose settings are present.
    Default,
}

impl Method {
    /// The method of an ADO.NET `Authentication` value; `None` for a SQL
    /// login (`Sql Password`).
    pub fn from_ado(value: &str) -> Result<Option<Method>, EntraError> {
        let words: String = value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        Ok(Some(match words.as_str() {
            "active directory managed identity" | "active directory msi" => Method::ManagedIdentity,
            "active directory service principal" => Method::ServicePrincipal,
            "active directory workload identity" => Method::WorkloadIdentity,
            "active directory default" => Method::Default,
            "sql password" | "sqlpassword" => return Ok(None),
            _ => return Err(EntraError::UnknownMethod(value.to_owned())),
        }))
    }

    /// The method of a URL's `authentication=` value; `None` for a SQL login.
    pub fn from_url(value: &str) -> Result<Option<Method>, EntraError> {
        Ok(Some(match value {
            "managed_identity" => Method::ManagedIdentity,
            "service_principal" => Method::ServicePrincipal,
            "workload_identity" => Method::WorkloadIdentity,
            "default" => Method::Default,
            "sql_password" => return Ok(None),
            _ => return Err(EntraError::UnknownMethod(value.to_owned())),
        }))
    }
}

/// An Entra ID login as a connection string asks for it.
#[derive(Clone)]
pub struct Login {
    /// How to get the token.
    pub method: Method,
    /// `User ID`: the client id of a user-assigned managed identity, of the
    /// service principal or of the workload identity.
    pub user_id: Option<String>,
    /// `Password`: the service principal's client secret.
    pub secret: Option<Secret>,
    /// `Tenant ID` (`tenant_id=` in a URL): the service principal's or
    /// workload identity's tenant; `AZURE_TENANT_ID` otherwise.
    pub tenant: Option<String>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("method", &self.method)
            .field("user_id", &self.user_id)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Gets Azure SQL tokens for one [`Login`], from a cache that the
/// credential refreshes before expiry.
pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    /// The credential, where its settings came from, and for the default
    /// chain what was skipped: named in every error.
    what: String,
    fix: &'static str,
    wait: Duration,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.what)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// A credential chosen for a login, not yet built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    ManagedIdentity {
        client_id: Option<String>,
        app_service: bool,
    },
    ServicePrincipal {
        tenant: String,
        client_id: String,
    },
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        token_file: String,
    },
}

const MI: &str = "managed identity";
const SP: &str = "service principal";
const WI: &str = "workload identity";
const MI_FIX: &str = "check that the app has a managed identity (az functionapp identity assign), \
     that a user-assigned identity's client id is the one in User ID or AZURE_CLIENT_ID, and that \
     the platform sets IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service, Functions) or the VM's \
     metadata service is reachable";
const SP_FIX: &str = "check the client id (User ID), the client secret (Password; secrets expire) \
     and the tenant (Tenant ID or AZURE_TENANT_ID)";
const WI_FIX: &str = "check the federated credential of the identity, its client id \
     (User ID or AZURE_CLIENT_ID), the tenant (AZURE_TENANT_ID) and that \
     AZURE_FEDERATED_TOKEN_FILE names a readable token file";

impl Plan {
    /// Which credential serves `login`, from the login and `env`; for
    /// [`Method::Default`] also what was skipped and why.
    pub(crate) fn choose(login: &Login, env: Env<'_>) -> Result<(Plan, Vec<String>), EntraError> {
        let tenant = || login.tenant.clone().or_else(|| env("AZURE_TENANT_ID"));
        let client = || login.user_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
        let missing = |credential, problem: &str| EntraError::Setting {
            credential,
            problem: problem.to_owned(),
        };
        let managed = || Plan::ManagedIdentity {
            client_id: client(),
            app_service: env("IDENTITY_ENDPOINT").is_some() && env("IDENTITY_HEADER").is_some(),
        };
        Ok(match login.method {
            Method::ManagedIdentity => (managed(), vec![]),
            Method::ServicePrincipal => {
                let client_id = login.user_id.clone().ok_or_else(|| {
                    missing(SP, "no client id: put it in User ID (the URL's user name)")
                })?;
                if login.secret.is_none() {
                    return Err(missing(
                        SP,
                        "no client secret: put it in Password (the URL's password)",
                    ));
                }
                let tenant = tenant().ok_or_else(|| {
                    missing(
                        SP,
                        "no tenant: add Tenant ID=<tenant id> to the connection string \
                         (tenant_id= in a URL) or set AZURE_TENANT_ID",
                    )
                })?;
                (Plan::ServicePrincipal { tenant, client_id }, vec![])
            }
            Method::WorkloadIdentity => {
                let token_file = env("AZURE_FEDERATED_TOKEN_FILE")
                    .ok_or_else(|| missing(WI, "AZURE_FEDERATED_TOKEN_FILE is not set"))?;
                let tenant = tenant()
                    .ok_or_else(|| missing(WI, "no tenant: set AZURE_TENANT_ID or Tenant ID="))?;
                let client_id = client()
                    .ok_or_else(|| missing(WI, "no client id: set AZURE_CLIENT_ID or User ID="))?;
                (
                    Plan::WorkloadIdentity {
                        tenant,
                        client_id,
                        token_file,
                    },
                    vec![],
                )
            }
            Method::Default => {
                let mut skipped = Vec::new();
                let unset = |keys: &[&'static str]| -> Vec<&'static str> {
                    keys.iter()
                        .filter(|k| env(k).is_none())
                        .copied()
                        .collect::<Vec<_>>()
                };
                let environment =
                    unset(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]);
                if environment.is_empty() {
                    let plan = Plan::ServicePrincipal {
                        tenant: env("AZURE_TENANT_ID").unwrap_or_default(),
                        client_id: env("AZURE_CLIENT_ID").unwrap_or_default(),
                    };
                    return Ok((plan, skipped));
                }
                skipped.push(format!("environment ({} not set)", environment.join(", ")));
                let workload = unset(&[
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "AZURE_TENANT_ID",
                    "AZURE_CLIENT_ID",
                ]);
                if workload.is_empty() {
                    let plan = Plan::WorkloadIdentity {
                        tenant: env("AZURE_TENANT_ID").unwrap_or_default(),
                        client_id: client().unwrap_or_default(),
                        token_file: env("AZURE_FEDERATED_TOKEN_FILE").unwrap_or_default(),
                    };
                    return Ok((plan, skipped));
                }
                skipped.push(format!(
                    "workload identity ({} not set)",
                    workload.join(", ")
                ));
                (managed(), skipped)
            }
        })
    }

    /// The credential's name as errors give it, with where its settings
    /// came from.
    fn describe(&self) -> String {
        match self {
            Plan::ManagedIdentity {
                client_id,
                app_service,
            } => {
                let endpoint = if *app_service {
                    "App Service endpoint from IDENTITY_ENDPOINT"
                } else {
                    "VM metadata service at 169.254.169.254"
                };
                match client_id {
                    Some(id) => format!("{MI} ({endpoint}, user-assigned client id {id})"),
                    None => format!("{MI} ({endpoint}, system-assigned)"),
                }
            }
            Plan::ServicePrincipal { tenant, client_id } => {
                format!("{SP} {client_id} (client secret, tenant {tenant})")
            }
            Plan::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
            } => format!("{WI} {client_id} (token file {token_file}, tenant {tenant})"),
        }
    }

    fn fix(&self) -> &'static str {
        match self {
            Plan::ManagedIdentity { .. } => MI_FIX,
            Plan::ServicePrincipal { .. } => SP_FIX,
            Plan::WorkloadIdentity { .. } => WI_FIX,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Plan::ManagedIdentity { .. } => MI,
            Plan::ServicePrincipal { .. } => SP,
            Plan::WorkloadIdentity { .. } => WI,
        }
    }

    /// Builds the `azure_identity` credential. The managed identity
    /// credential reads `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` from the
    /// process environment itself.
    fn build(
        &self,
        secret: Option<&Secret>,
        env: Env<'_>,
    ) -> Result<Arc<dyn TokenCredential>, EntraError> {
        let setup = |e: azure_core::Error| EntraError::Setting {
            credential: self.name(),
            problem: first_line(&e),
        };
        Ok(match self {
            Plan::ManagedIdentity { client_id, .. } => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options: client_options(),
                }))
                .map_err(setup)?
            }
            Plan::ServicePrincipal { tenant, client_id } => {
                let secret = secret
                    .cloned()
                    .or_else(|| env("AZURE_CLIENT_SECRET").map(Secret::new))
                    .ok_or_else(|| EntraError::Setting {
                        credential: SP,
                        problem: "no client secret".into(),
                    })?;
                ClientSecretCredential::new(
                    tenant,
                    client_id.clone(),
                    secret,
                    Some(ClientSecretCredentialOptions {
                        client_options: client_options(),
                    }),
                )
                .map_err(setup)?
            }
            Plan::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
            } => {
                let mut options = WorkloadIdentityCredentialOptions {
                    client_id: Some(client_id.clone()),
                    tenant_id: Some(tenant.clone()),
                    token_file_path: Some(token_file.into()),
                    ..Default::default()
                };
                options.credential_options.client_options = client_options();
                WorkloadIdentityCredential::new(Some(options)).map_err(setup)?
            }
        })
    }
}

/// Few, quick retries: every token request is bounded by the wait as a
/// whole, and a 5xx that outlasts two retries is worth reporting.
fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::fixed(FixedRetryOptions {
            delay: azure_core::time::Duration::milliseconds(300),
            max_retries: 2,
            max_total_elapsed: azure_core::time::Duration::seconds(5),
        }),
        ..Default::default()
    }
}

impl TokenSource {
    /// The token source of `login`, with settings from `env`. Fails when a
    /// setting the credential needs is missing; asks for no token yet.
    pub fn new(login: &Login, env: Env<'_>) -> Result<TokenSource, EntraError> {
        let wait = match env("HRMIG_TOKEN_TIMEOUT_MS") {
            None => DEFAULT_WAIT,
            Some(ms) => ms
                .trim()
                .parse()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| EntraError::Setting {
                    credential: "token request",
                    problem: format!(
                        "HRMIG_TOKEN_TIMEOUT_MS={ms:?} is not a positive number of milliseconds"
                    ),
                })?,
        };
        let (plan, skipped) = Plan::choose(login, env)?;
        let credential = plan.build(login.secret.as_ref(), env)?;
        Ok(TokenSource::with(
            credential,
            describe(&plan, &skipped),
            plan.fix(),
            wait,
        ))
    }

    /// A token source over any credential (tests use a fake one).
    pub(crate) fn with(
        credential: Arc<dyn TokenCredential>,
        what: String,
        fix: &'static str,
        wait: Duration,
    ) -> TokenSource {
        TokenSource {
            credential,
            what,
            fix,
            wait,
        }
    }

    /// The credential, as errors name it.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// A token valid for at least five more minutes: the cached one, or a
    /// new one when the cached one is that close to expiry.
    pub async fn token(&self) -> Result<Secret, EntraError> {
        let request = self.credential.get_token(&[SCOPE], None);
        match tokio::time::timeout(self.wait, request).await {
            Err(_) => Err(EntraError::NoAnswer {
                credential: self.what.clone(),
                wait: self.wait,
                fix: self.fix,
            }),
            Ok(Err(e)) => Err(EntraError::Failed {
                credential: self.what.clone(),
                status: http_status(&e),
                cause: first_line(&e),
                fix: self.fix,
            }),
            Ok(Ok(token)) => Ok(token.token),
        }
    }
}

fn describe(plan: &Plan, skipped: &[String]) -> String {
    if skipped.is_empty() {
        plan.describe()
    } else {
        format!(
            "{} chosen by Active Directory Default after skipping {}",
            plan.describe(),
            skipped.join(" and ")
        )
    }
}

/// The HTTP status of a failed token request, wherever it sits in the
/// chain of errors (the credentials wrap the pipeline's error).
fn http_status(e: &azure_core::Error) -> Option<u16> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(status) = err
            .downcast_ref::<azure_core::Error>()
            .and_then(azure_core::Error::http_status)
        {
            return Some(u16::from(status));
        }
        next = err.source();
    }
    None
}

/// What a credential's error says, in one line of at most 400 characters:
/// the first line of each error in the chain that adds something (the
/// credentials wrap the pipeline's errors, append troubleshooting links and
/// whole response bodies), without the credential's own name, which the
/// message gives already.
fn first_line(e: &azure_core::Error) -> String {
    let mut text = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let full = err.to_string();
        let line = full.lines().next().unwrap_or_default().trim();
        let line = line
            .split_once(" authentication failed.")
            .map_or(line, |(_, rest)| rest.trim_start());
        if !line.is_empty() && !text.contains(line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(line);
        }
        next = err.source();
    }
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests;
