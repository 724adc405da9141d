//! Names the first broken field of a GGUF header that candle's reader refused: the header field,
//! metadata entry (with its key) or tensor info (with its name) where the bytes stop making
//! sense. Only used to explain an error; never to load.

use std::io::Read;

/// Reads little-endian values and strings, failing with a description of what ran out.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walk<'_> {
    fn take(&mut self, n: u64, what: &str) -> Result<&[u8], String> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(format!(
                "{what} needs {n} bytes at offset {}, only {left} remain (truncated?)",
                self.at
            ));
        }
        let s = &self.bytes[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.u64(&format!("{what} length"))?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
    /// Skips one metadata value of type `ty`.
    fn value(&mut self, ty: u32, what: &str) -> Result<(), String> {
        let fixed = |ty: u32| match ty {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match ty {
            8 => self.string(&format!("{what} string")).map(|_| ()),
            9 => {
                let item = self.u32(&format!("{what} array item type"))?;
                let count = self.u64(&format!("{what} array length"))?;
                if let Some(size) = fixed(item) {
                    self.take(
                        count.saturating_mul(size),
                        &format!("{what} array of {count}"),
                    )?;
                    Ok(())
                } else if item == 8 {
                    for i in 0..count {
                        self.string(&format!("{what} array item {i}"))?;
                    }
                    Ok(())
                } else {
                    Err(format!("{what}: unknown array item type {item}"))
                }
            }
            t => match fixed(t) {
                Some(size) => self.take(size, what).map(|_| ()),
                None => Err(format!("{what}: unknown value type {t}")),
            },
        }
    }
}

/// The first field of the header in `reader` that does not parse, described with its key or
/// tensor name; `None` when the walk finds nothing wrong (the problem is elsewhere).
pub(crate) fn first_broken_field(reader: impl Read) -> Option<String> {
    // Headers are small; a huge declared size is itself the finding.
    let mut bytes = Vec::new();
    reader.take(64 << 20).read_to_end(&mut bytes).ok()?;
    let mut w = Walk {
        bytes: &bytes,
        at: 0,
    };
    walk(&mut w).err()
}

fn walk(w: &mut Walk) -> Result<(), String> {
    let magic = w.take(4, "header field `magic`")?;
    if magic != b"GGUF" {
        return Err(format!(
            "header field `magic` is {magic:?}, not \"GGUF\" (not a GGUF file)"
        ));
    }
    let version = w.u32("header field `version`")?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "header field `version` is {version} (supported: 2, 3)"
        ));
    }
    let tensors = w.u64("header field `tensor_count`")?;
    let kvs = w.u64("header field `metadata_kv_count`")?;
    for i in 0..kvs {
        let key = w.string(&format!("metadata entry {i} key"))?;
        let what = format!("metadata entry {i} (`{key}`)");
        let ty = w.u32(&format!("{what} value type"))?;
        w.value(ty, &what)?;
    }
    for j in 0..tensors {
        let name = w.string(&format!("tensor info {j} name"))?;
        let what = format!("tensor info {j} (`{name}`)");
        let dims = w.u32(&format!("{what} dimension count"))?;
        if dims > 4 {
            return Err(format!("{what}: {dims} dimensions (at most 4)"));
        }
        for _ in 0..dims {
            w.u64(&format!("{what} dimension"))?;
        }
        let ty = w.u32(&format!("{what} type"))?;
        if ty > 64 {
            return Err(format!("{what}: unknown tensor type {ty}"));
        }
        w.u64(&format!("{what} offset"))?;
    }
    Ok(())
}
