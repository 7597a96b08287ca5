//! Item listings (a conversation's items, a response's input items), paginated as OpenAI
//! does: `limit`, `order` (newest first by default), `after` an item id; answered with
//! `first_id`, `last_id` and `has_more`. Read from the store a few turns at a time from
//! the cursor, so a page costs what it shows, not what the conversation holds.

use std::ops::Range;

use serde::Deserialize;
use serde_json::{Value, json};

use super::items::items_of;
use crate::domain::{ids::parse_item_id, scope::SessionKey};
use crate::{error::ApiError, store::Store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub order: Option<Order>,
    pub after: Option<String>,
    /// Extra data to include; nothing is kept that it could add, so it is ignored.
    #[allow(dead_code)]
    pub include: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

/// The query of a listing; a bad one is an `invalid_request` like any other.
pub fn query(
    query: Result<actix_web::web::Query<PageQuery>, actix_web::Error>,
) -> Result<PageQuery, ApiError> {
    query
        .map(actix_web::web::Query::into_inner)
        .map_err(|_| ApiError::invalid("query", "limit, order (asc or desc), after"))
}

/// The items of the turns at `range`, one page of them.
pub async fn page(
    store: &dyn Store,
    session: &SessionKey,
    range: Range<u64>,
    query: &PageQuery,
) -> Result<Value, ApiError> {
    let limit = match query.limit {
        None => 20,
        Some(n @ 1..=100) => n,
        Some(_) => return Err(ApiError::invalid("limit", "must be between 1 and 100")),
    };
    let ascending = query.order.unwrap_or(Order::Desc) == Order::Asc;
    let bad_cursor = || ApiError::invalid("after", "not an item of this list");
    let cursor = match &query.after {
        None => None,
        Some(after) => {
            let (index, turn, _) = parse_item_id(after).ok_or_else(bad_cursor)?;
            if !range.contains(&index) {
                return Err(bad_cursor());
            }
            Some((index, turn.to_string(), after.clone()))
        }
    };
    // The turn to start from, the cursor's own included (its later items may follow it).
    let mut next = match (&cursor, ascending) {
        (Some((index, ..)), _) => Some(*index),
        (None, true) => (range.start < range.end).then_some(range.start),
        (None, false) => range.end.checked_sub(1).filter(|i| *i >= range.start),
    };
    let mut items: Vec<Value> = Vec::with_capacity(limit + 1);
    let mut skipping = cursor.is_some();
    let chunk = (limit + 1).max(20) as u64;
    while let Some(at) = next {
        if items.len() > limit {
            break;
        }
        let (start, count) = if ascending {
            (at, chunk.min(range.end - at))
        } else {
            let start = at.saturating_sub(chunk - 1).max(range.start);
            (start, at - start + 1)
        };
        let mut turns = store.turns(session, start, count as usize).await?;
        if turns.len() as u64 != count {
            return Err(ApiError::Internal("turns missing from a session".into()));
        }
        if let Some((index, id, _)) = &cursor
            && skipping
            && turns
                .get((index - start) as usize)
                .is_none_or(|t| &t.id != id)
        {
            return Err(bad_cursor());
        }
        if !ascending {
            turns.reverse();
        }
        for turn in &turns {
            let mut of_turn = items_of(turn);
            if !ascending {
                of_turn.reverse();
            }
            for item in of_turn {
                // Up to and including the cursor: the page is what follows it.
                if skipping {
                    skipping = cursor
                        .as_ref()
                        .is_none_or(|(.., after)| item["id"].as_str() != Some(after.as_str()));
                    continue;
                }
                items.push(item);
            }
            // The cursor's turn comes first; an item it does not hold is no cursor.
            if skipping {
                return Err(bad_cursor());
            }
        }
        next = if ascending {
            Some(start + count).filter(|i| *i < range.end)
        } else {
            start.checked_sub(1).filter(|i| *i >= range.start)
        };
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let id = |item: Option<&Value>| item.map_or(Value::Null, |i| i["id"].clone());
    Ok(json!({
        "object": "list",
        "first_id": id(items.first()),
        "last_id": id(items.last()),
        "has_more": has_more,
        "data": items,
    }))
}
