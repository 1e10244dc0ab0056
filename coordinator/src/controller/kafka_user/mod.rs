//! The `KafkaUser` controller: SCRAM-SHA-512 credentials (a generated password kept in
//! a Secret the resource owns, or a password from a referenced Secret; rotated as soon
//! as the Secret changes), ACLs reconciled exactly (a grant removed from the spec is removed
//! from Kafka, and so is any ACL naming the user that the spec does not hold), and
//! quotas. Deleting the resource removes the user's credentials, ACLs and quotas.

pub mod certificate;
pub mod plan;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::PostParams,
    runtime::{
        Controller,
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use super::{
    ReconcileError, cluster_ref,
    conditions::{READY, now, set_condition},
    error_chain, object_key, resource_status,
    resource_status::Note,
};
use crate::{
    context::Context,
    crd::v1alpha1::{KafkaCluster, KafkaUser, KafkaUserStatus},
    kafka_admin::{
        AdminError, KafkaAdmin,
        users::{SCRAM_SHA_512, generate_password},
    },
};

/// The controller's name.
pub const CONTROLLER_NAME: &str = "kafkauser";
/// The finalizer that removes the user's credentials, ACLs and quotas from Kafka.
pub const KAFKA_USER_FINALIZER: &str = "kafkausers.kafka.stoker.io/cleanup";
/// Label on the Secrets this controller generates, naming their KafkaUser.
pub const LABEL_USER: &str = "kafka.stoker.io/user";
/// The Secret key holding the password (generated Secrets, and the default key of a
/// referenced one).
pub const PASSWORD_KEY: &str = "password";
/// How often a ready user is compared with Kafka again (ACLs or credentials changed by
/// hand are put back within this time).
const RESYNC: Duration = Duration::from_secs(120);
/// How soon a user waiting on a missing Secret or cluster is looked at again.
const RETRY: Duration = Duration::from_secs(30);

/// A failed reconcile (transient: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes call failed.
    #[error("failed to {0}")]
    Kube(&'static str, #[source] kube::Error),
    /// Kafka could not be reached or answered with a transient error.
    #[error("failed to talk to Kafka")]
    Kafka(#[source] AdminError),
    /// The finalizer machinery failed.
    #[error("failed to run the user finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::Kube(..) => "kubernetes",
            Self::Kafka(_) => "kafka",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// The KafkaUsers a Secret matters to: the one it was generated for (by its label) and
/// every one whose `passwordSecretRef` names it.
fn users_of_secret(secret: &Secret, users: &Store<KafkaUser>) -> Vec<ObjectRef<KafkaUser>> {
    let ns = secret.namespace();
    let name = secret.name_any();
    let mut out: Vec<ObjectRef<KafkaUser>> = secret
        .labels()
        .get(LABEL_USER)
        .map(|user| ObjectRef::new(user).within(ns.as_deref().unwrap_or_default()))
        .into_iter()
        .collect();
    out.extend(
        users
            .state()
            .iter()
            .filter(|u| u.namespace() == ns)
            .filter(|u| {
                u.spec
                    .authentication
                    .as_ref()
                    .and_then(|a| a.password_secret_ref.as_ref())
                    .is_some_and(|r| r.name == name)
            })
            .map(|u| ObjectRef::from_obj(u.as_ref())),
    );
    out
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let users: Api<KafkaUser> = Api::all(ctx.client.clone());
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let controller = Controller::new(users, watcher::Config::default());
    let store = controller.store();
    // Secrets are watched, not cached: each change maps to the users it concerns and
    // is dropped, so a password change rotates the credentials at once.
    controller
        .watches(secrets, watcher::Config::default(), move |s: Secret| {
            users_of_secret(&s, &store)
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .with_config(kube::runtime::controller::Config::default().concurrency(8))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "User reconcile failed");
            }
        })
        .await;
}

/// Reconciles one KafkaUser.
#[instrument(skip(ku, ctx), fields(name = %ku.name_any(), namespace = ku.namespace().unwrap_or_default()))]
pub async fn reconcile(ku: Arc<KafkaUser>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.kafka_user.reconcile_started();
    let key = object_key(ku.as_ref());
    let api: Api<KafkaUser> =
        Api::namespaced(ctx.client.clone(), &ku.namespace().unwrap_or_default());
    let result = finalizer(&api, KAFKA_USER_FINALIZER, ku.clone(), |event| async {
        match event {
            Finalizer::Apply(ku) => apply(&ku, &ctx).await,
            Finalizer::Cleanup(ku) => cleanup(&ku, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match &result {
        Ok(_) => ctx.backoff.succeeded(&key),
        Err(Error::Finalizer(inner)) => {
            // A failure Kafka reported is also said in the status, so `kubectl get` shows
            // why the user waits; the reconcile is retried with backoff.
            if let kube::runtime::finalizer::Error::ApplyFailed(Error::Kafka(e))
            | kube::runtime::finalizer::Error::CleanupFailed(Error::Kafka(e)) = inner.as_ref()
            {
                let reason = if e.is_authorization() {
                    "NotAuthorized"
                } else {
                    "KafkaUnavailable"
                };
                let message = format!("failed to talk to Kafka: {}; retrying", error_chain(e));
                if let Err(e) = resource_status::not_ready(
                    &ctx.client,
                    &ctx.recorder,
                    ku.as_ref(),
                    reason,
                    message,
                )
                .await
                {
                    warn!(error = %error_chain(&e), "Failed to record the Kafka error in status");
                }
            }
        }
        Err(_) => {}
    }
    result
}

/// Retries transient failures with the user's backoff.
pub fn error_policy(ku: Arc<KafkaUser>, error: &Error, ctx: Arc<Context>) -> Action {
    super::retry_after(ku.as_ref(), error, &ctx.metrics.kafka_user, &ctx.backoff)
}

async fn event(ctx: &Context, ku: &KafkaUser, reason: &str, note: String) {
    resource_status::publish(&ctx.recorder, ku, Note::normal(reason, "Reconciling", note)).await;
}

async fn patch_status(ctx: &Context, ku: &KafkaUser, status: KafkaUserStatus) -> Result<(), Error> {
    resource_status::patch(&ctx.client, ku, status)
        .await
        .map_err(|e| Error::Kube("patch the user's status", e))
}

/// Sets Ready=False with `reason`/`message` (a Warning Event when it is new) and
/// returns how long to wait.
async fn not_ready(
    ctx: &Context,
    ku: &KafkaUser,
    reason: &str,
    message: String,
    retry: Option<Duration>,
) -> Result<Action, Error> {
    resource_status::not_ready(&ctx.client, &ctx.recorder, ku, reason, message)
        .await
        .map_err(|e| Error::Kube("patch the user's status", e))?;
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// The user's password, the Secret it is in, and that Secret's version.
struct Credentials {
    password: String,
    secret: String,
    version: String,
}

/// How a user proves who it is, ready in its Secret.
enum Proof {
    /// A SCRAM-SHA-512 password.
    Scram(Credentials),
    /// A client certificate in Secret `secret`, valid until `expires` (RFC 3339).
    Certificate {
        /// The Secret.
        secret: String,
        /// When it expires.
        expires: String,
    },
}

/// Why credentials are not available: a condition reason and message.
struct NoCredentials {
    reason: &'static str,
    message: String,
}

fn secret_version(s: &Secret) -> String {
    format!(
        "{}/{}",
        s.metadata.uid.as_deref().unwrap_or_default(),
        s.metadata.resource_version.as_deref().unwrap_or_default()
    )
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    let v = s.data.as_ref()?.get(key)?;
    String::from_utf8(v.0.clone())
        .ok()
        .filter(|p| !p.is_empty())
}

/// A Secret the coordinator makes for user `username`: its name, labels and owner.
fn owned_secret(ku: &KafkaUser, name: &str, username: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.metadata.namespace = ku.namespace();
    s.metadata.labels = Some(BTreeMap::from([
        (LABEL_USER.to_owned(), username.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "stoker-coordinator".to_owned(),
        ),
    ]));
    s.metadata.owner_references = ku.controller_owner_ref(&()).map(|o| vec![o]);
    s
}

/// The generated Secret: the password, plus what a client needs to use it.
fn generated_secret(ku: &KafkaUser, name: &str, username: &str, password: &str) -> Secret {
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{username}\" password=\"{password}\";"
    );
    let mut s = owned_secret(ku, name, username);
    s.type_ = Some("Opaque".into());
    s.string_data = Some(BTreeMap::from([
        ("username".to_owned(), username.to_owned()),
        (PASSWORD_KEY.to_owned(), password.to_owned()),
        ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
        ("sasl.jaas.config".to_owned(), jaas),
    ]));
    s
}

/// Reads the password from the referenced Secret, or from the generated one (creating
/// it with a new password when missing). Never touches a Secret it does not own.
async fn credentials(
    ku: &KafkaUser,
    ctx: &Context,
) -> Result<Result<Credentials, NoCredentials>, Error> {
    let ns = ku.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = ku
        .spec
        .authentication
        .as_ref()
        .and_then(|a| a.password_secret_ref.as_ref());
    if let Some(r) = reference {
        let key = r.key.as_deref().unwrap_or(PASSWORD_KEY);
        let Some(s) = secrets
            .get_opt(&r.name)
            .await
            .map_err(|e| Error::Kube("read the password Secret", e))?
        else {
            return Ok(Err(NoCredentials {
                reason: "SecretNotFound",
                message: format!(
                    "authentication.passwordSecretRef names Secret {ns}/{}, which does not exist; create it with a {key:?} key",
                    r.name
                ),
            }));
        };
        let Some(password) = secret_value(&s, key) else {
            return Ok(Err(NoCredentials {
                reason: "SecretKeyMissing",
                message: format!(
                    "Secret {ns}/{} has no non-empty {key:?} key; add the password under that key or set passwordSecretRef.key",
                    r.name
                ),
            }));
        };
        return Ok(Ok(Credentials {
            password,
            version: secret_version(&s),
            secret: r.name.clone(),
        }));
    }

    let username = ku.name_any();
    let (name, existing) = match own_secret(
        ku,
        &secrets,
        "Choose another spec.secretName, delete that Secret, or use it as authentication.passwordSecretRef",
    )
    .await?
    {
        Ok(found) => found,
        Err(conflict) => return Ok(Err(conflict)),
    };
    let s = match existing {
        Some(s) => s,
        None => {
            let password = generate_password().map_err(Error::Kafka)?;
            let created = secrets
                .create(
                    &PostParams::default(),
                    &generated_secret(ku, &name, &username, &password),
                )
                .await
                .map_err(|e| Error::Kube("create the credentials Secret", e))?;
            info!(secret = %name, "Generated a password");
            event(
                ctx,
                ku,
                "SecretCreated",
                format!("generated a password into Secret {name}"),
            )
            .await;
            created
        }
    };
    let Some(password) = secret_value(&s, PASSWORD_KEY) else {
        return Ok(Err(NoCredentials {
            reason: "SecretKeyMissing",
            message: format!(
                "Secret {ns}/{name} has no non-empty {PASSWORD_KEY:?} key; delete the Secret to have a new password generated"
            ),
        }));
    };
    Ok(Ok(Credentials {
        password,
        version: secret_version(&s),
        secret: name,
    }))
}

/// The user's Secret `secretName` (default: the user's name) and, if it exists, its
/// content; a conflict (`what_to_do` completing the message) when a Secret of that
/// name exists but was not created for this user: it is never touched.
async fn own_secret(
    ku: &KafkaUser,
    secrets: &Api<Secret>,
    what_to_do: &str,
) -> Result<Result<(String, Option<Secret>), NoCredentials>, Error> {
    let name = ku.spec.secret_name.clone().unwrap_or_else(|| ku.name_any());
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(|e| Error::Kube("read the user's Secret", e))?;
    if let Some(s) = &existing
        && !s
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == ku.uid().as_ref())
    {
        let ns = ku.namespace().unwrap_or_default();
        return Ok(Err(NoCredentials {
            reason: "SecretConflict",
            message: format!(
                "Secret {ns}/{name} already exists and was not created for this KafkaUser; it is left untouched. {what_to_do}"
            ),
        }));
    }
    Ok(Ok((name, existing)))
}

/// A TLS user's client certificate in its Secret `secretName` (owned by the user),
/// signed by the cluster's CA: issued when missing, when the CA changed, and 30 days
/// before it expires. Returns the Secret's name and when the certificate expires.
async fn client_certificate(
    ku: &KafkaUser,
    ctx: &Context,
    cluster: &KafkaCluster,
) -> Result<Result<(String, String), NoCredentials>, Error> {
    let ca = match cluster_ref::cluster_ca(&ctx.client, cluster)
        .await
        .map_err(|e| Error::Kube("read the KafkaCluster's CA Secret", e))?
    {
        Ok(ca) => ca,
        Err(missing) => {
            return Ok(Err(NoCredentials {
                reason: "ClusterHasNoCa",
                message: format!(
                    "authentication.type tls needs a client certificate from {missing}; give the KafkaCluster a TLS listener with sslSecrets, or use scram-sha-512"
                ),
            }));
        }
    };
    let ns = ku.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let username = ku.name_any();
    let (name, existing) = match own_secret(
        ku,
        &secrets,
        "Choose another spec.secretName or delete that Secret",
    )
    .await?
    {
        Ok(found) => found,
        Err(conflict) => return Ok(Err(conflict)),
    };
    let now = time::OffsetDateTime::now_utc();
    let why = existing
        .as_ref()
        .map_or(Some("the user has no certificate yet"), |s| {
            certificate::reissue_reason(s, &ca, now.unix_timestamp())
        });
    let secret = match why {
        None => existing.unwrap_or_default(),
        Some(why) => {
            let leaf = match certificate::issue(&ca, &username, now) {
                Ok(l) => l,
                Err(e) => {
                    return Ok(Err(NoCredentials {
                        reason: "CaUnusable",
                        message: format!(
                            "failed to sign {username}'s certificate with {}: {}",
                            ca.common_name,
                            error_chain(&e)
                        ),
                    }));
                }
            };
            let written = match existing {
                Some(old) => {
                    // Replaced whole (a password kept from a SCRAM past goes), at the
                    // version read.
                    let mut base = old;
                    base.string_data = None;
                    secrets
                        .replace(
                            &name,
                            &PostParams::default(),
                            &certificate::secret(base, &ca, &leaf),
                        )
                        .await
                        .map_err(|e| Error::Kube("write the certificate Secret", e))?
                }
                None => secrets
                    .create(
                        &PostParams::default(),
                        &certificate::secret(owned_secret(ku, &name, &username), &ca, &leaf),
                    )
                    .await
                    .map_err(|e| Error::Kube("create the certificate Secret", e))?,
            };
            info!(user = %username, secret = %name, why, "Issued a client certificate");
            event(
                ctx,
                ku,
                "CertificateIssued",
                format!("issued CN={username}'s client certificate into Secret {name}: {why}"),
            )
            .await;
            written
        }
    };
    let expires = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(certificate::NOT_AFTER_ANNOTATION))
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(Ok((name, expires)))
}

/// How the user's cluster can be reached.
enum ClusterAccess {
    /// An admin client of the cluster, and the cluster.
    Admin(Arc<KafkaAdmin>, Box<KafkaCluster>),
    /// No KafkaCluster of that name in that namespace.
    Missing {
        /// The namespace looked in.
        namespace: String,
    },
    /// The coordinator cannot connect to the KafkaCluster yet, and why.
    NotYet(String),
}

async fn cluster_access(ku: &KafkaUser, ctx: &Context) -> Result<ClusterAccess, Error> {
    let (namespace, cluster) =
        cluster_ref::referenced_cluster(&ctx.client, &ku.spec.cluster_ref, ku.namespace())
            .await
            .map_err(|e| Error::Kube("get the KafkaCluster", e))?;
    let Some(cluster) = cluster else {
        return Ok(ClusterAccess::Missing { namespace });
    };
    match cluster_ref::admin(&ctx.client, &ctx.admins, &cluster)
        .await
        .map_err(|e| Error::Kube("read the KafkaCluster's CA Secret", e))?
    {
        cluster_ref::Access::Admin(a) => Ok(ClusterAccess::Admin(a, Box::new(cluster))),
        cluster_ref::Access::NotYet(message) => Ok(ClusterAccess::NotYet(message)),
    }
}

async fn apply(ku: &KafkaUser, ctx: &Context) -> Result<Action, Error> {
    if let Err(r) = plan::validate(&ku.spec) {
        return not_ready(ctx, ku, r.reason, r.message, None).await;
    }
    let (admin, cluster) = match cluster_access(ku, ctx).await? {
        ClusterAccess::Admin(a, c) => (a, c),
        ClusterAccess::Missing { namespace } => {
            return not_ready(
                ctx,
                ku,
                "ClusterNotFound",
                cluster_ref::missing_cluster_message(&namespace, &ku.spec.cluster_ref),
                Some(RETRY),
            )
            .await;
        }
        ClusterAccess::NotYet(message) => {
            return not_ready(ctx, ku, "ClusterNotReady", message, Some(RETRY)).await;
        }
    };
    let username = ku.name_any();
    // The name Kafka knows the user by: `alice` for SCRAM, `CN=alice` for a certificate.
    let kafka_name = plan::kafka_name(&ku.spec, &username);
    let tls = plan::is_tls(&ku.spec);
    let proof = if tls {
        client_certificate(ku, ctx, &cluster)
            .await?
            .map(|(secret, expires)| Proof::Certificate { secret, expires })
    } else {
        credentials(ku, ctx).await?.map(Proof::Scram)
    };
    let proof = match proof {
        Ok(p) => p,
        Err(n) => return not_ready(ctx, ku, n.reason, n.message, Some(RETRY)).await,
    };
    let mut st = ku.status.clone().unwrap_or_default();

    // Switched between SCRAM and TLS: the identity Kafka knew goes (its ACLs, quotas
    // and SCRAM credentials), so no grant outlives the way to use it.
    if let Some(previous) = st.username.clone().filter(|p| *p != kafka_name) {
        remove_identity(&admin, &previous, &username).await?;
        info!(user = %username, from = %previous, to = %kafka_name, "Authentication changed; the previous identity was removed from Kafka");
        event(
            ctx,
            ku,
            "IdentityChanged",
            format!("{previous} removed from Kafka (its ACLs, quotas and SCRAM credentials); the user is now {kafka_name}"),
        )
        .await;
    }

    // Quotas are checked by Kafka before anything changes, so a bad value leaves the
    // user as it was.
    let actual_quotas = admin.user_quotas(&kafka_name).await.map_err(Error::Kafka)?;
    let quota_ops = plan::quota_changes(ku.spec.quotas.as_ref(), &actual_quotas);
    if let Err(e) = admin.alter_user_quotas(&kafka_name, &quota_ops, true).await {
        if !e.is_retriable() {
            return not_ready(ctx, ku, "InvalidQuotas", e.to_string(), None).await;
        }
        return Err(Error::Kafka(e));
    }

    let what = match proof {
        Proof::Certificate { secret, expires } => {
            st.credentials_version = Some(expires.clone());
            st.secret = Some(secret);
            format!("its client certificate (until {expires})")
        }
        Proof::Scram(creds) => {
            // Credentials: set when Kafka has none, rotated when the Secret changed.
            let has_scram = admin
                .scram_mechanisms(&username)
                .await
                .map_err(Error::Kafka)?
                .contains(&SCRAM_SHA_512);
            if !has_scram || st.credentials_version.as_deref() != Some(creds.version.as_str()) {
                admin
                    .upsert_scram_sha512(&username, &creds.password)
                    .await
                    .map_err(Error::Kafka)?;
                let (reason, what) = if has_scram {
                    ("CredentialsRotated", "rotated")
                } else {
                    ("CredentialsSet", "set")
                };
                info!(user = %username, secret = %creds.secret, "SCRAM-SHA-512 credentials {what}");
                event(
                    ctx,
                    ku,
                    reason,
                    format!(
                        "SCRAM-SHA-512 credentials of {username} {what} from Secret {}",
                        creds.secret
                    ),
                )
                .await;
            }
            st.credentials_version = Some(creds.version);
            st.secret = Some(creds.secret);
            "its SCRAM-SHA-512 credentials".to_owned()
        }
    };
    st.username = Some(kafka_name.clone());

    // ACLs: exactly the spec's.
    let desired = plan::desired_acls(&ku.spec, &kafka_name);
    let actual = admin
        .acls(&plan::principal(&kafka_name))
        .await
        .map_err(Error::Kafka)?;
    let (create, delete) = plan::acl_changes(&desired, &actual);
    if let Err(e) = admin.create_acls(&create).await {
        if !e.is_retriable() {
            return not_ready(ctx, ku, "InvalidAcl", e.to_string(), None).await;
        }
        return Err(Error::Kafka(e));
    }
    admin.delete_acls(&delete).await.map_err(Error::Kafka)?;
    if !create.is_empty() || !delete.is_empty() {
        let mut what: Vec<String> = create.iter().map(|b| format!("+ {b}")).collect();
        what.extend(delete.iter().map(|b| format!("- {b}")));
        info!(user = %username, created = create.len(), deleted = delete.len(), "ACLs updated");
        event(
            ctx,
            ku,
            "AclsUpdated",
            format!("{kafka_name}: {}", what.join("; ")),
        )
        .await;
    }

    if !quota_ops.is_empty() {
        admin
            .alter_user_quotas(&kafka_name, &quota_ops, false)
            .await
            .map_err(Error::Kafka)?;
        let what: Vec<String> = quota_ops
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => format!("{k} removed"),
            })
            .collect();
        event(
            ctx,
            ku,
            "QuotasUpdated",
            format!("{kafka_name}: {}", what.join(", ")),
        )
        .await;
    }

    st.observed_generation = ku.metadata.generation;
    st.acls = desired.iter().map(ToString::to_string).collect();
    st.acl_count = Some(i32::try_from(desired.len()).unwrap_or(i32::MAX));
    let mut in_force = actual_quotas;
    for (k, v) in &quota_ops {
        match v {
            Some(v) => in_force.insert(k.clone(), *v),
            None => in_force.remove(k),
        };
    }
    st.quotas = plan::observed_quotas(&in_force);
    set_condition(
        &mut st.conditions,
        READY,
        true,
        "UserReady",
        &format!(
            "{kafka_name} has {what}, {} ACL(s) and the spec's quotas",
            desired.len()
        ),
        ku.metadata.generation,
        &now(),
    );
    patch_status(ctx, ku, st).await?;
    Ok(Action::requeue(RESYNC))
}

/// Removes identity `kafka_name` of user `username` from Kafka: the ACLs naming it, the
/// quotas Stoker manages on it, and the user's SCRAM credentials.
async fn remove_identity(
    admin: &KafkaAdmin,
    kafka_name: &str,
    username: &str,
) -> Result<usize, Error> {
    let acls = admin
        .acls(&plan::principal(kafka_name))
        .await
        .map_err(Error::Kafka)?;
    admin.delete_acls(&acls).await.map_err(Error::Kafka)?;
    admin
        .delete_scram_sha512(username)
        .await
        .map_err(Error::Kafka)?;
    let quotas: BTreeMap<String, Option<f64>> = admin
        .user_quotas(kafka_name)
        .await
        .map_err(Error::Kafka)?
        .into_keys()
        .filter(|k| plan::desired_quotas(None).contains_key(k.as_str()))
        .map(|k| (k, None))
        .collect();
    admin
        .alter_user_quotas(kafka_name, &quotas, false)
        .await
        .map_err(Error::Kafka)?;
    Ok(acls.len())
}

async fn cleanup(ku: &KafkaUser, ctx: &Context) -> Result<Action, Error> {
    let username = ku.name_any();
    let ClusterAccess::Admin(admin, _) = cluster_access(ku, ctx).await? else {
        warn!(user = %username, "The KafkaCluster is gone; nothing to remove the user from");
        return Ok(Action::await_change());
    };
    let kafka_name = plan::kafka_name(&ku.spec, &username);
    let acls = remove_identity(&admin, &kafka_name, &username).await?;
    info!(user = %kafka_name, acls, "Removed the user's credentials, ACLs and quotas from Kafka");
    Ok(Action::await_change())
}
