//! The SMTP side: enough of RFC 5321 for a client that sends mail (EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA with dot-stuffing, RSET, NOOP, QUIT), with the
//! injected faults applied where a real server would answer them.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use crate::{Faults, store::Store};

/// A client that says nothing for this long is disconnected.
pub const IDLE: Duration = Duration::from_secs(60);
/// Longest command line accepted (RFC 5321 allows 512 octets).
const MAX_LINE: usize = 1000;

/// Accept SMTP sessions until `stop`.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    faults: Arc<Faults>,
    max_message_bytes: usize,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let (store, faults) = (store.clone(), faults.clone());
        tokio::spawn(async move {
            if let Err(e) = session(socket, &store, &faults, max_message_bytes).await {
                tracing::debug!(%peer, error = %e, "SMTP session ended");
            }
        });
    }
}

async fn reply(w: &mut (impl AsyncWrite + Unpin), text: &str) -> std::io::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

/// `<addr>` out of `MAIL FROM:<addr> SIZE=...` (the angle brackets' content).
fn address(arg: &str) -> Option<String> {
    let start = arg.find('<')?;
    let end = arg[start..].find('>')? + start;
    Some(arg[start + 1..end].trim().to_string())
}

async fn session(
    socket: TcpStream,
    store: &Store,
    faults: &Faults,
    max_message_bytes: usize,
) -> std::io::Result<()> {
    let (r, mut w) = socket.into_split();
    let mut r = BufReader::new(r);
    reply(&mut w, "220 mail-sim ESMTP ready").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(IDLE, (&mut r).take(MAX_LINE as u64).read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
        if n == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']);
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let size = format!("250-SIZE {max_message_bytes}");
            reply(&mut w, "250-mail-sim").await?;
            reply(&mut w, &size).await?;
            reply(&mut w, "250 8BITMIME").await?;
        } else if upper.starts_with("HELO") {
            reply(&mut w, "250 mail-sim").await?;
        } else if let Some(arg) = upper.strip_prefix("MAIL FROM:").map(|_| &cmd[10..]) {
            match faults.on_mail() {
                Some(Refusal::Temporary) => {
                    reply(&mut w, "421 4.3.2 mail-sim: service not available, try again later (injected fault)").await?;
                    return Ok(());
                }
                Some(Refusal::Permanent) => {
                    reply(
                        &mut w,
                        "550 5.7.1 mail-sim: mailbox unavailable (injected fault)",
                    )
                    .await?;
                    continue;
                }
                Some(Refusal::Unavailable) => {
                    reply(
                        &mut w,
                        "503 5.3.0 mail-sim: the e-mail provider is failing (injected fault: email-provider-failing)",
                    )
                    .await?;
                    continue;
                }
                None => {}
            }
            match address(arg) {
                Some(a) => {
                    from = Some(a);
                    to.clear();
                    reply(&mut w, "250 2.1.0 OK").await?;
                }
                None => reply(&mut w, "501 5.1.7 bad sender address syntax").await?,
            }
        } else if let Some(arg) = upper.strip_prefix("RCPT TO:").map(|_| &cmd[8..]) {
            match (&from, address(arg)) {
                (None, _) => reply(&mut w, "503 5.5.1 MAIL first").await?,
                (Some(_), Some(a)) if !a.is_empty() => {
                    to.push(a);
                    reply(&mut w, "250 2.1.5 OK").await?;
                }
                (Some(_), _) => reply(&mut w, "501 5.1.3 bad recipient address syntax").await?,
            }
        } else if upper == "DATA" {
            let Some(sender) = from.clone().filter(|_| !to.is_empty()) else {
                reply(&mut w, "503 5.5.1 MAIL and RCPT first").await?;
                continue;
            };
            reply(&mut w, "354 end data with <CR><LF>.<CR><LF>").await?;
            let mut raw = String::new();
            let mut too_big = false;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                let l = l.strip_prefix('.').unwrap_or(&l);
                if raw.len() + l.len() > max_message_bytes {
                    too_big = true;
                } else {
                    raw.push_str(l);
                }
            }
            if too_big {
                reply(&mut w, "552 5.3.4 message too big").await?;
            } else {
                faults.delay().await;
                let now = now_ms();
                match store.put(&sender, &to, &raw, now) {
                    Ok(s) => reply(&mut w, &format!("250 2.0.0 OK queued as {}", s.id)).await?,
                    Err(e) => {
                        tracing::error!(error = %e, "could not keep a message");
                        reply(&mut w, "451 4.3.0 mail-sim could not store the message").await?;
                    }
                }
            }
            from = None;
            to.clear();
        } else if upper == "RSET" {
            from = None;
            to.clear();
            reply(&mut w, "250 2.0.0 OK").await?;
        } else if upper == "NOOP" {
            reply(&mut w, "250 2.0.0 OK").await?;
        } else if upper == "QUIT" {
            reply(&mut w, "221 2.0.0 bye").await?;
            return Ok(());
        } else {
            reply(&mut w, "500 5.5.2 command not recognized").await?;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// How a message is refused by an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 421: the client should retry later.
    Temporary,
    /// 550: retrying cannot help.
    Permanent,
    /// 503: the catalog's `email-provider-failing` refused this one.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_out_of_their_angle_brackets() {
        assert_eq!(address("<a@b.c> SIZE=100").as_deref(), Some("a@b.c"));
        assert_eq!(address(" <>").as_deref(), Some(""));
        assert_eq!(address("a@b.c"), None);
    }
}
