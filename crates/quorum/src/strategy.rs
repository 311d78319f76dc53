//! One quorum call, reused by reads and writes: send to some targets,
//! return once enough of them answered, replace a failed target at once,
//! send to one more target when the answers are slow (speculative retry),
//! and let the calls still in flight finish in the background under a
//! bound, handing their results to whoever wants them (read repair).
//!
//! Generic over what a target is (`K`: a node, or a node standing in for
//! another), what a call answers (`T`) and how it fails (`E`), so it is
//! tested with plain futures and no network. Where targets come from is the
//! caller's [`CallPlan`]; which answers count toward the quorum, and
//! whether the answers so far are enough, are the caller's closures.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where extra targets come from, beyond the first ones asked.
pub trait CallPlan<K>: Send + 'static {
    /// A target to ask in place of `failed` (its call failed), if any.
    fn replace(&mut self, failed: &K) -> Option<K>;
    /// One more target to ask because the answers are slow or not enough.
    fn extra(&mut self) -> Option<K>;
}

/// When a quorum call is done and how long it may go on.
#[derive(Clone, Debug)]
pub struct RequestStrategy {
    /// Counted successes needed.
    pub quorum: usize,
    /// Stop waiting for the quorum here; failed targets are replaced only
    /// before it.
    pub deadline: Instant,
    /// Ask one more target (the plan's [`CallPlan::extra`]) each time this
    /// long passes without the quorum (`None`: never).
    pub speculative_delay: Option<Duration>,
    /// Calls still in flight when the caller is answered run on in a
    /// spawned task until here, and no longer.
    pub straggler_deadline: Instant,
}

/// What a quorum call saw before it returned.
#[derive(Debug)]
pub struct CallOutcome<K, T, E> {
    /// Every success, in arrival order.
    pub successes: Vec<(K, T)>,
    /// Successes that counted toward the quorum.
    pub counted: usize,
    /// Every failure, in arrival order.
    pub failures: Vec<(K, E)>,
    /// Whether the quorum was met (and the caller's `enough` held).
    pub reached: bool,
    /// Targets asked so far (first, replacements and extras).
    pub asked: usize,
}

/// The result of one call to one target, as handed to a straggler channel.
pub type Answer<K, T, E> = (K, Result<T, E>);

type Inflight<K, T, E> = FuturesUnordered<BoxFuture<'static, Answer<K, T, E>>>;

/// Calls `ask` on each of `targets` and waits until `quorum` successes
/// that `counts` accepts have arrived and `enough` holds for all successes
/// so far, or the deadline passes, or nothing is left to ask.
///
/// A failure is replaced by [`CallPlan::replace`] before the deadline; a
/// quorum that is slow (`speculative_delay`) or met but not `enough` asks
/// [`CallPlan::extra`]. Once the caller is answered, calls still in flight
/// run on in a spawned task until `straggler_deadline` (still replacing
/// failures before `deadline`, as a write's hints need), and each of their
/// results goes to `stragglers` if given; the sender is dropped when the
/// task ends, so a receiver sees the end.
#[allow(clippy::too_many_arguments)]
pub async fn try_call_many<K, T, E, P, A, C, N>(
    strategy: &RequestStrategy,
    targets: Vec<K>,
    mut plan: P,
    ask: A,
    mut counts: C,
    mut enough: N,
    stragglers: Option<mpsc::UnboundedSender<Answer<K, T, E>>>,
) -> CallOutcome<K, T, E>
where
    K: Clone + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    P: CallPlan<K>,
    A: Fn(K) -> BoxFuture<'static, Result<T, E>> + Send + Sync + 'static,
    C: FnMut(&K, &T) -> bool,
    N: FnMut(&[(K, T)]) -> bool,
{
    let send = move |k: K| -> BoxFuture<'static, Answer<K, T, E>> {
        let call = ask(k.clone());
        Box::pin(async move { (k, call.await) })
    };
    let mut inflight: Inflight<K, T, E> = FuturesUnordered::new();
    let mut out = CallOutcome {
        successes: Vec::new(),
        counted: 0,
        failures: Vec::new(),
        reached: false,
        asked: 0,
    };
    for t in targets {
        inflight.push(send(t));
        out.asked += 1;
    }
    let mut next_speculation = strategy
        .speculative_delay
        .map(|d| Instant::now() + d)
        .filter(|at| *at < strategy.deadline);
    loop {
        if out.counted >= strategy.quorum {
            if enough(&out.successes) {
                out.reached = true;
                break;
            }
            // Met but not enough (a session read behind its context): ask
            // one more whenever nothing else could change the answer.
            if inflight.is_empty() {
                match plan.extra() {
                    Some(t) => {
                        inflight.push(send(t));
                        out.asked += 1;
                    }
                    None => break,
                }
            }
        }
        if inflight.is_empty() {
            match plan.extra() {
                Some(t) if Instant::now() < strategy.deadline => {
                    inflight.push(send(t));
                    out.asked += 1;
                }
                _ => break,
            }
        }
        let wake = next_speculation.unwrap_or(strategy.deadline);
        let next = tokio::time::timeout_at(wake, inflight.next()).await;
        match next {
            Ok(Some((k, Ok(v)))) => {
                if counts(&k, &v) {
                    out.counted += 1;
                }
                out.successes.push((k, v));
            }
            Ok(Some((k, Err(e)))) => {
                if Instant::now() < strategy.deadline
                    && let Some(r) = plan.replace(&k)
                {
                    inflight.push(send(r));
                    out.asked += 1;
                }
                out.failures.push((k, e));
            }
            Ok(None) => {}
            Err(_) if next_speculation.is_some() && Instant::now() < strategy.deadline => {
                // One more target per delay, until none is left.
                next_speculation = match plan.extra() {
                    Some(t) => {
                        inflight.push(send(t));
                        out.asked += 1;
                        strategy
                            .speculative_delay
                            .map(|d| Instant::now() + d)
                            .filter(|at| *at < strategy.deadline)
                    }
                    None => None,
                };
            }
            Err(_) => break,
        }
    }
    if !inflight.is_empty() {
        let (deadline, until) = (strategy.deadline, strategy.straggler_deadline);
        tokio::spawn(drain(inflight, plan, send, deadline, until, stragglers));
    }
    out
}

