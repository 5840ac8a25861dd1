//! What the operator sees and sets: the settings and their validation (`config`, one
//! cluster's in `config_cluster`, each value parsed by `config_values`, every problem reported
//! by `config_problems`), TLS on both sides (`tls`), live reload (`reload`), the Prometheus
//! metrics (`metrics`, written by `exposition`), and the HTTP endpoints that serve health,
//! metrics and reload (`http`).

pub mod config;
pub mod config_cluster;
pub mod config_problems;
mod config_values;
pub mod exposition;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod tls;
