//! OAuth2 client credentials for app registrations: the token endpoint
//! (`/{tenant}/oauth2/v2.0/token`), the OpenID discovery document and JWKS
//! that MSAL (and so azure-identity's `ClientSecretCredential`) reads
//! before asking for a token, and the verification of the signed JWTs the
//! ingestion and query APIs accept.
//!
//! Tokens are ES256 JWTs signed with a P-256 key kept in
//! `<data-dir>/tokens/signing-key.pem` (made with `rcgen` on first start,
//! so tokens survive restarts). ES256 rather than RS256 because the crypto
//! backend used here (ring) signs RSA but cannot generate RSA keys; clients
//! treat the token as opaque, and the JWKS publishes the key either way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use watchpost_metastore::{AppRegistration, Metastore};

use crate::{json_response, AppState};

/// Lifetime of an issued token.
const TOKEN_LIFETIME_SECONDS: i64 = 3600;

/// Why a token or the key behind tokens is not usable.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the app registration of this token no longer exists")]
    UnknownApp,
    #[error("the app registration of this token has expired")]
    Expired,
}

/// The claims of an issued token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The client id.
    pub sub: String,
    pub appid: String,
    pub tid: String,
    #[serde(default)]
    pub ver: String,
}

/// Signs and verifies tokens with one P-256 key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Loads the signing key of `data_dir`, making it on first use.
    pub fn open(data_dir: &Path) -> Result<TokenIssuer, TokenError> {
        let path = data_dir.join("tokens").join("signing-key.pem");
        let key_err = |message: String| TokenError::Key { path: path.clone(), message };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate().map_err(|err| key_err(err.to_string()))?;
                let pem = key.serialize_pem();
                std::fs::create_dir_all(path.parent().expect("has a parent"))
                    .map_err(|err| key_err(err.to_string()))?;
                let tmp = path.with_extension("tmp");
                write_private(&tmp, pem.as_bytes()).map_err(|err| key_err(err.to_string()))?;
                std::fs::rename(&tmp, &path).map_err(|err| key_err(err.to_string()))?;
                pem
            }
            Err(err) => return Err(key_err(err.to_string())),
        };
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|err| key_err(err.to_string()))?;
        let raw = key.public_key_raw();
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        if raw.len() != 65 || raw[0] != 4 {
            return Err(key_err("not a P-256 key".to_string()));
        }
        let x = URL_SAFE_NO_PAD.encode(&raw[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&raw[33..65]);
        let kid: String = sha2::Sha256::digest(raw).iter().take(10).map(|byte| format!("{byte:02x}")).collect();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|err| key_err(err.to_string()))?;
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|err| key_err(err.to_string()))?;
        Ok(TokenIssuer { encoding, decoding, kid, x, y })
    }

    /// Signs a token for `app` with audience `audience`.
    pub fn issue(&self, app: &AppRegistration, tenant: &str, issuer: &str, audience: &str, now: i64) -> (String, i64) {
        let exp = match app.expires_at {
            Some(expires) => (now + TOKEN_LIFETIME_SECONDS).min(expires),
            None => now + TOKEN_LIFETIME_SECONDS,
        };
        let claims = Claims {
            aud: audience.to_string(),
            iss: issuer.to_string(),
            iat: now,
            nbf: now - 60,
            exp,
            sub: app.client_id.clone(),
            appid: app.client_id.clone(),
            tid: tenant.to_string(),
            ver: "2.0".to_string(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).expect("ES256 signing with a valid key");
        (token, exp - now)
    }

    /// Checks the signature and expiry of a token and returns the app it was
    /// issued to, as the metastore knows it now (so a deleted or expired
    /// app's tokens stop working at once). The audience is not checked:
    /// the SDKs ask for several (`https://monitor.azure.com`,
    /// `https://api.loganalytics.io`, the endpoint's own URL).
    pub fn verify(&self, token: &str, metastore: &Metastore, now: i64) -> Result<AppRegistration, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        validation.leeway = 60;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?;
        let app = find_app(metastore, &data.claims.sub).ok_or(TokenError::UnknownApp)?;
        if app.expires_at.is_some_and(|expires| expires <= now) {
            return Err(TokenError::Expired);
        }
        Ok(app)
    }

    /// The JSON Web Key Set with the public key.
    pub fn jwks(&self) -> serde_json::Value {
        json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid, "x": self.x, "y": self.y}]})
    }
}

