//! Azure Blob Storage: the account and credentials behind `az://` URLs.
//!
//! `object_store` reads the `AZURE_*` variables itself (account name and
//! key, client secret, managed identity, `AZURE_STORAGE_USE_EMULATOR`), but
//! not the connection strings that the Azure portal and Azure Functions hand
//! out, so those are parsed here.

use super::StorageError;
use object_store::azure::AzureConfigKey::Client;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
use std::time::Duration;

/// The variable that holds a storage connection string.
pub const CONNECTION_STRING_VAR: &str = "AZURE_STORAGE_CONNECTION_STRING";

/// The account and key every Azurite instance accepts (public, documented).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// What a connection string says, reduced to what the client needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Connection {
    /// `UseDevelopmentStorage=true`: Azurite on its default address (or
    /// `AZURITE_BLOB_STORAGE_URL`).
    Emulator,
    /// An account, its blob endpoint and a key or SAS.
    Account {
        /// Storage account name.
        name: String,
        /// Blob service URL (`BlobEndpoint`, or built from the protocol and
        /// endpoint suffix).
        endpoint: String,
        /// Shared key.
        key: Option<String>,
        /// Shared access signature (without the leading `?`).
        sas: Option<String>,
    },
}

/// Parses an Azure Storage connection string (`Key=Value;…`, keys
/// case-insensitive). Errors name the key at fault, never a secret.
pub fn parse_connection_string(text: &str) -> Result<Connection, String> {
    let mut fields = std::collections::HashMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        // Values (keys, SAS tokens) may contain '=': split at the first one.
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "connection string part without '=' ({} chars)",
                part.len()
            ));
        };
        fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    if fields
        .get("usedevelopmentstorage")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(Connection::Emulator);
    }
    let name = fields
        .remove("accountname")
        .filter(|n| !n.is_empty())
        .ok_or("connection string has no AccountName")?;
    let key = fields.remove("accountkey").filter(|k| !k.is_empty());
    let sas = fields
        .remove("sharedaccesssignature")
        .map(|s| s.trim_start_matches('?').to_owned())
        .filter(|s| !s.is_empty());
    if key.is_none() && sas.is_none() {
        return Err("connection string has neither AccountKey nor SharedAccessSignature".into());
    }
    let endpoint = match fields.remove("blobendpoint") {
        Some(e) if !e.is_empty() => e.trim_end_matches('/').to_owned(),
        _ => {
            let protocol = fields
                .remove("defaultendpointsprotocol")
                .unwrap_or_else(|| "https".into())
                .to_ascii_lowercase();
            if protocol != "https" && protocol != "http" {
                return Err(format!(
                    "DefaultEndpointsProtocol {protocol:?} is not http or https"
                ));
            }
            let suffix = fields
                .remove("endpointsuffix")
                .unwrap_or_else(|| "core.windows.net".into());
            format!("{protocol}://{name}.blob.{suffix}")
        }
    };
    url::Url::parse(&endpoint).map_err(|e| format!("BlobEndpoint is not a URL: {e}"))?;
    Ok(Connection::Account {
        name,
        endpoint,
        key,
        sas,
    })
}

/// Retries for transient failures (refused or dropped connections, 5xx,
/// throttling): a few quick tries, bounded in time, so an unreachable
/// storage is reported within seconds rather than minutes.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
    }
}

