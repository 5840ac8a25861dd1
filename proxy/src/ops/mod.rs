//! What the operator sees and sets: the settings and their validation (`config`,
//! `config_problems`), TLS on both sides (`tls`), live reload (`reload`), and the Prometheus
//! metrics (`metrics`).

pub mod config;
pub mod config_problems;
pub mod metrics;
pub mod reload;
pub mod tls;
