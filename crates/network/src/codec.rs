//! Framing for the block-sync request-response protocol: one u32 big-endian
//! length, then that many bytes. The node encodes requests and responses
//! with the canonical codec, always in the newest wire version; on a
//! stream negotiated as `sync/1` (a peer on the previous release) the
//! codec re-encodes the one message that differs, the blocks response, in
//! both directions (ADR 017, part 3). The node never sees a wire version.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

use aidledger_types::wire::{
    is_blocks_request, sync_response_from_v1, sync_response_to_v1, WIRE_VERSION,
};
pub use aidledger_types::wire::{SYNC_REQUEST_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES};

use crate::NetStats;

/// The sync codec. libp2p's request-response uses one clone of it for a
/// stream's request and that request's response (both directions), so
/// what the request asked is known when its response is written or read.
#[derive(Clone)]
pub struct SyncCodec {
    stats: Arc<NetStats>,
    /// The request on this stream asks for blocks.
    blocks_request: bool,
}

impl SyncCodec {
    pub fn new(stats: Arc<NetStats>) -> SyncCodec {
        SyncCodec {
            stats,
            blocks_request: false,
        }
    }

    /// Counts one message in its wire version.
    fn count(&self, version: u32) {
        let c = if version < WIRE_VERSION {
            &self.stats.wire_previous_in
        } else {
            &self.stats.wire_current_in
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The wire version of a sync protocol id (`.../sync/{v}`).
pub fn sync_version(p: &StreamProtocol) -> u32 {
    p.as_ref()
        .rsplit('/')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WIRE_VERSION)
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {limit}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: &[u8],
    limit: usize,
) -> io::Result<()> {
    if data.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes is over the limit of {limit}", data.len()),
        ));
    }
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let req = read_frame(io, SYNC_REQUEST_MAX_BYTES).await?;
        self.count(sync_version(p));
        self.blocks_request = is_blocks_request(&req);
        Ok(req)
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let res = read_frame(io, SYNC_RESPONSE_MAX_BYTES).await?;
        let version = sync_version(p);
        self.count(version);
        if version < WIRE_VERSION && self.blocks_request {
            return sync_response_from_v1(&res).map_err(invalid);
        }
        Ok(res)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.blocks_request = is_blocks_request(&req);
        write_frame(io, &req, SYNC_REQUEST_MAX_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if sync_version(p) < WIRE_VERSION && self.blocks_request {
            let old = sync_response_to_v1(&res).map_err(invalid)?;
            return write_frame(io, &old, SYNC_RESPONSE_MAX_BYTES).await;
        }
        write_frame(io, &res, SYNC_RESPONSE_MAX_BYTES).await
    }
}