/// The client for `container`, with credentials from the environment.
pub fn open(container: &str) -> Result<MicrosoftAzure, StorageError> {
    let bad = |why: String| StorageError::Setup {
        url: format!("az://{container}"),
        why,
    };
    let mut builder = MicrosoftAzureBuilder::from_env();
    // Set but empty (an app setting left blank) counts as unset.
    if let Ok(text) = std::env::var(CONNECTION_STRING_VAR).map(|t| t.trim().to_owned())
        && !text.is_empty()
    {
        builder = match parse_connection_string(&text)
            .map_err(|e| bad(format!("{CONNECTION_STRING_VAR}: {e}")))?
        {
            Connection::Emulator => builder
                .with_use_emulator(true)
                .with_account(EMULATOR_ACCOUNT),
            Connection::Account {
                name,
                endpoint,
                key,
                sas,
            } => {
                let http = endpoint.starts_with("http://");
                let mut b = builder
                    .with_use_emulator(false)
                    .with_account(name)
                    .with_endpoint(endpoint)
                    .with_allow_http(http);
                if let Some(key) = key {
                    b = b.with_access_key(key);
                }
                if let Some(sas) = sas {
                    b = b.with_config(object_store::azure::AzureConfigKey::SasKey, sas);
                }
                b
            }
        };
    }
    builder
        .with_container_name(container)
        .with_retry(retry())
        .with_http_connector(super::resend::Connector)
        .with_config(Client(ClientConfigKey::ConnectTimeout), "5 seconds")
        // Whole-request bound; reads that stop resume from where they
        // stopped, so long downloads are not cut.
        .with_config(Client(ClientConfigKey::Timeout), "120 seconds")
        .build()
        .map_err(|e| {
            let why = e.to_string();
            match why.contains("Account must be specified") {
                true => bad(format!(
                    "no storage account: set {CONNECTION_STRING_VAR}, or \
                     AZURE_STORAGE_ACCOUNT_NAME (with a key, a SAS or an identity), or \
                     AZURE_STORAGE_USE_EMULATOR=true"
                )),
                false => bad(why),
            }
        })
}

/// Whether `name` is a valid container name: 3–63 characters, lowercase
/// letters, digits and single hyphens, starting and ending with a letter or
/// digit.
pub fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_storage() {
        assert_eq!(
            parse_connection_string("UseDevelopmentStorage=true"),
            Ok(Connection::Emulator)
        );
        assert_eq!(
            parse_connection_string("usedevelopmentstorage=TRUE;"),
            Ok(Connection::Emulator)
        );
    }

    #[test]
    fn account_with_blob_endpoint_and_key_containing_equals() {
        let c = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
             AccountKey=abc+/def==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .unwrap();
        assert_eq!(
            c,
            Connection::Account {
                name: "devstoreaccount1".into(),
                endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
                key: Some("abc+/def==".into()),
                sas: None,
            }
        );
    }

    #[test]
    fn account_endpoint_from_protocol_and_suffix() {
        let c = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=hrdata;AccountKey=k==;\
             EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        let Connection::Account { endpoint, .. } = c else {
            panic!("not an account: {c:?}");
        };
        assert_eq!(endpoint, "https://hrdata.blob.core.chinacloudapi.cn");
        let c = parse_connection_string("AccountName=hrdata;SharedAccessSignature=?sv=1&sig=x%3D")
            .unwrap();
        assert_eq!(
            c,
            Connection::Account {
                name: "hrdata".into(),
                endpoint: "https://hrdata.blob.core.windows.net".into(),
                key: None,
                sas: Some("sv=1&sig=x%3D".into()),
            }
        );
    }

    #[test]
    fn bad_connection_strings_say_what_is_missing_without_secrets() {
        for (text, expect) in [
            ("AccountKey=secret==", "no AccountName"),
            ("AccountName=a", "neither AccountKey"),
            (
                "AccountName=a;AccountKey=secret;BlobEndpoint=not a url",
                "not a URL",
            ),
            (
                "AccountName=a;AccountKey=secret;DefaultEndpointsProtocol=ftp",
                "not http",
            ),
            ("AccountName=a;secretwithoutequals", "without '='"),
            ("", "no AccountName"),
        ] {
            let e = parse_connection_string(text).unwrap_err();
            assert!(e.contains(expect), "{text:?}: {e}");
            assert!(!e.contains("secret"), "{text:?} leaks: {e}");
        }
    }

    #[test]
    fn container_names() {
        for ok in ["abc", "hr-data", "a1b2c3", &"a".repeat(63)] {
            assert!(valid_container(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Hr",
            "hr_data",
            "-hr",
            "hr-",
            "h--r",
            &"a".repeat(64),
            "hr data",
        ] {
            assert!(!valid_container(bad), "{bad}");
        }
    }
}
