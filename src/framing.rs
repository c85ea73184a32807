//! Line framing for the socket: splits input at `\n` without ever buffering more than
//! the configured maximum of one line, and turns an over-long line into one `TooLong`
//! item (skipping to its newline) so the connection goes on.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// One unit of input: a complete line, or the news that a line was too long (and was
/// skipped up to its newline). Both are items, not errors, so the stream goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Line(Bytes),
    TooLong,
}

/// Splits input at `\n`, never buffering more than `max` bytes of one line.
pub struct LineCodec {
    max: usize,
    /// Skipping the rest of an over-long line until its newline.
    discarding: bool,
    /// Bytes at the front of the buffer already searched for a newline: each read
    /// searches only what it added, or a line trickled in byte by byte would be
    /// rescanned whole on every read.
    scanned: usize,
}

impl LineCodec {
    pub fn new(max: usize) -> LineCodec {
        LineCodec {
            max,
            discarding: false,
            scanned: 0,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            let from = self.scanned.min(buf.len());
            let newline = buf[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| from + i);
            self.scanned = match newline {
                Some(_) => 0, // the buffer's front is consumed below
                None => buf.len(),
            };
            if self.discarding {
                match newline {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                        return Ok(Some(Frame::TooLong));
                    }
                    None => {
                        buf.clear();
                        self.scanned = 0;
                        return Ok(None);
                    }
                }
            }
            match newline {
                Some(i) if i > self.max => {
                    buf.advance(i + 1);
                    return Ok(Some(Frame::TooLong));
                }
                Some(i) => {
                    let mut line = buf.split_to(i + 1).freeze();
                    line.truncate(i);
                    // Blank lines (keep-alives, a stray CRLF) are skipped, not answered.
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(Some(Frame::Line(line)));
                }
                // Too long already, with no newline yet: drop what came, and the rest up
                // to the newline as it comes.
                None if buf.len() > self.max => {
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
    }

    /// A half-written line at disconnect is dropped: it was never a request.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        let frame = self.decode(buf)?;
        buf.clear();
        self.scanned = 0;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, input: &[u8]) -> Vec<Frame> {
        let mut codec = LineCodec::new(max);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        if let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_lines_and_skips_blank_ones() {
        assert_eq!(
            frames(100, b"a\n\r\n\nbb\n"),
            vec![
                Frame::Line(Bytes::from_static(b"a")),
                Frame::Line(Bytes::from_static(b"bb"))
            ]
        );
    }

    #[test]
    fn an_over_long_line_becomes_one_too_long_and_the_next_line_survives() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(
            frames(10, &input),
            vec![Frame::TooLong, Frame::Line(Bytes::from_static(b"ok"))]
        );
    }

    #[test]
    fn an_over_long_line_arriving_in_pieces_is_never_buffered_whole() {
        let mut codec = LineCodec::new(10);
        let mut buf = BytesMut::new();
        for _ in 0..100 {
            buf.extend_from_slice(&[b'x'; 7]);
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            assert!(buf.len() <= 17, "buffered {}", buf.len());
        }
        buf.extend_from_slice(b"\nnext\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::TooLong));
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Line(Bytes::from_static(b"next")))
        );
    }

    #[test]
    fn lines_trickling_in_a_byte_at_a_time_are_framed_whole() {
        let mut codec = LineCodec::new(8);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in b"one\n\ntwo\nwaytoolongline\nthree\n".iter() {
            buf.extend_from_slice(&[b]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        let line = |s: &'static [u8]| Frame::Line(Bytes::from_static(s));
        assert_eq!(
            out,
            vec![line(b"one"), line(b"two"), Frame::TooLong, line(b"three")]
        );
    }

    #[test]
    fn a_half_line_at_eof_is_dropped() {
        assert_eq!(
            frames(100, b"a\npartial"),
            vec![Frame::Line(Bytes::from_static(b"a"))]
        );
    }
}
