//! Helpers shared by the runtime's socket-level tests.

use std::convert::Infallible;

/// A body of `size` bytes with no declared length, so that it is sent chunked.
pub fn chunked(
    size: usize,
) -> impl hyper::body::Body<Data = bytes::Bytes, Error = Infallible> + Send + Unpin {
    let chunks = (0..size).step_by(64 << 10).map(move |at| {
        Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b'x';
            (size
                - at)
                .min(
                    64 << 10
                )
        ])))
    });
    http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
}
