//! Writing objects: server-side apply with one field manager, skipped when the object
//! already carries the hash of what would be written, so reconciling an unchanged
//! cluster makes no write at all.

use std::fmt::Debug;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::build::{ANNOTATION_SPEC_HASH, FIELD_MANAGER, spec_hash};

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The object did not exist and was created.
    Created,
    /// The object existed with other content and was updated.
    Updated,
    /// The object already matched.
    Unchanged,
    /// The object differs but may not be changed in place (a Pod's spec): the
    /// difference waits for a restart.
    Differs,
}

fn stamp<K: Resource + Serialize>(obj: &mut K) -> String {
    obj.annotations_mut().remove(ANNOTATION_SPEC_HASH);
    let hash = spec_hash(obj);
    obj.annotations_mut()
        .insert(ANNOTATION_SPEC_HASH.to_owned(), hash.clone());
    hash
}

/// Server-side applies `obj` unless the live object already has its hash.
pub async fn apply<K>(api: &Api<K>, mut obj: K) -> Result<Applied, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let hash = stamp(&mut obj);
    let name = obj.name_any();
    let existing = api.get_opt(&name).await?;
    if existing
        .as_ref()
        .is_some_and(|e| e.annotations().get(ANNOTATION_SPEC_HASH) == Some(&hash))
    {
        return Ok(Applied::Unchanged);
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await?;
    Ok(if existing.is_some() {
        Applied::Updated
    } else {
        Applied::Created
    })
}

/// Creates `obj` if it does not exist; an existing object is never changed (Pods,
/// whose spec is immutable, and PVCs, which hold data). Reports whether it differs.
pub async fn create_only<K>(api: &Api<K>, mut obj: K) -> Result<Applied, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let hash = stamp(&mut obj);
    let name = obj.name_any();
    match api.get_opt(&name).await? {
        Some(e) if e.annotations().get(ANNOTATION_SPEC_HASH) == Some(&hash) => {
            Ok(Applied::Unchanged)
        }
        Some(_) => Ok(Applied::Differs),
        None => {
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match api.create(&pp, &obj).await {
                Ok(_) => Ok(Applied::Created),
                // Created meanwhile (another reconcile or a restarted coordinator).
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Applied::Unchanged),
                Err(e) => Err(e),
            }
        }
    }
}
