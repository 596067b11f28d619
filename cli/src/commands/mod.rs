//! One module per subcommand.

pub(crate) mod analyze;
pub(crate) mod client;
pub(crate) mod coordinator;
pub(crate) mod glyphs;
pub(crate) mod llc;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod sql;
pub(crate) mod worker;
