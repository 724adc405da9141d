//! The HTTP/1.1 that `maspo serve` needs, on `std::net`: requests with a `Content-Length`
//! body (size-limited), keep-alive, JSON responses and chunked server-sent events. One thread
//! per connection; nothing here knows about models.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;

/// One parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection (or stayed idle past the read timeout) between requests.
    Closed,
    /// The request is malformed; answer 400 and close.
    Bad(String),
    /// The body is larger than allowed; answer 413 and close.
    TooLarge(usize),
}

const MAX_HEAD: usize = 64 << 10;

/// Reads the next request from a connection.
pub fn read_request<R: BufRead>(r: &mut R, max_body: usize) -> Result<HttpRequest, ReadError> {
    let mut head_bytes = 0usize;
    let mut line = String::new();
    let mut read_line = |r: &mut R, line: &mut String| -> Result<usize, ReadError> {
        line.clear();
        let n = r
            .by_ref()
            .take((MAX_HEAD - head_bytes.min(MAX_HEAD)) as u64 + 1)
            .read_line(line)
            .map_err(|_| ReadError::Closed)?;
        head_bytes += n;
        if head_bytes > MAX_HEAD {
            return Err(ReadError::Bad("request head over 64 KiB".into()));
        }
        Ok(n)
    };
    // Skip blank lines between keep-alive requests (RFC 9112 §2.2).
    loop {
        if read_line(r, &mut line)? == 0 {
            return Err(ReadError::Closed);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => {
            (m.to_string(), t.to_string(), v.to_string())
        }
        _ => {
            return Err(ReadError::Bad(format!(
                "not an HTTP/1.x request line: {:?}",
                line.trim_end()
            )))
        }
    };
    let mut length = 0usize;
    let mut keep_alive = version == "HTTP/1.1";
    loop {
        if read_line(r, &mut line)? == 0 {
            return Err(ReadError::Bad(
                "connection closed inside the request head".into(),
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(ReadError::Bad(format!("malformed header line: {l:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| ReadError::Bad(format!("bad Content-Length: {value:?}")))?
            }
            "transfer-encoding" if !value.eq_ignore_ascii_case("identity") => {
                return Err(ReadError::Bad(
                    "chunked request bodies are not supported: send Content-Length".into(),
                ))
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    if length > max_body {
        // Read (and drop) a body of reasonable size first, so the client sees the 413 rather
        // than a connection reset.
        if length <= 64 << 20 {
            let _ = std::io::copy(&mut r.by_ref().take(length as u64), &mut std::io::sink());
        }
        return Err(ReadError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)
        .map_err(|e| ReadError::Bad(format!("reading a {length}-byte body: {e}")))?;
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok(HttpRequest {
        method,
        path,
        body,
        keep_alive,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a complete response with a body.
pub fn write_response(
    w: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
        reason(code),
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// A chunked response body written and flushed one event at a time.
pub struct Chunked<'a>(&'a mut TcpStream);

impl<'a> Chunked<'a> {
    /// Writes the head of a `200` event stream.
    pub fn start(w: &'a mut TcpStream, keep_alive: bool) -> std::io::Result<Self> {
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {conn}\r\n\r\n");
        w.write_all(head.as_bytes())?;
        w.flush()?;
        Ok(Self(w))
    }

    /// Sends one chunk.
    pub fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.0.write_all(&out)?;
        self.0.flush()
    }

    /// Ends the body.
    pub fn finish(self) -> std::io::Result<()> {
        self.0.write_all(b"0\r\n\r\n")?;
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(bytes: &[u8]) -> Result<HttpRequest, ReadError> {
        read_request(&mut std::io::Cursor::new(bytes.to_vec()), 1 << 10)
    }

    #[test]
    fn requests_parse_with_their_body_and_connection_mode() {
        let r = read(
            b"\r\nPOST /v1/x?y=1 HTTP/1.1\r\ncontent-length: 2\r\nConnection: close\r\n\r\nhi",
        )
        .unwrap();
        assert_eq!(
            (
                r.method.as_str(),
                r.path.as_str(),
                &r.body[..],
                r.keep_alive
            ),
            ("POST", "/v1/x", &b"hi"[..], false)
        );
        assert!(read(b"GET / HTTP/1.0\r\n\r\n").is_ok_and(|r| !r.keep_alive));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"),
            Err(ReadError::TooLarge(5000))
        ));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(read(b"nonsense\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(read(b""), Err(ReadError::Closed)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = read(&bytes);
        }

        #[test]
        fn mangled_requests_never_panic(
            head in "(GET|POST|X) /[a-z/?=]{0,12} HTTP/1\\.[01]\r\n([A-Za-z-]{1,14}: [ -~]{0,20}\r\n){0,4}\r\n",
            body in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut b = head.into_bytes();
            b.extend(body);
            let _ = read(&b);
        }
    }
}
