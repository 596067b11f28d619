//! IDX files, the format of MNIST, EMNIST and KMNIST: a big-endian header
//! (two zero bytes, a type code, the number of dimensions, each dimension as
//! u32) and the values, optionally gzip-compressed. EMNIST stores images
//! transposed and numbers its letter classes from 1; [`LabelledImages`]
//! undoes both when asked.

use std::io::Read;
use std::path::Path;

use crate::render::Glyph;

/// Why an IDX file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// The file could not be read or decompressed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The bytes are not a valid IDX array.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// An IDX array: its dimensions and its values (every type code widened to f64).
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f64>,
}

/// Parse IDX bytes (gzip-compressed or not). `name` labels errors.
pub fn parse_idx(name: &str, bytes: &[u8]) -> Result<IdxArray, IdxError> {
    let format = |message: String| IdxError::Format { path: name.to_string(), message };
    let decompressed;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|source| IdxError::Io { path: name.to_string(), source })?;
        decompressed = out;
        &decompressed[..]
    } else {
        bytes
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(format("not an IDX file (the first two bytes must be zero)".to_string()));
    }
    let (code, rank) = (bytes[2], bytes[3] as usize);
    let width = match code {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => return Err(format(format!("unknown type code {other:#04x}"))),
    };
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format(format!("truncated header ({rank} dimensions)")));
    }
    let dims: Vec<usize> = bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let count = dims.iter().try_fold(1usize, |total, &d| total.checked_mul(d)).ok_or_else(|| format("dimensions overflow".to_string()))?;
    let body = &bytes[header..];
    if body.len() != count * width {
        return Err(format(format!("dimensions {dims:?} need {} bytes of values, found {}", count * width, body.len())));
    }
    let values = body
        .chunks_exact(width)
        .map(|c| match code {
            0x08 => c[0] as f64,
            0x09 => c[0] as i8 as f64,
            0x0B => i16::from_be_bytes([c[0], c[1]]) as f64,
            0x0C => i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64,
            0x0D => f32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64,
            _ => f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Ok(IdxArray { dims, values })
}

/// Read and parse one IDX file.
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let bytes = std::fs::read(path).map_err(|source| IdxError::Io { path: path.display().to_string(), source })?;
    parse_idx(&path.display().to_string(), &bytes)
}

/// How a labelled IDX data set is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdxLayout {
    /// Images are stored transposed (EMNIST).
    pub transposed: bool,
    /// Subtract this from every label (EMNIST letters: 1).
    pub label_offset: u32,
}

/// Square grayscale images with class labels, from an IDX image file and an IDX label file.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImages {
    /// (class, image) in file order.
    pub items: Vec<(u32, Glyph)>,
}

impl LabelledImages {
    /// Load `images` (n × s × s, values 0–255) and `labels` (n).
    pub fn load(images: &Path, labels: &Path, layout: IdxLayout) -> Result<Self, IdxError> {
        Self::from_arrays(&images.display().to_string(), read_idx(images)?, read_idx(labels)?, layout)
    }

    /// Pair up already parsed arrays; `name` labels errors.
    pub fn from_arrays(name: &str, images: IdxArray, labels: IdxArray, layout: IdxLayout) -> Result<Self, IdxError> {
        let format = |message: String| IdxError::Format { path: name.to_string(), message };
        let [count, rows, columns] = images.dims[..] else {
            return Err(format(format!("images must have 3 dimensions, found {:?}", images.dims)));
        };
        if rows != columns || labels.dims != [count] {
            return Err(format(format!(
                "images {:?} and labels {:?} do not match (square images, one label each)",
                images.dims, labels.dims
            )));
        }
        let size = rows;
        let mut items = Vec::with_capacity(count);
        for (index, chunk) in images.values.chunks_exact(size * size).enumerate() {
            let label = labels.values[index];
            let class = label as i64 - layout.label_offset as i64;
            if class < 0 || label.fract() != 0.0 {
                return Err(format(format!("label {label} of image {index} is not a class after subtracting {}", layout.label_offset)));
            }
            let pixel = |r: usize, c: usize| if layout.transposed { chunk[c * size + r] } else { chunk[r * size + c] };
            let pixels = (0..size * size).map(|i| pixel(i / size, i % size).round().clamp(0.0, 255.0) as u8).collect();
            items.push((class as u32, Glyph { size, pixels }));
        }
        Ok(LabelledImages { items })
    }

    /// The images of one class, in file order.
    pub fn of_class(&self, class: u32) -> Vec<&Glyph> {
        self.items.iter().filter(|(c, _)| *c == class).map(|(_, glyph)| glyph).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn idx_bytes(code: u8, dims: &[u32], values: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, code, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(values);
        bytes
    }

    #[test]
    fn every_type_code_is_read_big_endian() {
        let cases: Vec<(u8, Vec<u8>, f64)> = vec![
            (0x08, vec![200], 200.0),
            (0x09, vec![0xfe], -2.0),
            (0x0B, (-300i16).to_be_bytes().to_vec(), -300.0),
            (0x0C, 70_000i32.to_be_bytes().to_vec(), 70_000.0),
            (0x0D, 1.5f32.to_be_bytes().to_vec(), 1.5),
            (0x0E, (-0.25f64).to_be_bytes().to_vec(), -0.25),
        ];
        for (code, value, expected) in cases {
            let array = parse_idx("t", &idx_bytes(code, &[1], &value)).expect("valid");
            assert_eq!(array, IdxArray { dims: vec![1], values: vec![expected] }, "type code {code:#x}");
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        assert!(matches!(parse_idx("t", &[1, 0, 8, 1]), Err(IdxError::Format { .. })));
        let error = parse_idx("t", &idx_bytes(0x07, &[1], &[0])).expect_err("bad code").to_string();
        assert!(error.contains("unknown type code"), "{error}");
        let error = parse_idx("t", &idx_bytes(0x08, &[3], &[0, 1])).expect_err("short").to_string();
        assert!(error.contains("need 3 bytes"), "{error}");
    }

    #[test]
    fn gzip_files_and_emnist_layout() {
        let directory = tempfile::tempdir().expect("tempdir");
        // Two 2×2 images stored transposed, labels 1-based as in EMNIST letters.
        let images = idx_bytes(0x08, &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let labels = idx_bytes(0x08, &[2], &[1, 3]);
        let images_path = directory.path().join("images-idx3-ubyte.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&images).expect("gzip");
        std::fs::write(&images_path, encoder.finish().expect("gzip")).expect("write");
        let labels_path = directory.path().join("labels-idx1-ubyte");
        std::fs::write(&labels_path, labels).expect("write");
        let set = LabelledImages::load(&images_path, &labels_path, IdxLayout { transposed: true, label_offset: 1 }).expect("valid");
        assert_eq!(set.items[0], (0, Glyph { size: 2, pixels: vec![1, 3, 2, 4] }));
        assert_eq!(set.items[1], (2, Glyph { size: 2, pixels: vec![5, 7, 6, 8] }));
        assert_eq!(set.of_class(2).len(), 1);
        let plain = LabelledImages::load(&images_path, &labels_path, IdxLayout::default()).expect("valid");
        assert_eq!(plain.items[0], (1, Glyph { size: 2, pixels: vec![1, 2, 3, 4] }));
        // A label of 0 cannot be shifted down by 1.
        std::fs::write(&labels_path, idx_bytes(0x08, &[2], &[0, 1])).expect("write");
        assert!(LabelledImages::load(&images_path, &labels_path, IdxLayout { transposed: true, label_offset: 1 }).is_err());
    }
}
