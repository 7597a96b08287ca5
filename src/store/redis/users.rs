//! The user index in Redis: `sr:user:<digest of tenant and user id>`, a sorted set of
//! entries `<session id>:<incarnation>` scored by creation time.
//!
//! The index is a key of its own, in its own Cluster slot, apart from the sessions it
//! names: no script may hold both. Here is why nothing needs to:
//!
//! - **An entry names one incarnation.** A session id can change hands: it expires (or is
//!   deleted) and an import, which keeps ids, makes a session of that id again, for anyone.
//!   Every create and every replacing import draws a new incarnation, kept in the session
//!   (`gen`) and in its entry. An entry is valid while that very incarnation lives with
//!   this index as its owner (`uidx`); once it is not, it never will be again. So a stale
//!   entry can be removed at any time, by anyone, without looking at the session again,
//!   and a new one (the same id made again, even for the same user) is another entry that
//!   no removal of the old one touches. (Entries written before incarnations existed are
//!   the bare id, matching sessions that have no `gen`.)
//! - **Reads check what they return.** A listing reads each entry's session owner with one
//!   command (`HMGET`, atomic) and keeps only the entries it matches; the page is then read
//!   with `HGETALL` and checked again on that same reply (`SessionConfig::belongs_to`), so
//!   what is returned is checked on the very snapshot returned.
//! - **Deletes check in the session's slot.** A logout deletes through `delete.lua` with the
//!   entry's owner and incarnation: the check and the delete are one script.
//! - **A logout removes the entries it read, no others** (`ZREM`, one command in the index's
//!   slot): a session created while it ran has an entry it never read, and stays listed
//!   for the next logout.

use redis::Value;

use super::{RedisStore, ScriptBatch, classify, scripts, text};
use crate::{
    domain::{scope::SessionKey, session::new_id},
    store::{StoreError, StoreResult},
};

/// One entry of a user index: which index, which session, which incarnation of it.
pub(crate) struct IndexEntry<'a> {
    /// The index key; empty for a session without a user.
    pub index: &'a str,
    pub id: &'a str,
    pub incarnation: &'a str,
}

impl IndexEntry<'_> {
    /// The member stored in the sorted set.
    pub(crate) fn name(&self) -> String {
        if self.incarnation.is_empty() {
            self.id.to_string()
        } else {
            format!("{}:{}", self.id, self.incarnation)
        }
    }
}

/// `(session id, incarnation)` of a member (session ids never contain `:`).
fn parse(member: &str) -> (&str, &str) {
    member.split_once(':').unwrap_or((member, ""))
}

/// A new incarnation: 64 random bits tell apart the sessions one id ever named.
pub(crate) fn incarnation() -> String {
    new_id()[..16].to_string()
}

/// What a script that refreshed a session's TTL answers: `{ttl_ms, user_index_key,
/// incarnation}` (the last two empty without a user), or a status integer.
pub(super) struct Refreshed {
    pub ttl_ms: u64,
    pub index: String,
    pub incarnation: String,
}

impl Refreshed {
    pub(super) fn entry<'a>(&'a self, id: &'a str) -> IndexEntry<'a> {
        IndexEntry {
            index: &self.index,
            id,
            incarnation: &self.incarnation,
        }
    }
}

pub(super) fn refreshed(value: &Value) -> Option<Refreshed> {
    let Value::Array(items) = value else {
        return None;
    };
    let ttl_ms = match items.first()? {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
        Value::Int(i) => u64::try_from(*i).ok()?,
        _ => return None,
    };
    Some(Refreshed {
        ttl_ms,
        index: text(items.get(1)),
        incarnation: text(items.get(2)),
    })
}

