//! A client channel on a data plane's gRPC Unix socket (`cnf-dataplane --grpc-socket`): plain HTTP/2 over the
//! socket, no TLS, as the daemon serves it there (the socket is 0600, for local tools and tests).

use std::path::PathBuf;

use tonic::transport::{Channel, Endpoint};

/// Connects to the Unix socket `sock`. The URI is a placeholder the connector ignores (tonic needs one).
pub async fn connect_unix(sock: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
}
