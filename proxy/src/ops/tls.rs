//! TLS on both sides of the proxy, with rustls.
//!
//! Client side: the proxy presents `proxy_tls_cert_path`/`proxy_tls_key_path`; with
//! `proxy_tls_ca_path` it verifies client certificates against that CA (required when
//! `proxy_tls_require_client_auth` is true, else checked only when a client offers one).
//!
//! Cluster side (origin and target each): TLS is on when `<cluster>_tls_server_ca_path` is set,
//! as in the reference proxy; the cluster's certificate must chain to that CA **and** name the
//! contact point the proxy dialled (DNS name or IP address SAN). The reference proxy cannot
//! check the name; here it is on by default and `<cluster>_tls_verify_hostname: false` turns it
//! off explicitly (the chain is still verified). `<cluster>_tls_client_cert_path` and
//! `_key_path` add a client certificate for clusters that require one.
//!
//! Every file is read and parsed when the settings load, so a wrong path or a file that holds
//! no certificate or key stops the proxy at start with a message naming the setting. Messages
//! name files, never their contents. Certificates are read once: replacing them needs a restart.
//!
//! The plain path stays as it was: [`ClientStream::Plain`] is a `TcpStream` behind one match,
//! and plain cluster connections keep tokio's lock-free `into_split`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ops::config::{Cluster, ConfigError};

/// Every TLS setting: the reference proxy's names, plus our `*_tls_verify_hostname` (shared
/// with zdm-run, which renders each one the inventory sets).
pub const SETTINGS: &[&str] = zdm_proxy_settings::TLS;

/// Whether a TLS setting takes true/false (the others take a file path).
pub fn is_bool_setting(key: &str) -> bool {
    key.ends_with("_require_client_auth") || key.ends_with("_verify_hostname")
}

/// Client-facing TLS settings, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTlsSettings {
    pub ca_path: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    pub require_client_auth: bool,
}

/// TLS settings toward one cluster, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsSettings {
    pub server_ca_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    pub verify_hostname: bool,
}

impl Default for ClusterTlsSettings {
    fn default() -> Self {
        ClusterTlsSettings {
            server_ca_path: None,
            client_cert_path: None,
            client_key_path: None,
            verify_hostname: true,
        }
    }
}

/// The TLS part of the settings and, once loaded, the rustls objects built from its files.
#[derive(Clone, Default)]
pub struct TlsConfig {
    pub proxy: ProxyTlsSettings,
    pub origin: ClusterTlsSettings,
    pub target: ClusterTlsSettings,
    built: Built,
}

#[derive(Clone, Default)]
struct Built {
    acceptor: Option<TlsAcceptor>,
    origin: Option<Arc<ClusterTls>>,
    target: Option<Arc<ClusterTls>>,
}

/// Two settings are equal when they name the same files and switches (what a reload compares).
impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.proxy == other.proxy && self.origin == other.origin && self.target == other.target
    }
}

impl fmt::Debug for TlsConfig {
    /// Paths and switches only: key material never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("proxy", &self.proxy)
            .field("origin", &self.origin)
            .field("target", &self.target)
            .finish()
    }
}

fn setting_err(key: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError(format!("setting `{key}`: {why}"))
}

impl TlsConfig {
    /// Sets one path setting (an empty value unsets it, as in the reference proxy).
    pub fn set_path(&mut self, key: &str, value: String) -> Result<(), String> {
        let v = (!value.trim().is_empty()).then(|| PathBuf::from(value.trim()));
        let (cluster, rest) = match key.split_once("_tls_") {
            Some(("origin", rest)) => (Some(&mut self.origin), rest),
            Some(("target", rest)) => (Some(&mut self.target), rest),
            Some(("proxy", rest)) => (None, rest),
            _ => return Err(format!("unknown setting `{key}`")),
        };
        let slot = match (cluster, rest) {
            (Some(c), "server_ca_path") => &mut c.server_ca_path,
            (Some(c), "client_cert_path") => &mut c.client_cert_path,
            (Some(c), "client_key_path") => &mut c.client_key_path,
            (None, "ca_path") => &mut self.proxy.ca_path,
            (None, "cert_path") => &mut self.proxy.cert_path,
            (None, "key_path") => &mut self.proxy.key_path,
            _ => return Err(format!("unknown setting `{key}`")),
        };
        *slot = v;
        Ok(())
    }

