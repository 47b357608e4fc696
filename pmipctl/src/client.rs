//! Reaching the daemons: where (`--lma`, `--mag`), how (TLS with `--ca`, a client certificate
//! with `--cert`/`--key`), how long to wait (`--timeout`), and what a failure says.
//!
//! A URL may be given in full (`http://[2001:db8::1]:50051`, `https://lma.example:50051`) or
//! as `HOST`, `HOST:PORT` or an IP address: the scheme is then `https` when `--ca` or `--cert`
//! is given, else `http`, and the port the daemons listen on ([`proto::GRPC_PORT`]). Both
//! daemons listen on `[::]:50051` unless configured otherwise, so the defaults reach a daemon
//! on the same host (or in the same network namespace).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status};

use crate::CliError;

/// Where `--lma` and `--mag` point when not given: a daemon on this host, on its default port.
pub const DEFAULT_URL: &str = "http://[::1]:50051";

/// How to reach the daemons; global options of every command.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// gRPC URL of the LMA (`pmip.v1.BindingCache`, `pmip.v1.Policy`).
    #[arg(
        long,
        env = "PMIP_LMA",
        value_name = "URL",
        default_value = DEFAULT_URL,
        global = true
    )]
    pub lma: String,

    /// gRPC URL of the MAG (`pmip.v1.Gateway`).
    #[arg(
        long,
        env = "PMIP_MAG",
        value_name = "URL",
        default_value = DEFAULT_URL,
        global = true
    )]
    pub mag: String,

    /// CA certificate (PEM) that signed the daemon's certificate; turns TLS on. Without it an
    /// `https://` URL is checked against the system's trust store.
    #[arg(long, env = "PMIP_CA", value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) for daemons that require one (`api.tls.client_ca`); turns TLS
    /// on. Needs --key.
    #[arg(
        long,
        id = "client_cert",
        env = "PMIP_CERT",
        value_name = "FILE",
        global = true
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(
        long,
        id = "client_key",
        env = "PMIP_KEY",
        value_name = "FILE",
        global = true
    )]
    pub key: Option<PathBuf>,

    /// Name to check the daemon's certificate against, when it is not the URL's host (e.g.
    /// connecting by address to a daemon whose certificate names a Service).
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,

    /// How long to wait for a connection and for each answer (`500ms`, `10s`, `2m`).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration,
        global = true
    )]
    pub timeout: Duration,
}

/// Which daemon a command talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Lma,
    Mag,
}

impl Daemon {
    fn flag(self) -> &'static str {
        match self {
            Daemon::Lma => "--lma",
            Daemon::Mag => "--mag",
        }
    }
}