/// Runs the calls left in flight to their end (or `until`), replacing a
/// failed one before `deadline`, and reports each result.
async fn drain<K, T, E, P, S>(
    mut inflight: Inflight<K, T, E>,
    mut plan: P,
    send: S,
    deadline: Instant,
    until: Instant,
    stragglers: Option<mpsc::UnboundedSender<Answer<K, T, E>>>,
) where
    K: Clone + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    P: CallPlan<K>,
    S: Fn(K) -> BoxFuture<'static, Answer<K, T, E>> + Send + 'static,
{
    while let Ok(Some((k, r))) = tokio::time::timeout_at(until, inflight.next()).await {
        if r.is_err()
            && Instant::now() < deadline
            && let Some(t) = plan.replace(&k)
        {
            inflight.push(send(t));
        }
        if let Some(tx) = &stragglers {
            let _ = tx.send((k, r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A fake replica: how long it takes and whether it answers.
    #[derive(Clone, Copy)]
    struct Fake {
        after: Duration,
        ok: bool,
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Spares asked in order, for both replacement and extras.
    struct Spares(Vec<&'static str>);

    impl CallPlan<&'static str> for Spares {
        fn replace(&mut self, _: &&'static str) -> Option<&'static str> {
            self.extra()
        }
        fn extra(&mut self) -> Option<&'static str> {
            (!self.0.is_empty()).then(|| self.0.remove(0))
        }
    }

    type Calls = Arc<Mutex<Vec<&'static str>>>;

    fn fakes(
        replicas: &[(&'static str, Fake)],
    ) -> (
        Calls,
        impl Fn(&'static str) -> BoxFuture<'static, Result<u32, String>> + Send + Sync + 'static,
    ) {
        let calls: Calls = Arc::default();
        let table: HashMap<&'static str, Fake> = replicas.iter().copied().collect();
        let seen = calls.clone();
        let ask = move |k: &'static str| -> BoxFuture<'static, Result<u32, String>> {
            seen.lock().unwrap().push(k);
            let f = table[k];
            Box::pin(async move {
                tokio::time::sleep(f.after).await;
                if f.ok {
                    Ok(1)
                } else {
                    Err(format!("{k} failed"))
                }
            })
        };
        (calls, ask)
    }

    fn strategy(quorum: usize, speculative: Option<Duration>) -> RequestStrategy {
        let now = Instant::now();
        RequestStrategy {
            quorum,
            deadline: now + ms(1000),
            speculative_delay: speculative,
            straggler_deadline: now + ms(2000),
        }
    }

    const FAST: Fake = Fake {
        after: Duration::from_millis(1),
        ok: true,
    };

    #[tokio::test(start_paused = true)]
    async fn returns_at_quorum_and_hands_stragglers_over() {
        let slow = Fake {
            after: ms(500),
            ok: true,
        };
        let (calls, ask) = fakes(&[("a", FAST), ("b", FAST), ("c", slow)]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        let out = try_call_many(
            &strategy(2, None),
            vec!["a", "b", "c"],
            Spares(vec![]),
            ask,
            |_, _| true,
            |_| true,
            Some(tx),
        )
        .await;
        assert!(out.reached);
        assert_eq!(out.counted, 2);
        assert!(started.elapsed() < ms(500), "did not wait for the slow one");
        assert_eq!(*calls.lock().unwrap(), vec!["a", "b", "c"]);
        let (late, r) = rx.recv().await.unwrap();
        assert_eq!((late, r), ("c", Ok(1)));
        assert!(
            rx.recv().await.is_none(),
            "the channel closes after the drain"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_replaced_by_a_spare() {
        let down = Fake {
            after: ms(1),
            ok: false,
        };
        let (calls, ask) = fakes(&[("a", FAST), ("b", down), ("s", FAST)]);
        let out = try_call_many(
            &strategy(2, None),
            vec!["a", "b"],
            Spares(vec!["s"]),
            ask,
            |_, _| true,
            |_| true,
            None,
        )
        .await;
        assert!(out.reached);
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].0, "b");
        assert_eq!(*calls.lock().unwrap(), vec!["a", "b", "s"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_a_call_without_quorum() {
        let hung = Fake {
            after: ms(60_000),
            ok: true,
        };
        let (_, ask) = fakes(&[("a", FAST), ("b", hung)]);
        let s = strategy(2, None);
        let out = try_call_many(
            &s,
            vec!["a", "b"],
            Spares(vec![]),
            ask,
            |_, _| true,
            |_| true,
            None,
        )
        .await;
        assert!(!out.reached);
        assert_eq!(out.counted, 1);
        assert!(Instant::now() >= s.deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_target_gets_a_speculative_peer_after_the_delay() {
        let slow = Fake {
            after: ms(400),
            ok: true,
        };
        let (calls, ask) = fakes(&[("a", FAST), ("b", slow), ("c", FAST)]);
        let started = Instant::now();
        let out = try_call_many(
            &strategy(2, Some(ms(20))),
            vec!["a", "b"],
            Spares(vec!["c"]),
            ask,
            |_, _| true,
            |_| true,
            None,
        )
        .await;
        assert!(out.reached);
        assert_eq!(out.asked, 3);
        let took = started.elapsed();
        assert!(took >= ms(20) && took < ms(400), "took {took:?}");
        assert_eq!(*calls.lock().unwrap(), vec!["a", "b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_speculation_when_the_quorum_is_quick() {
        let (calls, ask) = fakes(&[("a", FAST), ("b", FAST), ("c", FAST)]);
        let out = try_call_many(
            &strategy(2, Some(ms(20))),
            vec!["a", "b"],
            Spares(vec!["c"]),
            ask,
            |_, _| true,
            |_| true,
            None,
        )
        .await;
        assert!(out.reached);
        assert_eq!(*calls.lock().unwrap(), vec!["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn not_enough_asks_more_until_it_is() {
        let (calls, ask) = fakes(&[("a", FAST), ("b", FAST), ("c", FAST)]);
        // "Enough" only once c answered (a session read whose context
        // only c has seen).
        let out = try_call_many(
            &strategy(1, None),
            vec!["a"],
            Spares(vec!["b", "c"]),
            ask,
            |_, _| true,
            |s: &[(&'static str, u32)]| s.iter().any(|(k, _)| *k == "c"),
            None,
        )
        .await;
        assert!(out.reached);
        assert_eq!(*calls.lock().unwrap(), vec!["a", "b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn uncounted_successes_do_not_make_a_quorum() {
        let (_, ask) = fakes(&[("a", FAST), ("b", FAST)]);
        let out = try_call_many(
            &strategy(2, None),
            vec!["a", "b"],
            Spares(vec![]),
            ask,
            |k, _| *k == "a",
            |_| true,
            None,
        )
        .await;
        assert!(!out.reached);
        assert_eq!((out.counted, out.successes.len()), (1, 2));
    }
}