    pub fn set_bool(&mut self, key: &str, value: bool) -> Result<(), String> {
        match key {
            "proxy_tls_require_client_auth" => self.proxy.require_client_auth = value,
            "origin_tls_verify_hostname" => self.origin.verify_hostname = value,
            "target_tls_verify_hostname" => self.target.verify_hostname = value,
            _ => return Err(format!("unknown setting `{key}`")),
        }
        Ok(())
    }

    /// Checks the combination of settings, reads every file and builds the rustls objects.
    pub fn build(&mut self) -> Result<(), ConfigError> {
        self.built = Built {
            acceptor: build_acceptor(&self.proxy)?,
            origin: build_cluster(Cluster::Origin, &self.origin)?.map(Arc::new),
            target: build_cluster(Cluster::Target, &self.target)?.map(Arc::new),
        };
        Ok(())
    }

    /// The client-facing TLS acceptor, when the proxy serves TLS.
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.built.acceptor.as_ref()
    }

    /// TLS toward a cluster, when configured.
    pub fn cluster(&self, c: Cluster) -> Option<&ClusterTls> {
        match c {
            Cluster::Origin => self.built.origin.as_deref(),
            Cluster::Target => self.built.target.as_deref(),
        }
    }

    /// The TLS settings whose values differ between `self` and `new` (all need a restart).
    pub fn changed_settings(&self, new: &TlsConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let (a, b) = (&self.proxy, &new.proxy);
        for (name, differs) in [
            ("proxy_tls_ca_path", a.ca_path != b.ca_path),
            ("proxy_tls_cert_path", a.cert_path != b.cert_path),
            ("proxy_tls_key_path", a.key_path != b.key_path),
            (
                "proxy_tls_require_client_auth",
                a.require_client_auth != b.require_client_auth,
            ),
        ] {
            if differs {
                out.push(name);
            }
        }
        for (c, a, b) in [
            (Cluster::Origin, &self.origin, &new.origin),
            (Cluster::Target, &self.target, &new.target),
        ] {
            let names: [&'static str; 4] = match c {
                Cluster::Origin => [
                    "origin_tls_server_ca_path",
                    "origin_tls_client_cert_path",
                    "origin_tls_client_key_path",
                    "origin_tls_verify_hostname",
                ],
                Cluster::Target => [
                    "target_tls_server_ca_path",
                    "target_tls_client_cert_path",
                    "target_tls_client_key_path",
                    "target_tls_verify_hostname",
                ],
            };
            let differs = [
                a.server_ca_path != b.server_ca_path,
                a.client_cert_path != b.client_cert_path,
                a.client_key_path != b.client_key_path,
                a.verify_hostname != b.verify_hostname,
            ];
            out.extend(
                names
                    .iter()
                    .zip(differs)
                    .filter(|(_, d)| *d)
                    .map(|(n, _)| *n),
            );
        }
        out
    }
}

/// The one crypto provider the proxy uses, named explicitly so the process never depends on a
/// process-wide default (test builds link a second provider through the driver).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| setting_err(key, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setting_err(key, format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setting_err(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn read_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| setting_err(key, format!("cannot read {}: {e}", path.display())))?;
    // The parser's error names a PEM problem, never the key bytes.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        setting_err(
            key,
            format!(
                "{} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                path.display()
            ),
        )
    })
}