/// Whether a bearer token has the shape of a JWT (three dot-separated parts).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// The app with this client id, reading the metastore file again when it is
/// not known (the CLI may have registered it while the server runs).
fn find_app(metastore: &Metastore, client_id: &str) -> Option<AppRegistration> {
    let lookup = |metastore: &Metastore| metastore.apps().into_iter().find(|app| app.client_id == client_id);
    lookup(metastore).or_else(|| {
        metastore.reload().ok()?;
        lookup(metastore)
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `scheme://host` of this request, as the client addressed the server.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    let scheme = if state.options.https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// An error in the shape Entra ID's token endpoint uses.
fn oauth_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace_id = uuid::Uuid::new_v4().to_string();
    json_response(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace_id}"),
            "error_codes": [code],
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace_id,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        }),
    )
}

/// Checks the tenant of a path; `None` if it is this installation's.
fn check_tenant(state: &AppState, tenant: &str) -> Option<Response> {
    let ours = state.metastore.tenant_id().ok()?;
    if tenant.eq_ignore_ascii_case(&ours) {
        return None;
    }
    let message = format!("Tenant '{tenant}' not found. This Watchpost serves tenant {ours}.");
    Some(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", 90002, &message))
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (and without `v2.0`).
pub(crate) async fn openid_configuration(
    State(state): State<AppState>,
    UrlPath(tenant): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if state.tokens.is_none() {
        return crate::not_found().await;
    }
    if let Some(error) = check_tenant(&state, &tenant) {
        return error;
    }
    let base = base_url(&state, &headers);
    json_response(
        StatusCode::OK,
        json!({
            "issuer": format!("{base}/{tenant}/v2.0"),
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "scopes_supported": ["openid"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "tenant_region_scope": null,
            "cloud_instance_name": "watchpost",
            "cloud_graph_host_name": "",
            "msgraph_host": "",
        }),
    )
}

/// `GET /{tenant}/discovery/v2.0/keys`.
pub(crate) async fn jwks(State(state): State<AppState>, UrlPath(tenant): UrlPath<String>) -> Response {
    let Some(tokens) = state.tokens.clone() else { return crate::not_found().await };
    if let Some(error) = check_tenant(&state, &tenant) {
        return error;
    }
    json_response(StatusCode::OK, tokens.jwks())
}

/// `GET /common/discovery/instance`: MSAL's instance discovery, for clients
/// that do not turn it off. Names this server's tenant discovery document.
pub(crate) async fn instance_discovery(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if state.tokens.is_none() {
        return crate::not_found().await;
    }
    let base = base_url(&state, &headers);
    // authorization_endpoint is https://host/{tenant}/oauth2/v2.0/authorize.
    let tenant = params
        .get("authorization_endpoint")
        .and_then(|url| url.split('/').nth(3).map(str::to_string))
        .unwrap_or_else(|| state.metastore.tenant_id().unwrap_or_default());
    let host = base.split("://").nth(1).unwrap_or_default().to_string();
    json_response(
        StatusCode::OK,
        json!({
            "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant.
pub(crate) async fn token(
    State(state): State<AppState>,
    UrlPath(tenant): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(tokens) = state.tokens.clone() else { return crate::not_found().await };
    if let Some(error) = check_tenant(&state, &tenant) {
        return error;
    }
    let form: HashMap<String, String> = match serde_urlencoded_pairs(&body) {
        Some(form) => form,
        None => {
            let message = "The request body must be application/x-www-form-urlencoded.";
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", 900144, message);
        }
    };
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != "client_credentials" {
        let message = format!("The grant type '{grant}' is not supported; Watchpost issues client_credentials tokens.");
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", 70003, &message);
    }
    let (client_id, secret) = match client_credentials(&form, &headers) {
        Some(credentials) => credentials,
        None => {
            let message = "The request body must contain client_id and client_secret (or HTTP Basic credentials).";
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", 900144, message);
        }
    };
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    let Some(audience) = scope.split_whitespace().find_map(|item| item.strip_suffix("/.default")) else {
        let message = format!(
            "The provided value '{scope}' for the input parameter 'scope' is not valid: the client credentials flow needs a scope ending in /.default."
        );
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", 1002012, &message);
    };
    let mut app = state.metastore.verify_app_secret(&client_id, &secret);
    if app.is_none() && state.metastore.reload().is_ok() {
        app = state.metastore.verify_app_secret(&client_id, &secret);
    }
    let Some(app) = app else {
        let message = format!("Invalid client secret provided, or no app registration '{client_id}'.");
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &message);
    };
    let now = now_seconds();
    if app.expires_at.is_some_and(|expires| expires <= now) {
        let message = format!("The provided client secret keys for app '{}' are expired.", app.client_id);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000222, &message);
    }
    let issuer = format!("{}/{tenant}/v2.0", base_url(&state, &headers));
    let (access_token, expires_in) = tokens.issue(&app, &tenant, &issuer, audience, now);
    tracing::info!(client_id = %app.client_id, %audience, "TokenIssued");
    json_response(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": access_token}),
    )
}

/// The form fields. Parsed here rather than with axum's `Form` extractor so
/// a bad body gets an error in the OAuth2 shape clients expect.
fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_bytes(body).ok()
}

/// `client_id`/`client_secret` from the form, or HTTP Basic credentials.
fn client_credentials(form: &HashMap<String, String>, headers: &HeaderMap) -> Option<(String, String)> {
    if let (Some(id), Some(secret)) = (form.get("client_id"), form.get("client_secret")) {
        return Some((id.clone(), secret.clone()));
    }
    let header = headers.get("authorization")?.to_str().ok()?;
    let encoded = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_until_the_app_goes() {
        let dir = tempfile::tempdir().unwrap();
        let metastore = Metastore::open(dir.path()).unwrap();
        let ws = metastore.ensure_workspace(None, None).unwrap();
        let (app, _) = metastore.create_app("a", vec![ws.id.clone()], vec![], None).unwrap();
        let issuer = TokenIssuer::open(dir.path()).unwrap();
        let now = now_seconds();
        let (token, expires_in) = issuer.issue(&app, "t", "https://x/t/v2.0", "https://monitor.azure.com", now);
        assert_eq!(expires_in, TOKEN_LIFETIME_SECONDS);
        assert!(looks_like_jwt(&token));
        assert_eq!(issuer.verify(&token, &metastore, now).unwrap().client_id, app.client_id);

        // The key persists: a reopened issuer verifies the same token.
        let reopened = TokenIssuer::open(dir.path()).unwrap();
        assert_eq!(reopened.verify(&token, &metastore, now).unwrap().name, "a");
        assert_eq!(reopened.jwks()["keys"][0]["kid"], issuer.jwks()["keys"][0]["kid"]);

        // A tampered token, an expired one and another key's are refused.
        let mut tampered = token.clone();
        tampered.insert(token.len() - 3, 'A');
        assert!(matches!(issuer.verify(&tampered, &metastore, now), Err(TokenError::Invalid(_))));
        let (old, _) = issuer.issue(&app, "t", "i", "a", now - 2 * TOKEN_LIFETIME_SECONDS);
        assert!(matches!(issuer.verify(&old, &metastore, now), Err(TokenError::Invalid(_))));
        let other_dir = tempfile::tempdir().unwrap();
        let other = TokenIssuer::open(other_dir.path()).unwrap();
        assert!(other.verify(&token, &metastore, now).is_err());
    }
}
