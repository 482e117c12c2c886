//! Tests only: `tests/` checks the Helm chart, Dockerfiles, scripts, Grafana dashboard and generated docs
//! against the code they package (run with `cargo test -p buildvnf-packaging`).
