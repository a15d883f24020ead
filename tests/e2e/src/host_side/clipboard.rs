//! The host's side of the shared-clipboard checks (`tests/e2e/guest/steps/80-clipboard.sh`): the host
//! sets its clipboard, reads what the guest offers, and switches the mode, all through the control
//! endpoint (`clipboard.set`, `clipboard.get`, `clipboard.mode`).
//!
//! | Verb | Does | Answers |
//! |---|---|---|
//! | `clip-mode MODE` | `clipboard.mode` set to MODE | the mode the endpoint reports |
//! | `clip-set SAMPLE` | `clipboard.set` of the [`Sample`], from a file in the run directory | the sample's size in bytes (host form) |
//! | `clip-check FORMAT SAMPLE` | `clipboard.get` of FORMAT; the guest must be the source and the data the sample | `match N` |
//! | `clip-refused FORMAT` | `clipboard.get` of FORMAT; must be refused by the mode (`VERR_ACCESS_DENIED`) | the endpoint's error |
//! | `clip-timeout FORMAT MS` | `clipboard.get` with `timeout_ms` MS from a guest that does not answer; must time out, in time | `timed out after N ms` |
//! | `clip-read-loop FORMAT SAMPLE COUNT` | COUNT × `clip-check` | `COUNT reads in N ms` |
//!
//! The samples are the same bytes the guest script produces, so each side can check the other's data:
//! non-ASCII text over two lines, HTML, a small bitmap, and 1 KiB / 1 MiB of text in 64-byte lines (the
//! line is [`LINE`], as `yes LINE | head -c SIZE` writes it in the guest).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::host_agent::{HostAgent, HostContext};

/// The text sample: non-ASCII from several scripts, two lines, a trailing newline.
pub const TEXT: &str = "Grüße aus dem Gast und vom Host: ✓ 日本語 🦀\nzweite Zeile\n";

/// The HTML sample.
pub const HTML: &str = "<p>Grüße <b>fett</b> &amp; ✓</p>";

/// The line the size samples repeat (63 characters and a newline).
pub const LINE: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-";

/// How much longer than its own timeout a read of a silent guest may take.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// The timeout of `clipboard.get` in checks that expect the guest to answer.
const ANSWER_TIMEOUT_MS: u64 = 20_000;

/// A content the host sets or expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// [`TEXT`].
    Text,
    /// [`HTML`].
    Html,
    /// [`bitmap`]: a 3x2 24-bit BMP file.
    Bitmap,
    /// 1 KiB of [`LINE`]s.
    Text1k,
    /// 1 MiB of [`LINE`]s.
    Text1m,
}

impl Sample {
    /// Every sample.
    const ALL: [Self; 5] = [
        Self::Text,
        Self::Html,
        Self::Bitmap,
        Self::Text1k,
        Self::Text1m,
    ];

    fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|sample| sample.name() == name)
            .ok_or_else(|| {
                format!("unknown sample '{name}' (text, html, bitmap, text-1k, text-1m)")
            })
    }

    /// The sample's bytes in host form (UTF-8 text and HTML, a BMP file).
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Self::Text => TEXT.as_bytes().to_vec(),
            Self::Html => HTML.as_bytes().to_vec(),
            Self::Bitmap => bitmap(),
            Self::Text1k => lines(1 << 10),
            Self::Text1m => lines(1 << 20),
        }
    }

    /// The sample's name.
    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Html => "html",
            Self::Bitmap => "bitmap",
            Self::Text1k => "text-1k",
            Self::Text1m => "text-1m",
        }
    }

    /// The `clipboard.set` request that puts the sample on the host clipboard, from a file in `dir`
    /// (a request line is limited to 64 KiB; the file has no limit but the service's).
    fn set_request(self, dir: &Path) -> Result<Value, String> {
        let path = dir.join(format!("clipboard-sample-{}", self.name()));
        std::fs::write(&path, self.bytes())
            .map_err(|error| format!("writing {}: {error}", path.display()))?;
        let key = match self {
            Self::Bitmap => "bitmap_path",
            Self::Html => "html_path",
            Self::Text | Self::Text1k | Self::Text1m => "text_path",
        };
        Ok(json!({"op": "clipboard.set", key: path.to_string_lossy()}))
    }
}

/// `size` bytes of [`LINE`]s, each with its newline.
fn lines(size: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(size);
    while text.len() < size {
        text.extend_from_slice(LINE.as_bytes());
        text.push(b'\n');
    }
    text.truncate(size);
    text
}

/// A 3x2 24-bit BMP file (rows padded to 12 bytes).
pub fn bitmap() -> Vec<u8> {
    let pixels: [u8; 24] = [
        0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0x00, 0, 0, 0, //
        0xFF, 0xFF, 0xFF, 0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0, 0, 0,
    ];
    let mut bmp = Vec::with_capacity(54 + pixels.len());
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&(54 + pixels.len() as u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&3i32.to_le_bytes());
    bmp.extend_from_slice(&2i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes());
    bmp.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 16]);
    bmp.extend_from_slice(&pixels);
    bmp
}

/// The data of a `clipboard.get` response in host form; `None` for an empty clipboard.
fn response_bytes(response: &Value) -> Result<Option<Vec<u8>>, String> {
    if response.get("empty") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    if let Some(encoded) = response.get("bitmap_base64").and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Some)
            .map_err(|error| format!("bitmap_base64 is not base64: {error}"));
    }
    ["text", "html"]
        .iter()
        .find_map(|key| response.get(*key).and_then(Value::as_str))
        .map(|text| Some(text.as_bytes().to_vec()))
        .ok_or_else(|| format!("no data in the response {response}"))
}