impl RedisStore {
    /// The ids of the user's live sessions, oldest first. Entries that name a session
    /// gone, made again (another incarnation) or owned by someone else are removed.
    pub(super) async fn list_user(&self, tenant: &str, user_id: &str) -> StoreResult<Vec<String>> {
        let index = self.user_key(tenant, user_id);
        let members: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1))
            .await?;
        if members.is_empty() {
            return Ok(members);
        }
        let mut pipe = redis::pipe();
        for member in &members {
            let (id, _) = parse(member);
            pipe.cmd("HMGET")
                .arg(self.session_key(&SessionKey::new(tenant, id), "meta"))
                .arg("uidx")
                .arg("gen");
        }
        let owners: Vec<Vec<Value>> = self.pipeline(&pipe).await?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (member, owner) in members.iter().zip(&owners) {
            let (id, incarnation) = parse(member);
            let owned = text(owner.first()) == index && text(owner.get(1)) == incarnation;
            if owned {
                live.push(id.to_string());
            } else {
                stale.push(member);
            }
        }
        if !stale.is_empty() {
            let () = self
                .query(redis::cmd("ZREM").arg(&index).arg(stale))
                .await?;
        }
        Ok(live)
    }

    /// Deletes every session the user's index names that is still that user's, then
    /// removes exactly the entries read; returns how many sessions were deleted.
    pub(super) async fn logout_user(&self, tenant: &str, user_id: &str) -> StoreResult<u64> {
        let index = self.user_key(tenant, user_id);
        let members: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1))
            .await?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut batch = ScriptBatch::new(&scripts::DELETE);
        for member in &members {
            let (id, incarnation) = parse(member);
            let at = SessionKey::new(tenant, id);
            batch
                .call(&self.session_keys(&at))
                .arg(&index)
                .arg(incarnation);
        }
        let replies = self.run_scripts(&batch).await?;
        if replies.len() != members.len() {
            return Err(StoreError::Corrupt("logout pipeline answer".into()));
        }
        if let Some(Value::ServerError(err)) =
            replies.iter().find(|r| matches!(r, Value::ServerError(_)))
        {
            // Entries of sessions that may still exist must stay: nothing is removed.
            return Err(classify(err.clone().into()));
        }
        let deleted = replies
            .iter()
            .filter(|r| matches!(r, Value::Array(_)))
            .count();
        // Every entry read now names nothing of this user: deleted, gone, another
        // incarnation or another owner's. Entries added since are not among them.
        let () = self
            .query(redis::cmd("ZREM").arg(&index).arg(&members))
            .await?;
        Ok(deleted as u64)
    }

    /// Keeps the user index in step after a write that refreshed a session's TTL.
    pub(super) async fn refresh_user_index(
        &self,
        member: &IndexEntry<'_>,
        created_us: i64,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        if member.index.is_empty() {
            return Ok(());
        }
        let (created, ttl) = (created_us.to_string(), ttl_ms.to_string());
        let name = member.name();
        self.script::<i64>(
            &scripts::USER_INDEX,
            &[member.index],
            &[&name, &created, &ttl],
        )
        .await
        .map(drop)
    }

    /// Lengthens the user index after a send, off the request's path: the session is in
    /// the index since its creation, only the index's expiry has to keep up with it. It
    /// is lengthened by a quarter more than needed and the session records so
    /// (`uidx_until`): the sends of the next quarter TTL skip this call (a third Redis
    /// call per send otherwise). The mark is written only once the index was lengthened,
    /// so if either call fails the next send tries again; it is logged.
    pub(super) fn extend_user_index_soon(
        &self,
        at: &SessionKey,
        uidx: String,
        ttl_ms: u64,
        now_ms: i64,
    ) {
        if uidx.is_empty() {
            return;
        }
        let (store, meta) = (self.clone(), self.session_key(at, "meta"));
        let lifetime = ttl_ms.saturating_add(ttl_ms / 4);
        let covered_until = now_ms.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
        tokio::spawn(async move {
            let lifetime = lifetime.to_string();
            let extend = ["", "", lifetime.as_str(), "extend"];
            let covered = async {
                if store
                    .script::<i64>(&scripts::USER_INDEX, &[uidx.as_str()], &extend)
                    .await?
                    == 1
                {
                    let until = covered_until.to_string();
                    store
                        .script::<i64>(&scripts::INDEX_COVERS, &[meta.as_str()], &[until.as_str()])
                        .await?;
                }
                Ok::<_, StoreError>(())
            };
            if let Err(err) = covered.await {
                tracing::warn!(%err, "could not lengthen a user index");
            }
        });
    }
}
