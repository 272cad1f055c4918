//! Reading a tenant's audit log in MongoDB, which is one collection per month of the
//! entries' time (`tenant_<id>_audit_logs_YYYY_MM`, seed §5.2.2; names from
//! [`Tenancy::mongo_audit_collection`]). A question about the whole log is one
//! aggregation over every month (`$unionWith`), each month answering from its own
//! indexes with at most `limit` entries.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Database;

use crate::tenancy::Tenancy;

/// The tenant's audit collections, newest month first, with the month each holds.
pub async fn months(db: &Database, tenancy: Tenancy) -> mongodb::error::Result<Vec<(DateTime<Utc>, String)>> {
    let pattern = format!("^{}[0-9]{{4}}_[0-9]{{2}}$", tenancy.mongo_audit_prefix());
    let names = db.list_collection_names().filter(doc! { "name": { "$regex": pattern } }).await?;
    let mut months: Vec<(DateTime<Utc>, String)> =
        names.into_iter().filter_map(|name| Some((tenancy.mongo_audit_month(&name)?, name))).collect();
    months.sort_by(|a, b| b.cmp(a));
    Ok(months)
}

/// The entries `filter` finds in every month of the tenant's log, in `sort` order (any
/// order when `None`), at most `limit` of them (all when `None`).
pub async fn find(
    db: &Database,
    tenancy: Tenancy,
    filter: Document,
    sort: Option<Document>,
    limit: Option<i64>,
) -> mongodb::error::Result<Vec<Document>> {
    let months = months(db, tenancy).await?;
    let Some(((_, first), others)) = months.split_first() else { return Ok(Vec::new()) };
    let sorted = sort.map(|sort| doc! { "$sort": sort });
    let limited = limit.map(|n| doc! { "$limit": n });
    let mut each = vec![doc! { "$match": filter }];
    each.extend(sorted.clone().into_iter().chain(limited.clone()));
    let mut pipeline = each.clone();
    for (_, name) in others {
        pipeline.push(doc! { "$unionWith": { "coll": name, "pipeline": each.clone() } });
    }
    if !others.is_empty() {
        pipeline.extend(sorted.into_iter().chain(limited));
    }
    db.collection::<Document>(first).aggregate(pipeline).await?.try_collect().await
}