/// One `clipboard.get` of `format` that must come from the guest and equal `sample`.
fn check(ctx: &HostContext, format: &str, sample: Sample) -> Result<usize, String> {
    let response = ctx.control(
        json!({"op": "clipboard.get", "format": format, "timeout_ms": ANSWER_TIMEOUT_MS}),
    )?;
    let source = response.get("source").and_then(Value::as_str);
    if source != Some("guest") {
        return Err(format!("the data came from {source:?}, not the guest"));
    }
    let data = response_bytes(&response)?.ok_or("the guest offered no data")?;
    let expected = sample.bytes();
    if data != expected {
        let shown = String::from_utf8_lossy(&data[..data.len().min(80)]).into_owned();
        return Err(format!(
            "got {} bytes starting {shown:?}, expected the {} bytes of {sample:?}",
            data.len(),
            expected.len()
        ));
    }
    Ok(data.len())
}

/// Adds the clipboard verbs to `agent`.
pub fn register(agent: HostAgent) -> HostAgent {
    agent
        .on("clip-mode", |ctx, args| {
            let [mode] = args else {
                return Err("usage: clip-mode MODE".to_owned());
            };
            let response = ctx.control(json!({"op": "clipboard.mode", "mode": mode}))?;
            Ok(response
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned())
        })
        .on("clip-set", |ctx, args| {
            let [sample] = args else {
                return Err("usage: clip-set SAMPLE".to_owned());
            };
            let sample = Sample::parse(sample)?;
            ctx.control(sample.set_request(ctx.run_dir())?)?;
            Ok(sample.bytes().len().to_string())
        })
        .on("clip-check", |ctx, args| {
            let [format, sample] = args else {
                return Err("usage: clip-check FORMAT SAMPLE".to_owned());
            };
            let size = check(ctx, format, Sample::parse(sample)?)?;
            Ok(format!("match {size}"))
        })
        .on("clip-refused", |ctx, args| {
            let [format] = args else {
                return Err("usage: clip-refused FORMAT".to_owned());
            };
            match ctx.control(json!({"op": "clipboard.get", "format": format})) {
                Ok(response) => Err(format!("the read was not refused: {response}")),
                Err(error) if error.contains("VERR_ACCESS_DENIED") => Ok(error),
                Err(error) => Err(format!("refused for another reason: {error}")),
            }
        })
        .on("clip-timeout", |ctx, args| {
            let [format, ms] = args else {
                return Err("usage: clip-timeout FORMAT MS".to_owned());
            };
            let ms: u64 = ms.parse().map_err(|_| format!("'{ms}' is not a number"))?;
            let started = Instant::now();
            let outcome =
                ctx.control(json!({"op": "clipboard.get", "format": format, "timeout_ms": ms}));
            let elapsed = started.elapsed();
            match outcome {
                Ok(response) => Err(format!("the silent guest answered: {response}")),
                Err(error) if !error.contains("timed out") => {
                    Err(format!("failed for another reason: {error}"))
                }
                Err(_) if elapsed > Duration::from_millis(ms) + TIMEOUT_GRACE => {
                    Err(format!("timed out only after {} ms", elapsed.as_millis()))
                }
                Err(_) => Ok(format!("timed out after {} ms", elapsed.as_millis())),
            }
        })
        .on("clip-read-loop", |ctx, args| {
            let [format, sample, count] = args else {
                return Err("usage: clip-read-loop FORMAT SAMPLE COUNT".to_owned());
            };
            let sample = Sample::parse(sample)?;
            let count: u32 = count
                .parse()
                .map_err(|_| format!("'{count}' is not a number"))?;
            let started = Instant::now();
            for _ in 0..count {
                check(ctx, format, sample)?;
            }
            Ok(format!(
                "{count} reads in {} ms",
                started.elapsed().as_millis()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_samples_are_whole_lines_of_the_guest_pattern() {
        let small = Sample::Text1k.bytes();
        assert_eq!(small.len(), 1024);
        assert_eq!(small.len() % (LINE.len() + 1), 0);
        assert!(small.ends_with(format!("{LINE}\n").as_bytes()));
        assert_eq!(Sample::Text1m.bytes().len(), 1 << 20);
    }

    #[test]
    fn the_bitmap_sample_is_a_bmp_file_of_its_own_size() {
        let bmp = bitmap();
        assert_eq!(&bmp[..2], b"BM");
        assert_eq!(
            u32::from_le_bytes(bmp[2..6].try_into().unwrap()) as usize,
            bmp.len()
        );
    }

    #[test]
    fn responses_decode_by_format() {
        let text = json!({"ok": true, "format": "text", "source": "guest", "text": "ä"});
        assert_eq!(
            response_bytes(&text).unwrap(),
            Some("ä".as_bytes().to_vec())
        );
        let bitmap = json!({"ok": true, "bitmap_base64": "Qk0="});
        assert_eq!(response_bytes(&bitmap).unwrap(), Some(b"BM".to_vec()));
        let empty = json!({"ok": true, "format": "html", "empty": true});
        assert_eq!(response_bytes(&empty).unwrap(), None);
        assert!(response_bytes(&json!({"ok": true})).is_err());
    }

    #[test]
    fn unknown_samples_are_named_in_the_error() {
        assert!(Sample::parse("png").unwrap_err().contains("png"));
    }
}
