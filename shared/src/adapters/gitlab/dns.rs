//! Host resolution for instance URLs: the system resolver, or an explicit DNS server
//! (`DNS_SERVER`), always under a timeout; one lookup per connect, then pinned.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;

/// Resolves GitLab instance host names.
#[derive(Clone)]
pub enum HostResolver {
    /// getaddrinfo on a blocking thread (tokio's `lookup_host`).
    System {
        /// Lookup timeout.
        timeout: Duration,
    },
    /// A specific DNS server over UDP/TCP.
    Server {
        /// The resolver bound to that server.
        resolver: Box<TokioResolver>,
        /// Lookup timeout.
        timeout: Duration,
    },
}

impl std::fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System { .. } => f.write_str("HostResolver::System"),
            Self::Server { .. } => f.write_str("HostResolver::Server"),
        }
    }
}

impl HostResolver {
    /// The system resolver, or the given server.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Self {
        match server {
            None => Self::System { timeout },
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                let config = ResolverConfig::from_parts(None, vec![], group);
                let mut opts = ResolverOpts::default();
                opts.timeout = timeout;
                opts.attempts = 1;
                opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
                opts.use_hosts_file = ResolveHosts::Never;
                opts.cache_size = 0;
                let resolver = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                    .with_options(opts)
                    .build();
                Self::Server { resolver: Box::new(resolver), timeout }
            }
        }
    }

    /// Every address the name resolves to; `None` on NXDOMAIN, SERVFAIL, timeout or no answer.
    pub async fn lookup(&self, host: &str) -> Option<Vec<IpAddr>> {
        let addrs: Vec<IpAddr> = match self {
            Self::System { timeout } => {
                let found = tokio::time::timeout(*timeout, tokio::net::lookup_host((host, 443u16))).await.ok()?.ok()?;
                found.map(|a| a.ip()).collect()
            }
            Self::Server { resolver, timeout } => {
                // A fully qualified name stops the resolver from trying search domains.
                let fqdn = format!("{host}.");
                let found = tokio::time::timeout(*timeout, resolver.lookup_ip(fqdn.as_str())).await.ok()?.ok()?;
                found.iter().collect()
            }
        };
        (!addrs.is_empty()).then_some(addrs)
    }
}
