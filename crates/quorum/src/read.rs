//! Reads: R of N replicas, digests from the others, speculative retry.
//!
//! 1. **Targets.** R primaries: this node first if it is one (read in
//!    place), then the others the failure detector holds up, fastest first
//!    by their observed latency, then those it holds down. With `sloppy`, a
//!    fallback stands in for a down primary among the first R, and for a
//!    primary whose read fails once no other primary is left.
//! 2. **Quorum.** The [`strategy`](crate::strategy) call answers at R
//!    counted replies (a fallback counts only when sloppy), replacing a
//!    failed target at once. A session read (`after`) also waits until the
//!    merge descends from its context, asking the next primary when the
//!    first R are behind.
//! 3. **Speculative retry** (Cassandra's `speculative_retry`): if the R
//!    replies are not in after the slowest first target's observed p99
//!    (or a fixed delay), a full read goes to the next primary not yet
//!    asked.
//! 4. **Read repair, never waited for.** With probability
//!    `read_repair_chance` the primaries not asked for the object are asked
//!    for its digest only. In the background, once late replies are in (or
//!    `read_repair_wait` has passed): replicas whose digest differs from
//!    the merge of the full replies are read in full, and every replica
//!    behind the merge gets it (`plan_read_repair`). When the R replies
//!    agree and no digest was asked for, nothing else is contacted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynkv_repair::{ReplicaReply, plan_read_repair, should_repair};
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{Read, ReplicaReport, Replicate};
use dynkv_vclock::{DvvSet, Object};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::strategy::{self, Answer, CallPlan, RequestStrategy};
use crate::{Coordinator, Placement, QuorumError, ReadOptions, metrics};

/// When a read asks one more replica because its replies are slow
/// (Cassandra's `speculative_retry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpeculativeRetry {
    /// After the observed p99 latency of the slowest replica asked.
    #[default]
    P99,
    /// After a fixed delay.
    Fixed(Duration),
    /// Never: wait for the replicas asked (and their replacements).
    Never,
}

impl SpeculativeRetry {
    /// Parses the config form: `p99`, `<n>ms` or `none`.
    pub fn parse(s: &str) -> Result<SpeculativeRetry, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "p99" => Ok(SpeculativeRetry::P99),
            "none" => Ok(SpeculativeRetry::Never),
            other => other
                .strip_suffix("ms")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map(|n| SpeculativeRetry::Fixed(Duration::from_millis(n)))
                .ok_or_else(|| format!("must be p99, none or a delay like 20ms, got {s:?}")),
        }
    }
}

/// The shortest speculative delay: below it a retry would race replies
/// that are merely scheduled late.
const MIN_SPECULATIVE_DELAY: Duration = Duration::from_millis(1);

/// One replica asked for a read: a primary, or a fallback for `hint_for`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadTarget {
    pub(crate) node: NodeId,
    pub(crate) hint_for: Option<NodeId>,
}

/// The digest reads of one read, running in their own task: each node
/// that answered, with its digest (`None`: it has no copy).
type DigestReads = tokio::task::JoinHandle<Vec<(NodeId, Option<u64>)>>;

/// One replica's full reply, kept for read repair.
#[derive(Clone, Debug)]
struct Reply {
    node: NodeId,
    hint_for: Option<NodeId>,
    object: Option<Arc<Object>>,
}

/// Where a read's targets come from: primaries in preference order, then
/// (sloppy) fallbacks standing in for failed primaries.
struct ReadPlan {
    primaries: VecDeque<NodeId>,
    fallbacks: VecDeque<NodeId>,
}

impl ReadPlan {
    /// Takes the first `r` targets; a down primary gets a fallback in its
    /// place when one is left.
    fn first(&mut self, r: usize, is_up: impl Fn(&NodeId) -> bool) -> Vec<ReadTarget> {
        let mut out = Vec::with_capacity(r);
        while out.len() < r {
            let Some(p) = self.primaries.pop_front() else {
                break;
            };
            if !is_up(&p)
                && let Some(f) = self.fallbacks.pop_front()
            {
                out.push(ReadTarget {
                    node: f,
                    hint_for: Some(p),
                });
            } else {
                out.push(ReadTarget {
                    node: p,
                    hint_for: None,
                });
            }
        }
        out
    }
}

