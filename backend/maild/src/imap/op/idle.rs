//! IDLE (RFC 2177).
use std::io;

use imap_codec::{
    IdleDoneCodec,
    decode::{Decoder, IdleDoneDecodeError},
    imap_types::core::Tag,
};
use tokio::io::AsyncReadExt;

use crate::imap::session::{Flow, IDLE_TIMEOUT, Session};

impl Session {
    /// IDLE (RFC 2177): updates go out as they happen until DONE.
    pub(in crate::imap) async fn idle(&mut self, tag: &Tag<'static>) -> io::Result<Flow> {
        self.line("+ idling");
        self.refresh(true);
        self.flush().await?;
        let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
        loop {
            match IdleDoneCodec::default().decode(&self.buf) {
                Ok((rest, _)) => {
                    let consumed = self.buf.len() - rest.len();
                    self.buf.drain(..consumed);
                    self.tagged(tag, "OK IDLE terminated");
                    return Ok(Flow::Continue);
                }
                Err(IdleDoneDecodeError::Failed) => {
                    self.drop_line().await?;
                    self.tagged(tag, "BAD Expected DONE");
                    return Ok(Flow::Continue);
                }
                Err(IdleDoneDecodeError::Incomplete) => {}
            }
            if self.buf.len() > self.service.config.max_line {
                self.line("* BYE Command line too long");
                return Ok(Flow::Close);
            }
            let io = self.io.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let mut chunk = [0u8; 1024];
            tokio::select! {
                read = io.read(&mut chunk) => match read? {
                    0 => return Ok(Flow::Close),
                    n => self.buf.extend_from_slice(&chunk[..n]),
                },
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return Ok(Flow::Close);
                    }
                    // `changed` marked it seen; mark it new again for refresh.
                    self.changes.mark_changed();
                    self.refresh(true);
                    self.flush().await?;
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.line("* BYE Autologout; idle for too long");
                    return Ok(Flow::Close);
                }
            }
        }
    }
}