/// A duration as people write it: `250ms`, `10s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.');
    let (num, unit) = s.split_at(split.unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 365.0 {
        return Err(format!("{s:?}: must be more than 0 and at most a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The full URL for `given`: a scheme and a port are added when missing (see the module docs).
pub fn normalize_url(given: &str, tls: bool) -> Result<String, String> {
    let given = given.trim();
    if given.is_empty() {
        return Err("empty URL".into());
    }
    if let Some((scheme, rest)) = given.split_once("://") {
        if scheme != "http" && scheme != "https" {
            return Err(format!("{given}: the scheme must be http or https"));
        }
        if rest.is_empty() {
            return Err(format!("{given}: no host"));
        }
        return Ok(given.to_owned());
    }
    let scheme = if tls { "https" } else { "http" };
    let port = proto::GRPC_PORT;
    let authority = if let Ok(sa) = given.parse::<SocketAddr>() {
        sa.to_string()
    } else if let Ok(ip) = given.parse::<IpAddr>() {
        SocketAddr::new(ip, port).to_string()
    } else if let Some(inner) = given.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
        // `[2001:db8::1]` without a port.
        let ip: IpAddr = inner
            .parse()
            .map_err(|_| format!("{given}: not an IPv6 address in brackets"))?;
        SocketAddr::new(ip, port).to_string()
    } else if given
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        given.to_owned()
    } else {
        format!("{given}:{port}")
    };
    Ok(format!("{scheme}://{authority}"))
}

/// The gRPC status code's name as gRPC writes it (`NOT_FOUND`).
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The causes of an error, outermost first, without repeats (tonic's "transport error"
/// wraps hyper's, which wraps the system's).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty()
            && text != "transport error"
            && !parts.iter().any(|p| p.contains(text.as_str()))
        {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        "transport error".into()
    } else {
        parts.join(": ")
    }
}

/// A connection to one daemon, with the deadline every call gets.
#[derive(Debug, Clone)]
pub struct Conn {
    pub channel: Channel,
    pub url: String,
    pub timeout: Duration,
    /// The daemon the command meant to reach.
    pub daemon: Daemon,
}

impl Conn {
    /// A request carrying the deadline, so the daemon knows it too (`grpc-timeout`).
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.set_timeout(self.timeout);
        r
    }

    /// Waits for one answer, at most the deadline.
    pub async fn call<T>(
        &self,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) if s.code() == Code::Unimplemented => Err(self.unimplemented(&s).await),
            Ok(Err(s)) => Err(self.status(&s)),
            Err(_) => Err(self.deadline_passed()),
        }
    }

    /// UNIMPLEMENTED: most likely the URL of the other daemon. Reflection says which daemon
    /// answered; the error says so, and which option points where.
    pub async fn unimplemented(&self, s: &Status) -> CliError {
        let (wanted, other, flag) = match self.daemon {
            Daemon::Lma => ("an LMA", "a MAG", "--lma (PMIP_LMA)"),
            Daemon::Mag => ("a MAG", "an LMA", "--mag (PMIP_MAG)"),
        };
        let services = self.services().await.unwrap_or_default();
        let own = |name: &str| services.iter().any(|s| s == name);
        let is_other = match self.daemon {
            Daemon::Lma => own(proto::service_names::GATEWAY),
            Daemon::Mag => {
                own(proto::service_names::BINDING_CACHE) || own(proto::service_names::POLICY)
            }
        };
        let pmip: Vec<&str> = (services.iter())
            .filter(|s| s.starts_with("pmip."))
            .map(String::as_str)
            .collect();
        let message = if is_other {
            format!(
                "{} is {other}, not {wanted} (it serves {}): point {flag} at {wanted}",
                self.url,
                pmip.join(", ")
            )
        } else if services.is_empty() {
            format!(
                "{} does not serve this call ({}): is it {wanted}? Point {flag} at one",
                self.url,
                if s.message().is_empty() {
                    s.code().description()
                } else {
                    s.message()
                }
            )
        } else {
            format!(
                "{} does not serve this call; it serves {}: point {flag} at {wanted}",
                self.url,
                services.join(", ")
            )
        };
        CliError::Grpc {
            code: Code::Unimplemented,
            message,
        }
    }

    /// The services the daemon lists over gRPC reflection (v1), within the deadline.
    async fn services(&self) -> Option<Vec<String>> {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

        let ask = async {
            let mut client = ServerReflectionClient::new(self.channel.clone());
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .ok()?
                .into_inner();
            match answers.message().await.ok()??.message_response? {
                MessageResponse::ListServicesResponse(l) => {
                    Some(l.service.into_iter().map(|s| s.name).collect())
                }
                _ => None,
            }
        };
        tokio::time::timeout(self.timeout, ask).await.ok()?
    }

    fn deadline_passed(&self) -> CliError {
        CliError::Grpc {
            code: Code::DeadlineExceeded,
            message: format!(
                "no answer from {} within {}",
                self.url,
                crate::show::duration(self.timeout)
            ),
        }
    }

    /// A gRPC error as the command line reports it.
    pub fn status(&self, s: &Status) -> CliError {
        // tonic ends a call whose `grpc-timeout` passed with CANCELLED "Timeout expired", on
        // either side; it is the deadline of this call that passed.
        if s.code() == Code::Cancelled && s.message() == "Timeout expired" {
            return self.deadline_passed();
        }
        // The connection broke under the call: what broke it says more than the code.
        if let Some(cause) = std::error::Error::source(s) {
            let mut reason = causes(cause);
            if self.url.starts_with("https://") {
                reason.push_str(
                    " (a daemon that requires client certificates closes the connection when it \
                     gets none, or one it does not trust: see --cert and --key)",
                );
            }
            return CliError::Connection {
                url: self.url.clone(),
                reason,
            };
        }
        let mut message = s.message().to_owned();
        if message.is_empty() {
            message = s.code().description().to_owned();
        }
        if s.code() == Code::Unavailable && !message.contains(&self.url) {
            message = format!("{message} ({})", self.url);
        }
        CliError::Grpc {
            code: s.code(),
            message,
        }
    }
}

