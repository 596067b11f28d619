//! Symbol images for the diffusion family, generated on the spot: no
//! downloads, the same bytes on every run.
//!
//! - [`font`]: a stroke font for the digits 0–9 (polylines in a unit box).
//! - [`render`]: [`GlyphSet`] draws class `c` as the numeral `c`, image
//!   `(seed, class, index)`; index 0 is the clean prototype, later indices are
//!   augmented (affine, elastic warp, stroke width, blur) with a configurable
//!   strength. Nothing depends on the modulus or on how many images are used.
//! - [`distinct`]: the check that no two classes look alike after normalisation.
//! - [`idx`]: reader for IDX files (MNIST / EMNIST / KMNIST format).
//! - [`sheet`]: contact sheets as PNG, so people can look at the data.

pub mod distinct;
pub mod font;
pub mod idx;
pub mod render;
pub mod sheet;

pub use distinct::{ClosestPair, DEFAULT_MIN_DISTANCE, DistinctnessError, check_distinct, normalised_distance};
pub use render::{Glyph, GlyphSet, GlyphSetError};
