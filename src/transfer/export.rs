//! Exports as NDJSON in the import format, streamed: a session's history is read a page
//! at a time and written as it is read, so memory does not grow with its length.

use std::collections::VecDeque;

use actix_web::web;
use bytes::Bytes;
use futures_util::Stream;

use crate::{
    domain::{
        export::{EXPORT_TAIL, export_head, export_message},
        scope::SessionKey,
    },
    error::ApiError,
    state::AppState,
};

/// Turns read per store call.
const PAGE: usize = 256;

struct Export {
    state: web::Data<AppState>,
    tenant: String,
    /// Set when the ids came from this user's index: each session must still be theirs.
    user_id: Option<String>,
    ids: VecDeque<String>,
    current: Option<Cursor>,
    failed: bool,
}

/// The session being written: its id, how many turns it had when its line began, and
/// how many are written. Later turns (a send meanwhile) belong to the next export.
struct Cursor {
    id: String,
    total: u64,
    next: u64,
}

/// One line per session of `ids` (in order) that still exists and belongs to `tenant`
/// (and to `user_id`, when given).
pub fn lines(
    state: web::Data<AppState>,
    tenant: String,
    user_id: Option<String>,
    ids: Vec<String>,
) -> impl Stream<Item = Result<Bytes, ApiError>> {
    let export = Export {
        state,
        tenant,
        user_id,
        ids: ids.into(),
        current: None,
        failed: false,
    };
    futures_util::stream::unfold(export, |mut export| async move {
        if export.failed {
            return None;
        }
        let chunk = export.step().await;
        if let Some(Err(err)) = &chunk {
            // The response is cut short: a reader sees a last line with no newline.
            tracing::warn!(%err, "export stopped");
            export.failed = true;
        }
        chunk.map(|c| (c, export))
    })
}

impl Export {
    async fn step(&mut self) -> Option<Result<Bytes, ApiError>> {
        loop {
            if let Some(cursor) = self.current.as_mut() {
                if cursor.next >= cursor.total {
                    self.current = None;
                    return Some(Ok(Bytes::from_static(EXPORT_TAIL)));
                }
                return Some(self.page().await);
            }
            let id = self.ids.pop_front()?;
            let session = match self
                .state
                .store
                .get_session(&SessionKey::new(&self.tenant, &id))
                .await
            {
                Ok(session) => session,
                Err(err) => return Some(Err(err.into())),
            };
            // Expired since it was listed, or not the caller's (the id may have changed
            // hands since it was listed): left out, checked on the read that returns it.
            let Some(session) = session.filter(|s| match &self.user_id {
                Some(user) => s.config.belongs_to(&self.tenant, user),
                None => s.config.tenant == self.tenant,
            }) else {
                continue;
            };
            let head = export_head(&id, &session.config, session.summary.as_ref());
            self.current = Some(Cursor {
                id,
                total: session.message_count,
                next: 0,
            });
            return Some(head.map(Bytes::from).map_err(ApiError::from));
        }
    }

    async fn page(&mut self) -> Result<Bytes, ApiError> {
        let Some(cursor) = self.current.as_mut() else {
            return Ok(Bytes::new());
        };
        let remaining = usize::try_from(cursor.total - cursor.next).unwrap_or(PAGE);
        let turns = self
            .state
            .store
            .turns(
                &SessionKey::new(&self.tenant, &cursor.id),
                cursor.next,
                remaining.min(PAGE),
            )
            .await?;
        if turns.is_empty() {
            return Err(ApiError::Internal(
                "session expired or was replaced during its export".into(),
            ));
        }
        let mut out = Vec::with_capacity(
            turns
                .iter()
                .map(|t| t.message.content.byte_len() + 64)
                .sum(),
        );
        for (i, turn) in turns.iter().enumerate() {
            export_message(&mut out, turn, cursor.next == 0 && i == 0)?;
        }
        cursor.next += turns.len() as u64;
        Ok(out.into())
    }
}
