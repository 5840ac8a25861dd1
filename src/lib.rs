//! zdm-run: the orchestrator library.
