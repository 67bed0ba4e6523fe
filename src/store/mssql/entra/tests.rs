use super::*;
use azure_core::credentials::{AccessToken, TokenRequestOptions};
use azure_core::error::ErrorKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn login(method: Method) -> Login {
    Login {
        method,
        user_id: None,
        secret: None,
        tenant: None,
    }
}

#[test]
fn authentication_values_of_both_forms() {
    for (ado, method) in [
        ("Active Directory Managed Identity", Method::ManagedIdentity),
        ("active directory  MSI", Method::ManagedIdentity),
        (
            "Active Directory Service Principal",
            Method::ServicePrincipal,
        ),
        (
            "Active Directory Workload Identity",
            Method::WorkloadIdentity,
        ),
        ("Active Directory Default", Method::Default),
    ] {
        assert_eq!(Method::from_ado(ado).unwrap(), Some(method), "{ado}");
    }
    for (url, method) in [
        ("managed_identity", Method::ManagedIdentity),
        ("service_principal", Method::ServicePrincipal),
        ("workload_identity", Method::WorkloadIdentity),
        ("default", Method::Default),
    ] {
        assert_eq!(Method::from_url(url).unwrap(), Some(method), "{url}");
    }
    assert_eq!(Method::from_ado("SqlPassword").unwrap(), None);
    assert_eq!(Method::from_url("sql_password").unwrap(), None);
    for bad in [
        "Active Directory Password",
        "Active Directory Interactive",
        "msi",
        "",
    ] {
        let message = Method::from_ado(bad).unwrap_err().to_string();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        for accepted in [
            "Active Directory Managed Identity",
            "Active Directory MSI",
            "Active Directory Service Principal",
            "Active Directory Workload Identity",
            "Active Directory Default",
            "managed_identity|service_principal|workload_identity|default",
        ] {
            assert!(message.contains(accepted), "{message}");
        }
    }
    assert!(Method::from_url("Active Directory Default").is_err());
}

#[test]
fn managed_identity_takes_its_client_id_from_the_string_then_the_environment() {
    let app = env(&[("IDENTITY_ENDPOINT", "http://x"), ("IDENTITY_HEADER", "h")]);
    let (plan, _) = Plan::choose(&login(Method::ManagedIdentity), &app).unwrap();
    assert_eq!(
        plan,
        Plan::ManagedIdentity {
            client_id: None,
            app_service: true
        }
    );
    assert_eq!(
        plan.describe(),
        "managed identity (App Service endpoint from IDENTITY_ENDPOINT, system-assigned)"
    );
    let user = env(&[("AZURE_CLIENT_ID", "from-env")]);
    let (plan, _) = Plan::choose(&login(Method::ManagedIdentity), &user).unwrap();
    assert_eq!(
        plan.describe(),
        "managed identity (VM metadata service at 169.254.169.254, user-assigned client id from-env)"
    );
    let named = Login {
        user_id: Some("from-string".into()),
        ..login(Method::ManagedIdentity)
    };
    let (plan, _) = Plan::choose(&named, &user).unwrap();
    assert!(
        matches!(plan, Plan::ManagedIdentity { client_id: Some(id), .. } if id == "from-string")
    );
}

#[test]
fn a_service_principal_needs_a_client_id_a_secret_and_a_tenant() {
    let none = env(&[]);
    let full = Login {
        user_id: Some("app-id".into()),
        secret: Some(Secret::new("s3cret-value")),
        tenant: None,
        method: Method::ServicePrincipal,
    };
    let message = Plan::choose(&full, &none).unwrap_err().to_string();
    assert!(
        message.starts_with("service principal: no tenant"),
        "{message}"
    );
    assert!(message.contains("Tenant ID") && message.contains("AZURE_TENANT_ID"));
    assert!(!message.contains("s3cret-value"));
    let tenant = env(&[("AZURE_TENANT_ID", "tenant-1")]);
    let (plan, _) = Plan::choose(&full, &tenant).unwrap();
    assert_eq!(
        plan,
        Plan::ServicePrincipal {
            tenant: "tenant-1".into(),
            client_id: "app-id".into()
        }
    );
    let in_string = Login {
        tenant: Some("tenant-2".into()),
        ..full.clone()
    };
    let (plan, _) = Plan::choose(&in_string, &tenant).unwrap();
    assert!(matches!(plan, Plan::ServicePrincipal { tenant, .. } if tenant == "tenant-2"));
    for (broken, what) in [
        (
            Login {
                user_id: None,
                ..in_string.clone()
            },
            "no client id",
        ),
        (
            Login {
                secret: None,
                ..in_string.clone()
            },
            "no client secret",
        ),
    ] {
        let message = Plan::choose(&broken, &tenant).unwrap_err().to_string();
        assert!(message.contains(what), "{message}");
    }
    // Built without asking for anything: no network here.
    let source = TokenSource::new(&in_string, &none).unwrap();
    assert_eq!(
        source.describe(),
        "service principal app-id (client secret, tenant tenant-2)"
    );
    for shown in [format!("{source:?}"), format!("{in_string:?}")] {
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }
}