impl CallPlan<ReadTarget> for ReadPlan {
    fn replace(&mut self, failed: &ReadTarget) -> Option<ReadTarget> {
        if let Some(p) = self.primaries.pop_front() {
            return Some(ReadTarget {
                node: p,
                hint_for: None,
            });
        }
        let owner = failed.hint_for.clone().unwrap_or(failed.node.clone());
        self.fallbacks.pop_front().map(|f| ReadTarget {
            node: f,
            hint_for: Some(owner),
        })
    }

    fn extra(&mut self) -> Option<ReadTarget> {
        self.primaries.pop_front().map(|p| ReadTarget {
            node: p,
            hint_for: None,
        })
    }
}

/// The `sync` of every object among `replies`.
fn merge_all<'a>(objects: impl Iterator<Item = &'a Object>) -> Option<Object> {
    objects.fold(None, |m, o| {
        Some(match m {
            Some(m) => DvvSet::sync(&m, o),
            None => o.clone(),
        })
    })
}

impl Coordinator {
    /// A client GET: the `sync` of R replies (`None` if no replica has the
    /// key). See the [module](crate::read) for who is asked.
    pub async fn get(
        self: &Arc<Self>,
        key: Bytes,
        opts: ReadOptions,
    ) -> Result<Option<Object>, QuorumError> {
        self.get_reported(key, opts).await.0
    }

    /// [`Coordinator::get`], with what the replicas did before the answer
    /// (the `X-Dynkv-Replicas` header; see [`ReplicaReport`]), whether
    /// the read succeeded or not.
    pub async fn get_reported(
        self: &Arc<Self>,
        key: Bytes,
        opts: ReadOptions,
    ) -> (Result<Option<Object>, QuorumError>, ReplicaReport) {
        let mut report = ReplicaReport::default();
        let r = self.read_with_report(key, opts, &mut report).await;
        (r, report)
    }

