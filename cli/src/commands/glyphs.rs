//! `groksweep glyphs`: a contact sheet of the symbol images.

use anyhow::Context;
use sweep_glyphs::sheet::write_contact_sheet;
use sweep_glyphs::{DEFAULT_MIN_DISTANCE, GlyphSet, check_distinct};

use crate::args::GlyphsArgs;

/// Write the sheet and say where it is.
pub(crate) fn run(args: GlyphsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.modulus >= 2, "--modulus must be at least 2");
    anyhow::ensure!(args.per_class >= 1, "--per-class must be at least 1");
    let set = GlyphSet::new(args.seed, args.image_size, args.augmentation)?;
    set.check_classes(args.modulus)?;
    let closest = check_distinct(&set, args.modulus, DEFAULT_MIN_DISTANCE)?;
    let rows: Vec<_> = (0..args.modulus).map(|class| (0..args.per_class).map(|index| set.image(class, index)).collect()).collect();
    let file = std::fs::File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    write_contact_sheet(std::io::BufWriter::new(file), &rows, args.scale)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({} classes × {} images, {} px, augmentation {}){}",
        args.out.display(),
        args.modulus,
        args.per_class,
        args.image_size,
        args.augmentation,
        closest.map_or_else(String::new, |pair| format!(
            "; closest pair of classes: {} and {}, normalised distance {:.3}",
            pair.first, pair.second, pair.distance
        ))
    );
    Ok(())
}
