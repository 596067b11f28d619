//! Contact sheets: a grid of images written as an 8-bit grayscale PNG.

use std::io::Write;

use crate::render::Glyph;

/// Why a sheet could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SheetError {
    /// Nothing to draw, or images of different sizes.
    #[error("a contact sheet needs at least one image and images of one size")]
    Shape,
    /// The PNG encoder or the file failed.
    #[error("writing the PNG failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// Encode `rows` (one row of images per class) as a PNG into `out`, each
/// pixel drawn as a `scale × scale` block, with a 1-block grey gutter between images.
pub fn write_contact_sheet(out: impl Write, rows: &[Vec<Glyph>], scale: usize) -> Result<(), SheetError> {
    let size = rows.first().and_then(|row| row.first()).map(|glyph| glyph.size).ok_or(SheetError::Shape)?;
    if rows.iter().flatten().any(|glyph| glyph.size != size) || scale == 0 {
        return Err(SheetError::Shape);
    }
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let cell = size + 1;
    let (width, height) = ((columns * cell + 1) * scale, (rows.len() * cell + 1) * scale);
    let mut canvas = vec![90u8; width * height];
    for (row_index, row) in rows.iter().enumerate() {
        for (column_index, glyph) in row.iter().enumerate() {
            for (pixel_index, &value) in glyph.pixels.iter().enumerate() {
                let (y, x) = (row_index * cell + 1 + pixel_index / size, column_index * cell + 1 + pixel_index % size);
                for dy in 0..scale {
                    let start = (y * scale + dy) * width + x * scale;
                    canvas[start..start + scale].fill(value);
                }
            }
        }
    }
    let mut encoder = png::Encoder::new(out, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&canvas)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_has_the_grid_dimensions_and_pixels() {
        let glyph = |value| Glyph { size: 2, pixels: vec![value; 4] };
        let rows = vec![vec![glyph(255), glyph(0)], vec![glyph(128)]];
        let mut bytes = Vec::new();
        write_contact_sheet(&mut bytes, &rows, 2).expect("written");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("png");
        let mut buffer = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buffer).expect("frame");
        assert_eq!((info.width, info.height), (2 * 7, 2 * 7));
        // Image (0, 0) starts after the gutter at block (1, 1); image (1, 0) at block (1, 4).
        assert_eq!(buffer[2 * 14 + 2], 255);
        assert_eq!(buffer[2 * 14 + 8], 0);
        assert_eq!(buffer[(4 * 2) * 14 + 2], 128);
        assert_eq!(buffer[0], 90);
        assert!(write_contact_sheet(Vec::new(), &[], 1).is_err());
    }
}