fn read_roots(key: &str, path: &Path) -> Result<Arc<RootCertStore>, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(key, path)? {
        roots.add(cert).map_err(|e| {
            setting_err(
                key,
                format!("{}: not a usable CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its key; refuses a key that does not belong to the certificate.
fn read_pair(
    cert_key: &str,
    cert_path: &Path,
    key_key: &str,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let certs = read_certs(cert_key, cert_path)?;
    let key = read_key(key_key, key_path)?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| setting_err(key_key, format!("{}: {e}", key_path.display())))?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    certified.keys_match().map_err(|_| {
        setting_err(
            key_key,
            format!(
                "the key in {} does not belong to the certificate in `{cert_key}` ({})",
                key_path.display(),
                cert_path.display()
            ),
        )
    })?;
    Ok((certs, key))
}

fn build_acceptor(s: &ProxyTlsSettings) -> Result<Option<TlsAcceptor>, ConfigError> {
    let (cert_path, key_path) = match (&s.cert_path, &s.key_path) {
        (None, None) => {
            if s.ca_path.is_some() {
                return Err(setting_err(
                    "proxy_tls_ca_path",
                    "needs `proxy_tls_cert_path` and `proxy_tls_key_path` (the proxy's own certificate)",
                ));
            }
            if s.require_client_auth {
                return Err(setting_err(
                    "proxy_tls_require_client_auth",
                    "needs `proxy_tls_cert_path`, `proxy_tls_key_path` and `proxy_tls_ca_path`",
                ));
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(ConfigError(
                "settings `proxy_tls_cert_path` and `proxy_tls_key_path` must be set together"
                    .into(),
            ))
        }
    };
    let (certs, key) = read_pair(
        "proxy_tls_cert_path",
        cert_path,
        "proxy_tls_key_path",
        key_path,
    )?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?;
    let builder = match &s.ca_path {
        None if s.require_client_auth => {
            return Err(setting_err(
                "proxy_tls_require_client_auth",
                "needs `proxy_tls_ca_path` (the CA that signs client certificates)",
            ))
        }
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = read_roots("proxy_tls_ca_path", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if s.require_client_auth {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| setting_err("proxy_tls_ca_path", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| setting_err("proxy_tls_cert_path", e))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn build_cluster(c: Cluster, s: &ClusterTlsSettings) -> Result<Option<ClusterTls>, ConfigError> {
    let name = c.name();
    let k = |rest: &str| format!("{name}_tls_{rest}");
    let Some(ca) = &s.server_ca_path else {
        if s.client_cert_path.is_some() || s.client_key_path.is_some() {
            return Err(ConfigError(format!(
                "settings `{}`/`{}` need `{}`: TLS to {name} is enabled by the CA that verifies it",
                k("client_cert_path"),
                k("client_key_path"),
                k("server_ca_path")
            )));
        }
        if !s.verify_hostname {
            return Err(setting_err(
                &k("verify_hostname"),
                format!("has no effect without `{}`", k("server_ca_path")),
            ));
        }
        return Ok(None);
    };
    let roots = read_roots(&k("server_ca_path"), ca)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| setting_err(&k("server_ca_path"), e))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?;
    let builder = if s.verify_hostname {
        builder.with_webpki_verifier(webpki)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier(webpki)))
    };
    let config = match (&s.client_cert_path, &s.client_key_path) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let (certs, key) = read_pair(&k("client_cert_path"), cert, &k("client_key_path"), key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| setting_err(&k("client_cert_path"), e))?
        }
        _ => {
            return Err(ConfigError(format!(
                "settings `{}` and `{}` must be set together",
                k("client_cert_path"),
                k("client_key_path")
            )))
        }
    };
    Ok(Some(ClusterTls {
        cluster: c,
        verify_hostname: s.verify_hostname,
        connector: TlsConnector::from(Arc::new(config)),
    }))
}

/// Verifies the chain against the CA but accepts any name: `*_tls_verify_hostname: false`.
///
/// rustls's WebPKI verifier checks the chain first and the name last, so a name error from it
/// means the chain (and validity period, and usage) already passed; only that error is waived.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// TLS toward one cluster.
pub struct ClusterTls {
    cluster: Cluster,
    verify_hostname: bool,
    connector: TlsConnector,
}

impl ClusterTls {
    /// Whether the certificate must name the contact point (`*_tls_verify_hostname`).
    pub fn verifies_hostname(&self) -> bool {
        self.verify_hostname
    }

    /// Runs the TLS handshake on a connected socket to `host` (a contact point: the name the
    /// certificate must carry, as a DNS name or IP address SAN, unless verification is off).
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            format!("contact point `{host}` is neither a DNS name nor an IP address usable for TLS")
        })?;
        self.connector.connect(name, tcp).await.map_err(|e| {
            let hint = if self.verify_hostname && e.to_string().contains("not valid for name") {
                format!(
                    " (hostname verification: the {0} certificate does not name `{host}`; \
                     connect by a name it carries, or set {0}_tls_verify_hostname: false)",
                    self.cluster.name()
                )
            } else {
                String::new()
            };
            format!(
                "TLS handshake with {} failed: {e}{hint}",
                self.cluster.name()
            )
        })
    }
}

/// A client connection: plain TCP, or TLS when the proxy serves TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::config::Config;
    use std::path::PathBuf;

    /// A CA, a server certificate for `localhost`/127.0.0.1 and a second, unrelated key, made
    /// in-process in a directory of their own.
    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(tag: &str) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("zdm-proxy-tls-unit-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("test CA {tag}"));
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let params =
                rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                    .unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            let other = rcgen::KeyPair::generate().unwrap();
            for (name, text) in [
                ("ca.pem", ca.pem()),
                ("server.pem", cert.pem()),
                ("server.key", key.serialize_pem()),
                ("other.key", other.serialize_pem()),
                ("garbage.pem", "not a certificate\n".to_string()),
            ] {
                std::fs::write(dir.join(name), text).unwrap();
            }
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn load(extra: &[(&str, String)]) -> Result<Config, ConfigError> {
        let mut env = vec![
            (
                "ZDM_ORIGIN_CONTACT_POINTS".to_string(),
                "10.0.0.1".to_string(),
            ),
            (
                "ZDM_TARGET_CONTACT_POINTS".to_string(),
                "10.0.0.2".to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Config::load(None, env)
    }

    #[test]
    fn no_tls_settings_means_plain_everywhere() {
        let c = load(&[]).unwrap();
        assert!(c.tls.acceptor().is_none());
        assert!(c.tls.cluster(Cluster::Origin).is_none());
        assert!(c.tls.cluster(Cluster::Target).is_none());
        assert!(c.tls.origin.verify_hostname && c.tls.target.verify_hostname);
    }

    #[test]
    fn complete_settings_build_acceptor_and_connectors() {
        let f = Files::new("complete");
        let c = load(&[
            ("ZDM_PROXY_TLS_CERT_PATH", f.path("server.pem")),
            ("ZDM_PROXY_TLS_KEY_PATH", f.path("server.key")),
            ("ZDM_PROXY_TLS_CA_PATH", f.path("ca.pem")),
            ("ZDM_PROXY_TLS_REQUIRE_CLIENT_AUTH", "true".into()),
            ("ZDM_ORIGIN_TLS_SERVER_CA_PATH", f.path("ca.pem")),
            ("ZDM_TARGET_TLS_SERVER_CA_PATH", f.path("ca.pem")),
            ("ZDM_TARGET_TLS_CLIENT_CERT_PATH", f.path("server.pem")),
            ("ZDM_TARGET_TLS_CLIENT_KEY_PATH", f.path("server.key")),
            ("ZDM_TARGET_TLS_VERIFY_HOSTNAME", "false".into()),
        ])
        .unwrap();
        assert!(c.tls.acceptor().is_some());
        assert!(c.tls.proxy.require_client_auth);
        assert!(c.tls.cluster(Cluster::Origin).unwrap().verify_hostname);
        assert!(!c.tls.cluster(Cluster::Target).unwrap().verify_hostname);
    }

    #[test]
    fn settings_also_come_from_the_yaml_file() {
        let f = Files::new("yaml");
        let file = f.dir.join("proxy.yml");
        std::fs::write(
            &file,
            format!(
                "origin_contact_points: 10.0.0.1\ntarget_contact_points: 10.0.0.2\n\
                 origin_tls_server_ca_path: {}\norigin_tls_verify_hostname: false\n",
                f.path("ca.pem")
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file), vec![]).unwrap();
        assert!(!c.tls.cluster(Cluster::Origin).unwrap().verify_hostname);
        assert!(c.tls.cluster(Cluster::Target).is_none());
    }

    /// Each bad setting is refused at load, naming the setting (and the file, never its bytes).
    #[test]
    fn bad_files_and_combinations_are_refused_naming_the_setting() {
        let f = Files::new("bad");
        let cert = || ("ZDM_PROXY_TLS_CERT_PATH", f.path("server.pem"));
        let key = || ("ZDM_PROXY_TLS_KEY_PATH", f.path("server.key"));
        // (settings, the setting the message must name, why)
        type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![("ZDM_ORIGIN_TLS_SERVER_CA_PATH", f.path("missing.pem"))],
                "origin_tls_server_ca_path",
                "cannot read",
            ),
            (
                vec![("ZDM_TARGET_TLS_SERVER_CA_PATH", f.path("garbage.pem"))],
                "target_tls_server_ca_path",
                "no PEM certificate",
            ),
            (
                vec![cert(), ("ZDM_PROXY_TLS_KEY_PATH", f.path("missing.key"))],
                "proxy_tls_key_path",
                "cannot read",
            ),
            (
                vec![cert(), ("ZDM_PROXY_TLS_KEY_PATH", f.path("server.pem"))],
                "proxy_tls_key_path",
                "no usable PEM private key",
            ),
            (
                vec![cert(), ("ZDM_PROXY_TLS_KEY_PATH", f.path("other.key"))],
                "proxy_tls_key_path",
                "does not belong",
            ),
            (vec![cert()], "proxy_tls_key_path", "set together"),
            (
                vec![
                    cert(),
                    key(),
                    ("ZDM_PROXY_TLS_REQUIRE_CLIENT_AUTH", "true".into()),
                ],
                "proxy_tls_require_client_auth",
                "proxy_tls_ca_path",
            ),
            (
                vec![("ZDM_PROXY_TLS_CA_PATH", f.path("ca.pem"))],
                "proxy_tls_ca_path",
                "proxy_tls_cert_path",
            ),
            (
                vec![("ZDM_ORIGIN_TLS_CLIENT_CERT_PATH", f.path("server.pem"))],
                "origin_tls_client_cert_path",
                "origin_tls_server_ca_path",
            ),
            (
                vec![
                    ("ZDM_ORIGIN_TLS_SERVER_CA_PATH", f.path("ca.pem")),
                    ("ZDM_ORIGIN_TLS_CLIENT_KEY_PATH", f.path("server.key")),
                ],
                "origin_tls_client_cert_path",
                "set together",
            ),
            (
                vec![("ZDM_TARGET_TLS_VERIFY_HOSTNAME", "false".into())],
                "target_tls_verify_hostname",
                "target_tls_server_ca_path",
            ),
            (
                vec![("ZDM_ORIGIN_TLS_VERIFY_HOSTNAME", "maybe".into())],
                "origin_tls_verify_hostname",
                "not true or false",
            ),
        ];
        let key_text = std::fs::read_to_string(f.dir.join("server.key")).unwrap();
        let key_line = key_text.lines().nth(1).unwrap();
        for (settings, setting, why) in cases {
            let e = load(&settings)
                .map(|_| ())
                .expect_err(&format!("{settings:?} should be refused"))
                .to_string();
            assert!(
                e.contains(&format!("`{setting}`")) && e.contains(why),
                "{settings:?}: {e}"
            );
            assert!(!e.contains(key_line), "key material in message: {e}");
        }
        assert!(load(&[("ZDM_ORIGIN_TLS_BOGUS_PATH", "x".into())])
            .unwrap_err()
            .to_string()
            .contains("unknown setting `origin_tls_bogus_path`"));
    }

    #[test]
    fn debug_output_names_files_not_contents() {
        let f = Files::new("debug");
        let c = load(&[cert_pair(&f).0, cert_pair(&f).1]).unwrap();
        let text = format!("{c:?}");
        assert!(text.contains("server.key"), "{text}");
        let key_text = std::fs::read_to_string(f.dir.join("server.key")).unwrap();
        assert!(!text.contains(key_text.lines().nth(1).unwrap()));
    }

    fn cert_pair(f: &Files) -> ((&'static str, String), (&'static str, String)) {
        (
            ("ZDM_PROXY_TLS_CERT_PATH", f.path("server.pem")),
            ("ZDM_PROXY_TLS_KEY_PATH", f.path("server.key")),
        )
    }

    /// A TLS server with the test certificate (names `localhost` and 127.0.0.1) that
    /// completes one handshake per connection; returns its port.
    async fn tls_server(f: &Files) -> u16 {
        let mut server = TlsConfig::default();
        server
            .set_path("proxy_tls_cert_path", f.path("server.pem"))
            .unwrap();
        server
            .set_path("proxy_tls_key_path", f.path("server.key"))
            .unwrap();
        server.build().unwrap();
        let acceptor = server.acceptor().unwrap().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        port
    }

    fn origin_tls(f: &Files, verify_hostname: bool) -> TlsConfig {
        let mut c = TlsConfig::default();
        c.set_path("origin_tls_server_ca_path", f.path("ca.pem"))
            .unwrap();
        c.set_bool("origin_tls_verify_hostname", verify_hostname)
            .unwrap();
        c.build().unwrap();
        c
    }

    /// The name checked is the contact point's, as a DNS name or an IP address; a name the
    /// certificate lacks is refused with the cluster, the name and the switch in the message,
    /// and accepted (chain still verified) with verification off.
    #[tokio::test]
    async fn cluster_certificates_are_checked_against_the_contact_point_name() {
        let f = Files::new("names");
        let port = tls_server(&f).await;
        let on = origin_tls(&f, true);
        let on = on.cluster(Cluster::Origin).unwrap();
        let tcp = || TcpStream::connect(("127.0.0.1", port));
        for good in ["localhost", "127.0.0.1"] {
            on.connect(good, tcp().await.unwrap())
                .await
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for wrong in ["127.0.0.2", "origin.example"] {
            let e = on
                .connect(wrong, tcp().await.unwrap())
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(
                e.contains("TLS handshake with origin failed")
                    && e.contains("not valid for name")
                    && e.contains(&format!("`{wrong}`"))
                    && e.contains("origin_tls_verify_hostname: false"),
                "{e}"
            );
        }
        let off = origin_tls(&f, false);
        let off = off.cluster(Cluster::Origin).unwrap();
        off.connect("127.0.0.2", tcp().await.unwrap())
            .await
            .expect("verification off accepts another name");

        // Off still verifies the chain: a CA that did not sign the certificate is refused.
        let other = Files::new("names-other-ca");
        let mut stranger = TlsConfig::default();
        stranger
            .set_path("origin_tls_server_ca_path", other.path("ca.pem"))
            .unwrap();
        stranger
            .set_bool("origin_tls_verify_hostname", false)
            .unwrap();
        stranger.build().unwrap();
        let e = stranger
            .cluster(Cluster::Origin)
            .unwrap()
            .connect("localhost", tcp().await.unwrap())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
    }

    /// Every TLS setting is restart-only: a reload that changes one is refused, naming it.
    #[test]
    fn every_tls_setting_change_needs_a_restart() {
        let running = Config::default();
        for &setting in SETTINGS {
            let mut new = Config::default();
            if is_bool_setting(setting) {
                let current = setting.ends_with("_verify_hostname");
                new.tls.set_bool(setting, !current).unwrap();
            } else {
                new.tls.set_path(setting, "/some/file.pem".into()).unwrap();
            }
            let changed = crate::ops::reload::restart_only_changes(&running, &new);
            assert_eq!(changed, vec![setting], "{setting}");
        }
    }
}
