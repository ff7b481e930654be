//! Where a redirected connection was really going.
//!
//! In a sidecar, iptables REDIRECTs the app's outbound TCP (and the pod's
//! inbound TCP) to Outrigger's listeners, so the socket's local address is
//! the listener's, not the destination the client dialed. Netfilter keeps
//! the pre-NAT destination in conntrack and hands it out through the
//! `SO_ORIGINAL_DST` socket option (`IP6T_SO_ORIGINAL_DST` for IPv6). A
//! transparent listener reads it once per connection; the edge routes on it
//! when a request names no host, and the access log records it.
//!
//! A connection that was not redirected (a direct client, a test, a
//! non-Linux build) has no NAT entry: the lookup errors or returns the local
//! address, and either way the local address is the honest answer.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The destination the client dialed: `SO_ORIGINAL_DST` where netfilter
/// redirected the connection, else the socket's local address.
pub fn original_dst(stream: &TcpStream, local: SocketAddr) -> SocketAddr {
    match lookup(stream, local) {
        Ok(dst) => dst,
        Err(e) => {
            tracing::debug!(%local, error = %e, "no original destination (not redirected?); using the local address");
            local
        }
    }
}

#[cfg(target_os = "linux")]
fn lookup(stream: &TcpStream, local: SocketAddr) -> Result<SocketAddr, nix::Error> {
    use nix::sys::socket::{getsockopt, sockopt, SockaddrIn, SockaddrIn6};
    match local {
        SocketAddr::V4(_) => getsockopt(stream, sockopt::OriginalDst).map(|a| SockaddrIn::from(a).into()),
        SocketAddr::V6(_) => getsockopt(stream, sockopt::Ip6tOriginalDst).map(|a| SockaddrIn6::from(a).into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn lookup(_stream: &TcpStream, _local: SocketAddr) -> Result<SocketAddr, &'static str> {
    Err("SO_ORIGINAL_DST is Linux only")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A direct (not redirected) connection reports the address it was
    /// accepted on, whether the kernel answers from conntrack or refuses.
    #[tokio::test]
    async fn direct_connection_reports_the_local_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let local = stream.local_addr().unwrap();
        assert_eq!(original_dst(&stream, local), addr);
    }
}
