//! What an image costs in a prompt, by the rule OpenAI documents for its vision models:
//! `low` detail is a flat 85 tokens; otherwise the image is scaled to fit 2048 × 2048,
//! then down so that its shorter side is at most 768, and each 512-pixel tile costs 170
//! tokens on top of 85. The size is read from the image itself when it travels as a
//! `data:` URL; an image known only by its address counts as a square one at high
//! detail ([`UNKNOWN_SIZE_TOKENS`]).

use base64::Engine;

use crate::domain::content::{ImageDetail, data_url};

pub const LOW_DETAIL_TOKENS: u32 = 85;
const TILE_TOKENS: u32 = 170;
/// A 1024 × 1024 image at high detail: four tiles.
pub const UNKNOWN_SIZE_TOKENS: u32 = LOW_DETAIL_TOKENS + 4 * TILE_TOKENS;

/// Every format read here has its size in the first bytes, except JPEG, whose frame
/// header may follow metadata; 64 KiB covers all but unusual files.
const SNIFF_BYTES: usize = 64 * 1024;

pub fn image_tokens(url: &str, detail: Option<ImageDetail>) -> u32 {
    if detail == Some(ImageDetail::Low) {
        return LOW_DETAIL_TOKENS;
    }
    dimensions(url).map_or(UNKNOWN_SIZE_TOKENS, |(w, h)| tile_tokens(w, h))
}

pub fn tile_tokens(width: u32, height: u32) -> u32 {
    if width == 0 || height == 0 {
        return LOW_DETAIL_TOKENS;
    }
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    let longest = w.max(h);
    if longest > 2048.0 {
        (w, h) = (w * 2048.0 / longest, h * 2048.0 / longest);
    }
    let shortest = w.min(h);
    if shortest > 768.0 {
        (w, h) = (w * 768.0 / shortest, h * 768.0 / shortest);
    }
    let tiles = (w / 512.0).ceil() * (h / 512.0).ceil();
    LOW_DETAIL_TOKENS + TILE_TOKENS * tiles as u32
}

/// Width and height of a PNG, GIF, JPEG or WebP image in a `data:` URL.
fn dimensions(url: &str) -> Option<(u32, u32)> {
    let (_, payload) = data_url(url)?;
    let chars = payload.len().min(SNIFF_BYTES / 3 * 4) / 4 * 4;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.get(..chars)?)
        .ok()?;
    png(&bytes)
        .or_else(|| gif(&bytes))
        .or_else(|| webp(&bytes))
        .or_else(|| jpeg(&bytes))
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        0,
    ]))
}

fn png(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") || b.get(12..16)? != b"IHDR" {
        return None;
    }
    let word = |at: usize| Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?));
    Some((word(16)?, word(20)?))
}

fn gif(b: &[u8]) -> Option<(u32, u32)> {
    if !(b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return None;
    }
    Some((le16(b, 6)?, le16(b, 8)?))
}

fn webp(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(b"RIFF") || b.get(8..12)? != b"WEBP" {
        return None;
    }
    match b.get(12..16)? {
        b"VP8 " => Some((le16(b, 26)? & 0x3fff, le16(b, 28)? & 0x3fff)),
        b"VP8L" => {
            let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
            Some((1 + (bits & 0x3fff), 1 + ((bits >> 14) & 0x3fff)))
        }
        b"VP8X" => Some((1 + le24(b, 24)?, 1 + le24(b, 27)?)),
        _ => None,
    }
}

/// Walks the marker segments to the first start-of-frame header.
fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(&[0xff, 0xd8]) {
        return None;
    }
    let mut at = 2;
    loop {
        if *b.get(at)? != 0xff {
            return None;
        }
        let marker = *b.get(at + 1)?;
        match marker {
            // Fill bytes and markers without a length.
            0xff => at += 1,
            0x01 | 0xd0..=0xd7 => at += 2,
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                return Some((be16(b, at + 7)?, be16(b, at + 5)?));
            }
            _ => at += 2 + usize::try_from(be16(b, at + 2)?).ok()?,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use base64::Engine;

    use super::*;

    fn data(bytes: &[u8], media: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!("data:{media};base64,{b64}")
    }

    fn png_of(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        b.extend(w.to_be_bytes());
        b.extend(h.to_be_bytes());
        b.extend([8, 6, 0, 0, 0]);
        b
    }

    /// The worked examples of OpenAI's vision guide.
    #[test]
    fn tile_rule_matches_the_documented_examples() {
        assert_eq!(tile_tokens(1024, 1024), 765);
        assert_eq!(tile_tokens(2048, 4096), 1105);
        assert_eq!(tile_tokens(4096, 8192), 1105);
        assert_eq!(tile_tokens(512, 512), 255);
    }

    #[test]
    fn sizes_are_read_from_png_gif_webp_and_jpeg() {
        assert_eq!(
            dimensions(&data(&png_of(1024, 1024), "image/png")),
            Some((1024, 1024))
        );
        let gif = [b"GIF89a".as_slice(), &[0x00, 0x02, 0x00, 0x01]].concat();
        assert_eq!(dimensions(&data(&gif, "image/gif")), Some((512, 256)));
        let mut vp8x = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        vp8x.extend([0xff, 0x03, 0x00, 0xff, 0x01, 0x00]);
        assert_eq!(dimensions(&data(&vp8x, "image/webp")), Some((1024, 512)));
        // SOI, an APP0 segment of 16 bytes, then a baseline frame header (800 × 600).
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend([0u8; 14]);
        jpeg.extend([0xff, 0xc0, 0x00, 0x11, 0x08, 0x02, 0x58, 0x03, 0x20, 0x03]);
        assert_eq!(dimensions(&data(&jpeg, "image/jpeg")), Some((800, 600)));
    }

    #[test]
    fn unknown_sizes_and_low_detail_use_the_fixed_figures() {
        assert_eq!(
            image_tokens("https://example.com/cat.png", None),
            UNKNOWN_SIZE_TOKENS
        );
        assert_eq!(
            image_tokens("data:image/png;base64,!!!", None),
            UNKNOWN_SIZE_TOKENS
        );
        let big = data(&png_of(4096, 8192), "image/png");
        assert_eq!(image_tokens(&big, Some(ImageDetail::High)), 1105);
        assert_eq!(
            image_tokens(&big, Some(ImageDetail::Low)),
            LOW_DETAIL_TOKENS
        );
    }
}
