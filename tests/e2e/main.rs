//! End-to-end tests: a real coordinator on `127.0.0.1:0` and real workers,
//! in-process or as separate `groksweep` processes that the fault tests kill.

mod cli;
mod diffusion;
mod faults;
mod fixture;
mod hostile;
mod knobs;
mod operating;
mod results;
mod sweep;
mod tls;
