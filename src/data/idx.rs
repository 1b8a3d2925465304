//! A reader for the IDX file format, the container MNIST and Fashion-MNIST ship in.
//!
//! An IDX file is a 4-byte magic number, then one big-endian `u32` per dimension, then the
//! elements in row-major order:
//!
//! ```text
//! byte 0, 1   always 0
//! byte 2      element type: 0x08 = u8 (the only one glassbox reads), 0x09 = i8, 0x0B = i16,
//!             0x0C = i32, 0x0D = f32, 0x0E = f64
//! byte 3      number of dimensions, n
//! 4 * n       the dimensions, big-endian u32 each
//! rest        the elements, exactly the product of the dimensions of them
//! ```
//!
//! Files are often distributed gzipped; [`read_idx`] recognises gzip by its magic bytes
//! (`1f 8b`), not by the file name, so a renamed file still loads.
//!
//! The header comes from outside the program, so it is never trusted: the element count is
//! computed with checked multiplication, a plain file's declared size is compared with its real
//! length before any data is read, and a gzip stream is read through a limit of one byte past the
//! declared size, so a lying header can neither overflow, nor make the reader allocate more
//! memory than the data actually present, nor hide trailing bytes.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

/// The IDX element-type code for unsigned bytes, the only element type this reader accepts.
pub const IDX_TYPE_U8: u8 = 0x08;

/// Every gzip stream starts with these two bytes (RFC 1952), and no IDX file can: IDX files
/// start with two zero bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most memory reserved up front for the data; beyond it the buffer grows as bytes actually
/// arrive, so a header that declares terabytes costs nothing until terabytes show up.
const MAX_UP_FRONT_RESERVATION: u64 = 256 << 20;

/// Deflate cannot expand its input by more than about 1032 times, so a gzip stream of `n` bytes
/// can never produce more than `1032 * n`: reserving more than that for it would be waste.
const DEFLATE_MAX_EXPANSION: u64 = 1032;

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions from the header, outermost first (for MNIST images: count, rows, cols).
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

// A derived Debug would print every element: tens of millions of numbers for MNIST.
impl std::fmt::Debug for IdxArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdxArray").field("dims", &self.dims).field("data_len", &self.data.len()).finish_non_exhaustive()
    }
}

/// Reads an IDX file of unsigned bytes, gzipped or plain.
///
/// Every problem, from a missing file to a corrupt gzip stream, a truncated or over-long body,
/// an unsupported element type or a header whose size overflows, is an `Err` whose message names
/// the file and the problem.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let fail = |message: String| DataError::new(path, message);
    let mut file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let file_len = file.metadata().map_err(|e| fail(format!("cannot read the file's metadata: {e}")))?.len();

    // Peek at the first two bytes to tell gzip from plain, then put them back in front.
    let mut prefix = Vec::with_capacity(GZIP_MAGIC.len());
    (&mut file)
        .take(GZIP_MAGIC.len() as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| fail(format!("read failed: {e}")))?;
    let is_gzip = prefix == GZIP_MAGIC;
    let reader = Cursor::new(prefix).chain(file);

    if is_gzip {
        let source = Source::Gzip { compressed_len: file_len };
        parse(path, MultiGzDecoder::new(reader), source)
    } else {
        parse(path, reader, Source::Plain { total_len: file_len })
    }
}

/// Parses an IDX array held in memory, gzipped or plain; `name` is what error messages call it.
///
/// Applies exactly the checks of [`read_idx`], which makes it the convenient way to test them.
pub fn read_idx_from_bytes(name: &str, bytes: &[u8]) -> Result<IdxArray, DataError> {
    let path = Path::new(name);
    if bytes.starts_with(&GZIP_MAGIC) {
        let source = Source::Gzip { compressed_len: bytes.len() as u64 };
        parse(path, MultiGzDecoder::new(bytes), source)
    } else {
        let source = Source::Plain { total_len: bytes.len() as u64 };
        parse(path, bytes, source)
    }
}

/// Where the IDX bytes come from, which decides what can be checked before reading the body.
#[derive(Clone, Copy)]
enum Source {
    /// Uncompressed, `total_len` bytes in all: the declared size can be checked up front.
    Plain { total_len: u64 },
    /// Gzip-compressed, `compressed_len` bytes: the true size is only known after decoding.
    Gzip { compressed_len: u64 },
}

impl Source {
    /// How messages refer to the bytes being parsed.
    fn holder(self) -> &'static str {
        match self {
            Source::Plain { .. } => "the file",
            Source::Gzip { .. } => "the decompressed data",
        }
    }
}