#[test]
fn workload_identity_needs_the_token_file_tenant_and_client_id() {
    let message = Plan::choose(&login(Method::WorkloadIdentity), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("AZURE_FEDERATED_TOKEN_FILE is not set"),
        "{message}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "federated").unwrap();
    let file = file.to_string_lossy().into_owned();
    let pod = env(&[
        ("AZURE_FEDERATED_TOKEN_FILE", &file),
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
    ]);
    let source = TokenSource::new(&login(Method::WorkloadIdentity), &pod).unwrap();
    assert_eq!(
        source.describe(),
        format!("workload identity c (token file {file}, tenant t)")
    );
}

#[test]
fn the_default_chain_takes_the_first_credential_whose_settings_are_present() {
    let secret = env(&[
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_CLIENT_SECRET", "s3cret-value"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
    ]);
    let (plan, skipped) = Plan::choose(&login(Method::Default), &secret).unwrap();
    assert!(matches!(plan, Plan::ServicePrincipal { .. }) && skipped.is_empty());
    let source = TokenSource::new(&login(Method::Default), &secret).unwrap();
    assert!(!format!("{source:?}").contains("s3cret-value"));

    let pod = env(&[
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
    ]);
    let (plan, skipped) = Plan::choose(&login(Method::Default), &pod).unwrap();
    assert!(matches!(plan, Plan::WorkloadIdentity { .. }));
    assert_eq!(skipped, ["environment (AZURE_CLIENT_SECRET not set)"]);

    let app = env(&[("IDENTITY_ENDPOINT", "http://x"), ("IDENTITY_HEADER", "h")]);
    let (plan, skipped) = Plan::choose(&login(Method::Default), &app).unwrap();
    assert!(matches!(
        plan,
        Plan::ManagedIdentity {
            app_service: true,
            ..
        }
    ));
    assert_eq!(
        describe(&plan, &skipped),
        "managed identity (App Service endpoint from IDENTITY_ENDPOINT, system-assigned) \
         chosen by Active Directory Default after skipping environment (AZURE_TENANT_ID, \
         AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set) and workload identity \
         (AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID, AZURE_CLIENT_ID not set)"
    );
}

#[test]
fn the_wait_is_a_positive_number_of_milliseconds() {
    let l = Login {
        user_id: Some("c".into()),
        secret: Some(Secret::new("s")),
        tenant: Some("t".into()),
        method: Method::ServicePrincipal,
    };
    let source = TokenSource::new(&l, &env(&[("HRMIG_TOKEN_TIMEOUT_MS", "250")])).unwrap();
    assert_eq!(source.wait, Duration::from_millis(250));
    assert_eq!(TokenSource::new(&l, &env(&[])).unwrap().wait, DEFAULT_WAIT);
    for bad in ["0", "-1", "soon"] {
        let e = TokenSource::new(&l, &env(&[("HRMIG_TOKEN_TIMEOUT_MS", bad)])).unwrap_err();
        assert!(e.to_string().contains("HRMIG_TOKEN_TIMEOUT_MS"), "{e}");
    }
}

/// A credential that answers as told and counts the requests.
#[derive(Debug)]
enum Fake {
    Never,
    Status(u16),
    Token(&'static str),
}

#[derive(Debug)]
struct Counting(Fake, AtomicUsize);

#[async_trait::async_trait]
impl TokenCredential for Counting {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, [SCOPE]);
        self.1.fetch_add(1, Ordering::SeqCst);
        match self.0 {
            Fake::Never => std::future::pending().await,
            Fake::Status(status) => {
                let inner = azure_core::Error::with_message(
                    ErrorKind::HttpResponse {
                        status: status.into(),
                        error_code: None,
                        raw_response: None,
                    },
                    "The request failed: {\"error\":\"boom\"}",
                );
                Err(azure_core::Error::with_error(
                    ErrorKind::Credential,
                    inner,
                    "ManagedIdentityCredential authentication failed. The request failed: \
                     {\"error\":\"boom\"}\nTo troubleshoot, visit https://aka.ms/x",
                ))
            }
            Fake::Token(t) => Ok(AccessToken::new(
                t,
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
            )),
        }
    }
}

fn source(fake: Fake, wait: Duration) -> (TokenSource, Arc<Counting>) {
    let credential = Arc::new(Counting(fake, AtomicUsize::new(0)));
    let source = TokenSource::with(
        credential.clone(),
        "managed identity (test)".into(),
        MI_FIX,
        wait,
    );
    (source, credential)
}

#[tokio::test]
async fn an_endpoint_that_never_answers_fails_within_the_wait_naming_the_credential() {
    let (source, _) = source(Fake::Never, Duration::from_millis(100));
    let started = std::time::Instant::now();
    let e = source.token().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        e.to_string(),
        format!("managed identity (test) did not answer within 0.1 s: {MI_FIX}")
    );
}

#[tokio::test]
async fn a_refusal_names_the_credential_and_the_status() {
    for status in [400, 403, 500, 503] {
        let (source, _) = source(Fake::Status(status), DEFAULT_WAIT);
        let e = source.token().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "managed identity (test) failed with HTTP {status}: The request failed: \
                 {{\"error\":\"boom\"}}; {MI_FIX}"
            )
        );
    }
    let (source, calls) = source(Fake::Token("tok-123"), DEFAULT_WAIT);
    assert_eq!(source.token().await.unwrap().secret(), "tok-123");
    assert_eq!(calls.1.load(Ordering::SeqCst), 1);
    assert!(!format!("{source:?}").contains("tok-123"));
}