    async fn read_with_report(
        self: &Arc<Self>,
        key: Bytes,
        opts: ReadOptions,
        report: &mut ReplicaReport,
    ) -> Result<Option<Object>, QuorumError> {
        let timeout = opts.timeout.unwrap_or(self.config.default_timeout);
        let deadline = Instant::now() + timeout;
        let placement = self.replica.placement_n(&key, opts.n_val);
        let role = if placement.primaries.contains(&self.me) {
            "primary"
        } else {
            "other"
        };
        self.metrics
            .reads_coordinated
            .get_or_create(&crate::metrics::RoleLabels { role })
            .inc();
        let n = placement.primaries.len();
        let r = opts
            .r
            .unwrap_or(self.config.default_r)
            .required_of(n)
            .map_err(|e| QuorumError::BadRequest(format!("r={e}")))?;
        if placement.primaries.len() == 1 && placement.primaries[0] == self.me {
            // The only replica is this node: read it in place (no fan-out
            // task, no read repair to plan).
            report.asked = 1;
            let o = self.replica.read(key, None).await?;
            report.answered = 1;
            let seen = o.as_ref().map(|o| o.join()).unwrap_or_default();
            if opts.after.as_ref().is_some_and(|ctx| !seen.descends(ctx)) {
                self.metrics.stale_reads.inc();
                return Err(QuorumError::Stale { answered: 1 });
            }
            return Ok(o);
        }
        let mut plan = self.read_plan(&placement, opts.sloppy);
        let first = plan.first(r, |p| self.health.is_up(p));
        let digest_targets: Vec<NodeId> = if self.config.read_repair
            && should_repair(self.config.read_repair_chance, rand::random::<f64>())
        {
            plan.primaries
                .iter()
                .filter(|p| self.health.is_up(p))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let repair_deadline = deadline.max(Instant::now() + self.config.read_repair_wait);
        report.asked = digest_targets.len() as u32;
        let digests = (!digest_targets.is_empty())
            .then(|| tokio::spawn(self.clone().read_digests(key.clone(), digest_targets)));
        let call = RequestStrategy {
            quorum: r,
            deadline,
            speculative_delay: self.speculative_delay(&first),
            straggler_deadline: repair_deadline,
        };
        let (late_tx, late_rx) = mpsc::unbounded_channel();
        let this = self.clone();
        let read_key = key.clone();
        let ask = move |t: ReadTarget| -> BoxFuture<'static, Result<Option<Object>, String>> {
            let (this, key) = (this.clone(), read_key.clone());
            Box::pin(async move {
                if t.node == this.me {
                    return this
                        .replica
                        .read(key, t.hint_for)
                        .await
                        .map_err(|e| e.to_string());
                }
                let req = Read {
                    key,
                    hint_for: t.hint_for,
                    digest_only: false,
                };
                let (started, sent) = (Instant::now(), crate::now_micros());
                let reply = this
                    .call(&t.node, &req, this.rpc_deadline(deadline))
                    .await
                    .map_err(|e| e.to_string())?;
                let x = this.exchange(started, sent, reply.service_micros, reply.received_micros);
                this.pbs.record_read(t.node.as_str(), x);
                Ok(reply.object)
            })
        };
        let sloppy = opts.sloppy;
        // A session read also needs the merge to descend from its context.
        let after = opts.after.clone();
        let caught_up = move |replies: &[(ReadTarget, Option<Object>)]| match &after {
            None => true,
            Some(ctx) => merge_all(replies.iter().filter_map(|(_, o)| o.as_ref()))
                .map(|o| o.join())
                .unwrap_or_default()
                .descends(ctx),
        };
        let out = strategy::try_call_many(
            &call,
            first,
            plan,
            ask,
            |t: &ReadTarget, _: &Option<Object>| t.hint_for.is_none() || sloppy,
            caught_up,
            Some(late_tx),
        )
        .await;
        let merged = merge_all(out.successes.iter().filter_map(|(_, o)| o.as_ref()));
        report.asked += out.asked as u32;
        report.answered = out.successes.len() as u32;
        report.sloppy = out
            .successes
            .iter()
            .filter(|(t, _)| t.hint_for.is_some())
            .count() as u32;
        if self.config.read_repair {
            // The primaries read in full that are behind the merge: the
            // ones read repair sends it to (plan_read_repair's rule).
            let want = merged.as_ref().map(|o| o.digest());
            report.repaired = out
                .successes
                .iter()
                .filter(|(t, o)| t.hint_for.is_none() && o.as_ref().map(|o| o.digest()) != want)
                .count() as u32;
            let late_possible = out.asked > out.successes.len() + out.failures.len();
            let disagree = || {
                let want = merged.as_ref().map(|o| o.digest());
                out.successes
                    .iter()
                    .any(|(_, o)| o.as_ref().map(|o| o.digest()) != want)
            };
            if digests.is_some() || late_possible || disagree() {
                let replies: Vec<Reply> = out
                    .successes
                    .iter()
                    .map(|(t, o)| Reply {
                        node: t.node.clone(),
                        hint_for: t.hint_for.clone(),
                        object: o.clone().map(Arc::new),
                    })
                    .collect();
                let this = self.clone();
                tokio::spawn(async move {
                    this.repair_after_read(key, replies, late_rx, digests, repair_deadline)
                        .await
                });
            }
        }
        if out.counted < r {
            self.metrics
                .quorum_failures
                .get_or_create(&metrics::OpLabels { op: "read" })
                .inc();
            return Err(QuorumError::NotEnough {
                op: "read",
                needed: r,
                acked: out.counted,
                detail: out.failures.into_iter().map(|(t, e)| (t.node, e)).collect(),
            });
        }
        if !out.reached {
            self.metrics.stale_reads.inc();
            return Err(QuorumError::Stale {
                answered: out.successes.len(),
            });
        }
        if let Some(m) = &merged {
            self.metrics.siblings.observe(m.sibling_count() as f64);
        }
        Ok(merged)
    }