fn parse<R: Read>(path: &Path, mut reader: R, source: Source) -> Result<IdxArray, DataError> {
    let fail = |message: String| DataError::new(path, message);
    let io_fail = |e: io::Error| match source {
        Source::Plain { .. } => fail(format!("read failed: {e}")),
        Source::Gzip { .. } => {
            fail(format!("corrupt gzip stream ({e}): the .gz file is damaged or cut short; download it again"))
        }
    };
    let holder = source.holder();

    let magic = read_at_most(&mut reader, 4).map_err(io_fail)?;
    if magic.len() < 4 {
        return Err(fail(format!(
            "truncated header: an IDX file starts with a 4-byte magic number but {holder} holds \
             only {} bytes",
            magic.len()
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(fail(format!(
            "not an IDX file: it starts with bytes {:02x} {:02x} {:02x} {:02x}, but an IDX magic \
             number starts with two zero bytes",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    let type_code = magic[2];
    if type_code != IDX_TYPE_U8 {
        return Err(fail(unsupported_type_message(type_code)));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(fail("header declares 0 dimensions; an IDX array needs at least one".to_string()));
    }

    let header_len = 4 + 4 * ndims;
    let dim_bytes = read_at_most(&mut reader, 4 * ndims).map_err(io_fail)?;
    if dim_bytes.len() < 4 * ndims {
        return Err(fail(format!(
            "truncated header: it declares {ndims} dimensions, which take {header_len} header \
             bytes, but {holder} holds only {}",
            4 + dim_bytes.len()
        )));
    }
    let dims: Vec<u64> =
        dim_bytes.chunks_exact(4).map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))).collect();
    let shape = shape_text(&dims);

    let declared = match dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)) {
        None => return Err(fail(format!("header declares {shape} elements, more than 2^64; the header is corrupt"))),
        // Vec lengths are capped at isize::MAX bytes, so anything larger cannot be held at all.
        Some(n) if n > isize::MAX as u64 => {
            return Err(fail(format!(
                "header declares {shape} = {n} bytes of data, more than this machine can \
                 address; the header is probably corrupt"
            )))
        }
        Some(n) => n,
    };
    let declared_text = if dims.len() == 1 { declared.to_string() } else { format!("{shape} = {declared}") };
    let truncated = |actual: u64| {
        fail(format!(
            "truncated: header declares {declared_text} bytes of data but {holder} holds only \
             {actual}"
        ))
    };

    let reservation = match source {
        Source::Plain { total_len } => {
            // The length is known, so a lying header is caught before reading a single byte.
            let body_len = total_len.saturating_sub(header_len as u64);
            if body_len < declared {
                return Err(truncated(body_len));
            }
            if body_len > declared {
                return Err(fail(format!(
                    "trailing bytes: header declares {declared_text} bytes of data but the file \
                     holds {body_len}, {} more than that",
                    body_len - declared
                )));
            }
            declared
        }
        Source::Gzip { compressed_len } => declared.min(compressed_len.saturating_mul(DEFLATE_MAX_EXPANSION)),
    };
    let reservation = reservation.min(MAX_UP_FRONT_RESERVATION);
    let mut data = Vec::with_capacity(usize::try_from(reservation).unwrap_or(0));
    // One byte past the declared size is enough to detect trailing data without buffering an
    // unbounded amount of it. For gzip, reaching the end of the stream inside this limit is
    // also what makes the decoder verify the CRC and length in the gzip trailer.
    (&mut reader).take(declared + 1).read_to_end(&mut data).map_err(io_fail)?;
    let actual = data.len() as u64;
    if actual < declared {
        return Err(truncated(actual));
    }
    if actual > declared {
        if let Source::Gzip { .. } = source {
            // Corruption inside a gzip stream often shows up as the wrong amount of output
            // before the decoder reaches the checksum that would name it. Decoding the rest
            // (into nothing, so memory stays bounded) lets the checksum speak first, and
            // otherwise measures the excess.
            let extra = io::copy(&mut reader, &mut io::sink()).map_err(io_fail)?;
            return Err(fail(format!(
                "trailing bytes: header declares {declared_text} bytes of data but {holder} \
                 holds {}, {} more than that",
                declared + 1 + extra,
                1 + extra
            )));
        }
        return Err(fail(format!(
            "trailing bytes: the file grew while it was read, past the {declared_text} bytes \
             of data the header declares"
        )));
    }

    let dims = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| fail(format!("header dimensions {shape} do not fit this machine's usize")))?;
    Ok(IdxArray { dims, data })
}

/// Reads up to `limit` bytes, fewer only if the stream ends first.
fn read_at_most<R: Read>(reader: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Dimensions written the way people write them: `60000x28x28`.
fn shape_text(dims: &[u64]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

fn unsupported_type_message(type_code: u8) -> String {
    let known = match type_code {
        0x09 => Some("signed byte"),
        0x0B => Some("16-bit integer"),
        0x0C => Some("32-bit integer"),
        0x0D => Some("32-bit float"),
        0x0E => Some("64-bit float"),
        _ => None,
    };
    match known {
        Some(name) => format!(
            "unsupported element type 0x{type_code:02x} ({name}): only 0x08 (unsigned byte) is \
             supported"
        ),
        None => format!(
            "unknown element type 0x{type_code:02x} in the magic number: IDX defines 0x08, 0x09, \
             0x0b, 0x0c, 0x0d and 0x0e, and only 0x08 (unsigned byte) is supported"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_small_plain_array() {
        let bytes = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
        let array = read_idx_from_bytes("small", &bytes).expect("valid IDX");
        assert_eq!(array.dims, vec![2, 3]);
        assert_eq!(array.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn zero_dimensions_are_rejected() {
        let err = read_idx_from_bytes("scalar", &[0, 0, 8, 0, 7]).unwrap_err();
        assert!(err.message().contains("0 dimensions"), "{err}");
    }

    #[test]
    fn a_zero_sized_dimension_is_an_empty_array() {
        let array = read_idx_from_bytes("empty", &[0, 0, 8, 1, 0, 0, 0, 0]).expect("valid IDX");
        assert_eq!(array.dims, vec![0]);
        assert!(array.data.is_empty());
    }

    #[test]
    fn debug_output_does_not_dump_the_data() {
        let array = IdxArray { dims: vec![1000], data: vec![0; 1000] };
        let text = format!("{array:?}");
        assert!(text.contains("data_len: 1000"), "{text}");
        assert!(text.len() < 100, "{text}");
    }
}
