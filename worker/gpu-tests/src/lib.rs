//! Nothing but a home for `tests/gpu.rs`: a tiny pack of each family trained
//! on a GPU backend against the same pack on flex. It is a package of its own
//! so that the test's build, which instantiates the whole training step for
//! two backends, gets its own optimisation level (none: `Cargo.toml`,
//! `[profile.dev.package.sweep-worker-gpu-tests]`) rather than the worker's
//! opt-level 3.