    /// The primaries in the order a read asks them: this node, then those
    /// held up by observed latency (unmeasured first, so they get
    /// measured), then those held down; the fallbacks held up, if sloppy.
    fn read_plan(&self, placement: &Placement, sloppy: bool) -> ReadPlan {
        let mut primaries = placement.primaries.clone();
        primaries.sort_by_key(|p| {
            let remote = *p != self.me;
            let down = !self.health.is_up(p);
            let mean = self.health.latency(p).map_or(Duration::ZERO, |l| l.mean);
            (remote, down, mean)
        });
        let fallbacks = if sloppy {
            placement
                .fallbacks
                .iter()
                .filter(|f| self.health.is_up(f))
                .cloned()
                .collect()
        } else {
            VecDeque::new()
        };
        ReadPlan {
            primaries: primaries.into(),
            fallbacks,
        }
    }

    /// How long a read waits for its first targets before asking one more:
    /// by `speculative_retry`, the slowest remote target's observed p99,
    /// clamped to [1 ms, rpc_timeout / 2]. `None` when no remote node is
    /// asked (a local read is not retried elsewhere) or retry is off.
    fn speculative_delay(&self, targets: &[ReadTarget]) -> Option<Duration> {
        let remote: Vec<&NodeId> = targets
            .iter()
            .map(|t| &t.node)
            .filter(|n| **n != self.me)
            .collect();
        if remote.is_empty() {
            return None;
        }
        let ceiling = (self.config.rpc_timeout / 2).max(MIN_SPECULATIVE_DELAY);
        let delay = match self.config.speculative_retry {
            SpeculativeRetry::Never => return None,
            SpeculativeRetry::Fixed(d) => d,
            SpeculativeRetry::P99 => remote
                .iter()
                .map(|n| self.health.latency(n).map_or(ceiling, |l| l.p99))
                .max()
                .unwrap_or(ceiling),
        };
        Some(delay.clamp(MIN_SPECULATIVE_DELAY, ceiling))
    }