impl ConnectArgs {
    fn tls_wanted(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }

    /// The full URL of `daemon`.
    pub fn url(&self, daemon: Daemon) -> Result<String, CliError> {
        let given = match daemon {
            Daemon::Lma => &self.lma,
            Daemon::Mag => &self.mag,
        };
        let url = normalize_url(given, self.tls_wanted())
            .map_err(|e| CliError::Usage(format!("{}: {e}", daemon.flag())))?;
        if self.tls_wanted() && url.starts_with("http://") {
            return Err(CliError::Usage(format!(
                "{}: {url} is plain http, but --ca or --cert asks for TLS: use https://",
                daemon.flag()
            )));
        }
        Ok(url)
    }

    fn tls(&self) -> Result<ClientTlsConfig, CliError> {
        let read = |flag: &str, p: &Path| {
            std::fs::read(p).with_context(|| format!("{flag}: cannot read {}", p.display()))
        };
        let mut c = ClientTlsConfig::new();
        c = match &self.ca {
            Some(ca) => c.ca_certificate(Certificate::from_pem(read("--ca", ca)?)),
            None => c.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                c = c.identity(Identity::from_pem(
                    read("--cert", cert)?,
                    read("--key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(CliError::Usage(
                    "--cert and --key go together: give both or neither".into(),
                ));
            }
        }
        if let Some(name) = &self.tls_server_name {
            c = c.domain_name(name.clone());
        }
        Ok(c)
    }

    /// Connects to `daemon`, within the timeout.
    pub async fn connect(&self, daemon: Daemon) -> Result<Conn, CliError> {
        let url = self.url(daemon)?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| CliError::Usage(format!("{}: {url}: {}", daemon.flag(), causes(&e))))?
            .connect_timeout(self.timeout)
            // A Watch stream can be quiet for hours; keep-alives tell a dead peer from a
            // quiet one.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(self.tls()?)
                .map_err(|e| CliError::Usage(format!("TLS settings for {url}: {}", causes(&e))))?;
        }
        let unreachable = |reason: String| CliError::Unreachable {
            url: url.clone(),
            reason,
        };
        match tokio::time::timeout(self.timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(Conn {
                channel,
                url: url.clone(),
                timeout: self.timeout,
                daemon,
            }),
            Ok(Err(e)) => Err(unreachable(causes(&e))),
            Err(_) => Err(unreachable(format!(
                "no connection within {}",
                crate::show::duration(self.timeout)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_the_daemon_port() {
        let n = |s: &str, tls: bool| normalize_url(s, tls).unwrap();
        assert_eq!(n("[::1]:50051", false), "http://[::1]:50051");
        assert_eq!(n("::1", false), "http://[::1]:50051");
        assert_eq!(n("[2001:db8::1]", true), "https://[2001:db8::1]:50051");
        assert_eq!(n("192.0.2.1", false), "http://192.0.2.1:50051");
        assert_eq!(n("lma.example", true), "https://lma.example:50051");
        assert_eq!(n("lma.example:7000", false), "http://lma.example:7000");
        assert_eq!(n("https://lma.example", false), "https://lma.example");
        assert!(normalize_url("grpc://x", false).is_err());
        assert!(normalize_url("", false).is_err());
        assert!(normalize_url("[zz]", false).is_err());
    }

    #[test]
    fn the_default_reaches_the_daemons_default_listen_port() {
        // Both daemons listen on `api.listen`, `[::]:50051` by default.
        let listen = pmip::config::ApiConfig::default().listen;
        assert_eq!(listen.port(), proto::GRPC_PORT);
        assert!(listen.ip().is_unspecified() && listen.is_ipv6());
        assert_eq!(
            DEFAULT_URL,
            format!("http://[::1]:{}", proto::GRPC_PORT).as_str()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn tls_flags_on_a_plain_url_are_refused() {
        let mut a = ConnectArgs {
            lma: "http://[::1]:50051".into(),
            mag: DEFAULT_URL.into(),
            ca: Some("ca.pem".into()),
            cert: None,
            key: None,
            tls_server_name: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(a.url(Daemon::Lma), Err(CliError::Usage(_))));
        a.lma = "[::1]:50051".into();
        assert_eq!(a.url(Daemon::Lma).unwrap(), "https://[::1]:50051");
    }

    #[test]
    fn every_code_has_its_grpc_name() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::from_i32(14)), "UNAVAILABLE");
    }
}
