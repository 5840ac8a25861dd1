//! zdm-proxy: the bundled CQL dual-write proxy.
