//! AWS Lambda packages: a single-file handler wrapped in a small blocking Runtime API loop
//! (the template), and the deployment zip holding `bootstrap`, made byte for byte the same from
//! the same binary.

use crate::core::error::{Error, Result};

/// The generated `main.rs` of a single-file Lambda handler: the Runtime API loop.
pub const RUNTIME_TEMPLATE: &str = include_str!("runtime_template.rs.in");

/// Where a Lambda container image keeps the bootstrap, as Lambda's `provided` images do.
pub const IMAGE_BOOTSTRAP: &str = "/var/runtime/bootstrap";
/// The working directory of a Lambda container image: the function's code directory.
pub const IMAGE_TASK_DIR: &str = "/var/task";

/// The handler file of a single-file source: the user's code with `handle_request` made
/// visible to the generated `main.rs` beside it.
pub fn handler_source(code: &str, path: &std::path::Path) -> Result<String> {
    // The definition starts a line (as rustfmt and ruchy write it), maybe already `pub`.
    let definition = code.match_indices("fn handle_request").find_map(|(at, _)| {
        let after = code[at + "fn handle_request".len()..].trim_start();
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let prefix = code[line_start..at].trim();
        let is_definition =
            after.starts_with(['(', '<']) && ["", "pub", "pub(crate)"].contains(&prefix);
        is_definition.then_some((line_start, prefix.is_empty()))
    });
    match definition {
        Some((line_start, true)) => Ok(format!(
            "{}pub(crate) {}",
            &code[..line_start],
            code[line_start..].trim_start_matches([' ', '\t'])
        )),
        Some((_, false)) => Ok(code.to_string()),
        None => Err(Error::InvalidInput {
            what: "Lambda handler",
            value: path.display().to_string(),
            reason: "a single-file Lambda function defines `fn handle_request(event) -> response` at the start of a line (event: String or BTreeMap<String, String>; response: String, a map, or a Result of either); a Cargo project brings its own Runtime API loop".into(),
        }),
    }
}

/// A deterministic zip holding one executable, `name`, deflated at libdeflate's best level:
/// its time is `epoch` (clamped to 1980, zip's first year) and its mode 0755.
pub fn zip(name: &str, data: &[u8], epoch: u64) -> Vec<u8> {
    let mut compressor =
        libdeflater::Compressor::new(libdeflater::CompressionLvl::new(12).expect("a valid level"));
    let mut deflated = vec![0; compressor.deflate_compress_bound(data.len())];
    let n = compressor
        .deflate_compress(data, &mut deflated)
        .expect("the buffer is libdeflate's own bound");
    deflated.truncate(n);
    let crc = libdeflater::crc32(data);
    let (time, date) = dos_time(epoch);
    let (name, size, compressed) = (name.as_bytes(), data.len() as u32, deflated.len() as u32);

    // The fields both headers share: version needed 2.0, no flags, deflate, time, CRC, sizes.
    let common = |out: &mut Vec<u8>| {
        out.extend(20u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(8u16.to_le_bytes());
        out.extend(time.to_le_bytes());
        out.extend(date.to_le_bytes());
        out.extend(crc.to_le_bytes());
        out.extend(compressed.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
    };
    let mut out = Vec::with_capacity(deflated.len() + 2 * name.len() + 128);
    out.extend(0x0403_4b50u32.to_le_bytes());
    common(&mut out);
    out.extend(name);
    out.extend(&deflated);
    let central = out.len() as u32;
    out.extend(0x0201_4b50u32.to_le_bytes());
    // Made by Unix (3), zip 2.0: the external attributes carry the Unix mode.
    out.extend(((3u16 << 8) | 20).to_le_bytes());
    common(&mut out);
    out.extend(0u16.to_le_bytes()); // comment length
    out.extend(0u16.to_le_bytes()); // disk
    out.extend(0u16.to_le_bytes()); // internal attributes
    out.extend((0o100_755u32 << 16).to_le_bytes());
    out.extend(0u32.to_le_bytes()); // the local header's offset
    out.extend(name);
    let central_size = out.len() as u32 - central;
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(central_size.to_le_bytes());
    out.extend(central.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// MS-DOS time and date of `epoch` (UTC), from 1980-01-01 00:00:00 on.
fn dos_time(epoch: u64) -> (u16, u16) {
    let epoch = epoch.max(315_532_800);
    let (days, seconds) = (epoch / 86_400, epoch % 86_400);
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
    let year = (yoe + era * 400 + i64::from(month <= 2)).min(2107) as u16;
    let time = ((seconds / 3600) as u16) << 11
        | ((seconds % 3600 / 60) as u16) << 5
        | (seconds % 60 / 2) as u16;
    let date = (year - 1980) << 9 | month << 5 | day;
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_times_start_in_1980_and_follow_the_calendar() {
        assert_eq!(dos_time(0), (0, 1 << 5 | 1));
        // 2024-02-29 13:45:10 UTC.
        let (time, date) = dos_time(1_709_214_310);
        assert_eq!((date >> 9) + 1980, 2024);
        assert_eq!((date >> 5) & 0xf, 2);
        assert_eq!(date & 0x1f, 29);
        assert_eq!(
            (time >> 11, (time >> 5) & 0x3f, (time & 0x1f) * 2),
            (13, 45, 10)
        );
    }

    #[test]
    fn the_zip_is_the_same_for_the_same_binary_and_holds_it() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let zip_bytes = zip("bootstrap", &data, 0);
        assert_eq!(zip_bytes, zip("bootstrap", &data, 0));
        assert_ne!(zip_bytes, zip("bootstrap", &data, 1_700_000_000));
        // The deflated member inflates back to the binary, with the CRC in the header.
        let name_end = 30 + "bootstrap".len();
        assert_eq!(&zip_bytes[30..name_end], b"bootstrap");
        let compressed = u32::from_le_bytes(zip_bytes[18..22].try_into().unwrap()) as usize;
        let mut inflated = vec![0; data.len()];
        let n = libdeflater::Decompressor::new()
            .deflate_decompress(&zip_bytes[name_end..name_end + compressed], &mut inflated)
            .unwrap();
        assert_eq!(&inflated[..n], &data[..]);
        let crc = u32::from_le_bytes(zip_bytes[14..18].try_into().unwrap());
        assert_eq!(crc, libdeflater::crc32(&data));
    }

    #[test]
    fn handle_request_is_made_visible_or_its_absence_explained() {
        let path = std::path::Path::new("h.rs");
        let code = "use std::x;\nfn handle_request(e: String) -> String { e }\nfn main() {}\n";
        let wrapped = handler_source(code, path).unwrap();
        assert!(
            wrapped.contains("\npub(crate) fn handle_request(e: String)"),
            "{wrapped}"
        );
        let error = handler_source("fn main() {}", path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("defines `fn handle_request(event) -> response`"),
            "{error}"
        );
        // A call or a longer name is not the definition; a public one stays as it is.
        assert!(handler_source("fn main() { handle_request(1) }", path).is_err());
        assert!(handler_source("fn handle_request_v2() {}", path).is_err());
        let public = "pub fn handle_request(e: String) -> String { e }\n";
        assert_eq!(handler_source(public, path).unwrap(), public);
    }
}