    /// Asks `nodes` for the key's digest only (bounded by one RPC deadline
    /// each); a node that fails is left out.
    async fn read_digests(
        self: Arc<Self>,
        key: Bytes,
        nodes: Vec<NodeId>,
    ) -> Vec<(NodeId, Option<u64>)> {
        let req = Read {
            key,
            hint_for: None,
            digest_only: true,
        };
        let asks = nodes.into_iter().map(|n| {
            let req = req.clone();
            let this = self.clone();
            async move {
                let r = this.call(&n, &req, this.config.rpc_timeout).await;
                (n, r)
            }
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|(n, r)| match r {
                // An older peer answers with the object instead.
                Ok(reply) => Some((n, reply.digest.or(reply.object.map(|o| o.digest())))),
                Err(_) => None,
            })
            .collect()
    }

    /// Read repair after the client was answered: waits for the late
    /// replies and the digests, reads in full the replicas whose digest
    /// differs, and sends the merge to every replica behind it.
    async fn repair_after_read(
        self: Arc<Self>,
        key: Bytes,
        mut replies: Vec<Reply>,
        mut late: mpsc::UnboundedReceiver<Answer<ReadTarget, Option<Object>, String>>,
        digests: Option<DigestReads>,
        until: Instant,
    ) {
        while let Ok(Some((t, r))) = tokio::time::timeout_at(until, late.recv()).await {
            if let Ok(o) = r {
                replies.push(Reply {
                    node: t.node,
                    hint_for: t.hint_for,
                    object: o.map(Arc::new),
                });
            }
        }
        if let Some(digests) = digests
            && let Ok(digests) = digests.await
        {
            let merged = merge_all(replies.iter().filter_map(|r| r.object.as_deref()));
            let want = merged.as_ref().map(|o| o.digest());
            let differ: Vec<NodeId> = digests
                .into_iter()
                .filter(|(n, d)| *d != want && !replies.iter().any(|r| r.node == *n))
                .map(|(n, _)| n)
                .collect();
            let req = |key: Bytes| Read {
                key,
                hint_for: None,
                digest_only: false,
            };
            let fetches = differ.into_iter().map(|n| {
                let req = req(key.clone());
                let this = self.clone();
                async move {
                    (
                        n.clone(),
                        this.call(&n, &req, this.config.rpc_timeout).await,
                    )
                }
            });
            for (node, r) in futures::future::join_all(fetches).await {
                if let Ok(reply) = r {
                    replies.push(Reply {
                        node,
                        hint_for: None,
                        object: reply.object.map(Arc::new),
                    });
                }
            }
        }
        // Bulkhead: a bounded number of repairs at once; past it, skip.
        match self.repair_slots.clone().try_acquire_owned() {
            Ok(_permit) => self.read_repair(key, replies).await,
            Err(_) => {
                self.metrics
                    .read_repairs
                    .get_or_create(&metrics::OutcomeLabels { outcome: "skipped" })
                    .inc();
            }
        }
    }

    /// Sends the merge of `replies` to every replica among them behind it.
    async fn read_repair(self: &Arc<Self>, key: Bytes, replies: Vec<Reply>) {
        let views: Vec<ReplicaReply<'_>> = replies
            .iter()
            .map(|r| ReplicaReply {
                node: &r.node,
                object: r.object.as_deref(),
                hint_for: r.hint_for.as_ref(),
            })
            .collect();
        let Some(plan) = plan_read_repair(&views) else {
            return;
        };
        if plan.stale.is_empty() {
            return;
        }
        let req = Replicate {
            key: key.clone(),
            object: plan.merged,
        };
        let key = &key;
        let sends = plan.stale.iter().map(|node| {
            let req = req.clone();
            async move {
                let ok = if *node == self.me {
                    self.replica.merge(req.key, req.object).await.is_ok()
                } else {
                    self.call(node, &req, self.config.rpc_timeout).await.is_ok()
                };
                let outcome = if ok { "repaired" } else { "failed" };
                self.metrics
                    .read_repairs
                    .get_or_create(&metrics::OutcomeLabels { outcome })
                    .inc();
                debug!(node = %node, key = %String::from_utf8_lossy(key), outcome, "read repair");
            }
        });
        futures::future::join_all(sends).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn plan(primaries: &[&str], fallbacks: &[&str]) -> ReadPlan {
        ReadPlan {
            primaries: primaries.iter().map(|p| node(p)).collect(),
            fallbacks: fallbacks.iter().map(|p| node(p)).collect(),
        }
    }

    #[test]
    fn speculative_retry_parses_its_three_forms() {
        assert_eq!(SpeculativeRetry::parse("p99"), Ok(SpeculativeRetry::P99));
        assert_eq!(SpeculativeRetry::parse("NONE"), Ok(SpeculativeRetry::Never));
        assert_eq!(
            SpeculativeRetry::parse("20ms"),
            Ok(SpeculativeRetry::Fixed(Duration::from_millis(20)))
        );
        assert!(SpeculativeRetry::parse("20").is_err());
        assert!(SpeculativeRetry::parse("p95").is_err());
    }

    #[test]
    fn a_down_primary_among_the_first_gets_a_fallback() {
        let mut p = plan(&["a", "b", "c"], &["f"]);
        let first = p.first(2, |n| n.as_str() != "b");
        assert_eq!(
            first,
            vec![
                ReadTarget {
                    node: node("a"),
                    hint_for: None
                },
                ReadTarget {
                    node: node("f"),
                    hint_for: Some(node("b"))
                },
            ]
        );
        // The primary left over is the next extra.
        assert_eq!(p.extra().unwrap().node, node("c"));
        assert_eq!(p.extra(), None);
    }

    #[test]
    fn a_failure_is_replaced_by_a_primary_before_a_fallback() {
        let mut p = plan(&["c"], &["f"]);
        let failed = ReadTarget {
            node: node("a"),
            hint_for: None,
        };
        assert_eq!(p.replace(&failed).unwrap().node, node("c"));
        let again = p.replace(&failed).unwrap();
        assert_eq!((again.node, again.hint_for), (node("f"), Some(node("a"))));
        assert_eq!(p.replace(&failed), None);
    }
}
