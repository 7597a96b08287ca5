//! The compaction invariant over random interleavings, on both stores, with the real job
//! ([`compact`]) and a summarizer the test answers step by step. The steps: sends (plain
//! answers and tool exchanges), jobs started while others run, summarizer answers that
//! succeed, fail or are empty, jobs killed while they wait for the summarizer (between
//! its call and their commit), leases left to lapse, and an operator's PATCHes. After
//! every step:
//! - every turn ever sent is in the history, in order, unchanged;
//! - the summary covers exactly the turns before its watermark, each folded once and
//!   oldest first (the fake summarizer writes down which turns it folded), and ends
//!   between units;
//! - generations only grow, and a changed summary has a new one;
//! - the context built from it fits the budget.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use proptest::{prelude::*, test_runner::TestRunner};
use session_relay::{
    config::Settings,
    conversation::{
        compaction::job::{FoldPlan, JobError, Outcome, Summarizer, compact},
        context::{Around, assemble},
    },
    domain::{
        compaction::{Summary, summary_turn_text},
        message::{Message, Role, Turn, message_id, message_index},
        scope::SessionKey,
        session::{UsageTotals, new_id},
        tokens::TokenCounter,
        tools::{FunctionCall, ToolCall},
    },
    error::ApiError,
    llm::registry::{Model, ModelRegistry},
    per_thread::PerThread,
    store::{Admission, AdmitRequest, Commit, CommitOutcome, Store, memory::MemoryStore},
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::store_suite::{config, unprepared_redis_store};

/// Short, so that a case can wait one out.
const LEASE_MS: u64 = 150;
const BUDGET: u32 = 400;
const MAX_SUMMARY_TOKENS: u32 = 128;

#[derive(Debug, Clone, Copy)]
enum Reply {
    Summary,
    Failure,
    Empty,
}

#[derive(Debug, Clone)]
enum Step {
    /// A user turn and its answer; `calls` > 0: the answer calls that many tools, their
    /// results follow, then a final answer.
    Send {
        words: usize,
        calls: usize,
    },
    Start,
    Answer {
        job: usize,
        reply: Reply,
    },
    Kill {
        job: usize,
    },
    Lapse,
    /// Sets the summary to cover up to the `at`-th boundary (as a share), or clears it.
    Patch {
        at: f64,
        clear: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let reply = prop_oneof![
        6 => Just(Reply::Summary),
        1 => Just(Reply::Failure),
        1 => Just(Reply::Empty),
    ];
    prop_oneof![
        8 => (1usize..30, prop_oneof![3 => Just(0usize), 1 => 1usize..4])
            .prop_map(|(words, calls)| Step::Send { words, calls }),
        3 => Just(Step::Start),
        5 => (0usize..4, reply).prop_map(|(job, reply)| Step::Answer { job, reply }),
        1 => (0usize..4).prop_map(|job| Step::Kill { job }),
        1 => Just(Step::Lapse),
        1 => (0.0f64..1.0, prop::bool::weighted(0.3)).prop_map(|(at, clear)| Step::Patch { at, clear }),
    ]
}

/// What the summarizer is asked: the summary so far and the turns to fold onto it.
struct Ask {
    previous: Option<String>,
    chunk: Vec<Turn>,
    reply: oneshot::Sender<Reply>,
}

/// Hands every call to the test and answers as told. Its summary names the turns folded,
/// chunk by chunk (`0-4,5-9`), so the test can tell exactly what a summary covers.
struct Scripted {
    asks: mpsc::UnboundedSender<Ask>,
}

#[async_trait]
impl Summarizer for Scripted {
    async fn summarize(
        &self,
        previous: Option<&str>,
        chunk: &[Turn],
    ) -> Result<(String, UsageTotals), JobError> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            previous: previous.map(str::to_string),
            chunk: chunk.to_vec(),
            reply,
        };
        self.asks.send(ask).map_err(|_| JobError::Rejected)?;
        // A killed job never hears back; its task is gone with it.
        match answer.await.map_err(|_| JobError::Rejected)? {
            Reply::Summary => Ok((folded(previous, chunk), UsageTotals::default())),
            Reply::Failure => Err(JobError::Upstream(ApiError::UpstreamTimeout)),
            Reply::Empty => Err(JobError::Rejected),
        }
    }
}

fn index(turn: &Turn) -> u64 {
    message_index(&turn.id).expect("a message id")
}

/// `previous` with the chunk's range appended; `gap` if its turns are not consecutive.
fn folded(previous: Option<&str>, chunk: &[Turn]) -> String {
    let consecutive = chunk.windows(2).all(|w| index(&w[1]) == index(&w[0]) + 1);
    let range = match (chunk.first(), chunk.last()) {
        (Some(first), Some(last)) if consecutive => format!("{}-{}", index(first), index(last)),
        _ => "gap".to_string(),
    };
    match previous {
        Some(previous) => format!("{previous},{range}"),
        None => range,
    }
}

/// The turns a summary's text says it covers, in the order folded; `None` if malformed.
fn covered(text: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for range in text.split(',') {
        let (a, b) = range.split_once('-')?;
        let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        out.extend(a..=b);
    }
    Some(out)
}

struct Job {
    handle: JoinHandle<Result<Outcome, JobError>>,
    asks: mpsc::UnboundedReceiver<Ask>,
    waiting: Option<Ask>,
}

struct Case {
    store: Arc<dyn Store>,
    key: SessionKey,
    model: Arc<Model>,
    plan: FoldPlan,
    /// Every turn sent, in order: what the history must hold.
    sent: Vec<Turn>,
    jobs: Vec<Job>,
    generation: u64,
    summary: Option<Summary>,
    /// What the last step's PATCH wrote, if it was one.
    patched: Option<Option<Summary>>,
}

impl Case {
    async fn new(store: Arc<dyn Store>, model: Arc<Model>) -> Case {
        let id = new_id();
        let mut config = config("acme", None);
        config.context_window = None;
        config.max_context_tokens = Some(BUDGET);
        let created = store
            .create_session(&id, &config, Utc::now().timestamp_millis())
            .await;
        assert!(created.unwrap(), "{}: create", store.kind());
        let plan = FoldPlan {
            keep_tokens: u64::from(BUDGET / 2),
            chunk_tokens: 80,
            tokenizer: model.tokenizer,
            max_summary_tokens: MAX_SUMMARY_TOKENS,
            lease_ms: LEASE_MS,
        };
        Case {
            store,
            key: SessionKey::new("acme", &id),
            model,
            plan,
            sent: Vec::new(),
            jobs: Vec::new(),
            generation: 0,
            summary: None,
            patched: None,
        }
    }

    fn turn(&self, offset: usize, message: Message) -> Turn {
        let tokens = TokenCounter::shared().count_turn(self.model.tokenizer, &message);
        let index = (self.sent.len() + offset) as u64;
        Turn::new(message_id(index), message, Utc::now(), tokens)
    }

    /// One send as the service commits it: under the session's lease, appended at once.
    async fn send(&mut self, words: usize, calls: usize) {
        let n = self.sent.len();
        let text = (0..words).map(|w| format!("w{n}.{w}")).collect::<Vec<_>>();
        let mut messages = vec![Message::text(Role::User, text.join(" "))];
        if calls > 0 {
            let mut calling = Message::text(Role::Assistant, "");
            calling.tool_calls = (0..calls)
                .map(|c| ToolCall {
                    id: format!("call_{n}_{c}"),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: "lookup".into(),
                        arguments: format!("{{\"q\":{c}}}"),
                    },
                })
                .collect();
            messages.push(calling);
            for c in 0..calls {
                let mut result = Message::text(Role::Tool, format!("result {n}.{c}"));
                result.tool_call_id = Some(format!("call_{n}_{c}"));
                messages.push(result);
            }
        }
        messages.push(Message::text(Role::Assistant, format!("answer {n}")));
        let turns: Vec<Turn> = (messages.into_iter().enumerate())
            .map(|(i, m)| self.turn(i, m))
            .collect();
        let lease = new_id();
        let request = AdmitRequest {
            tenant: "acme",
            lease_token: &lease,
            lease_ms: 10_000,
            claim: None,
            now_ms: Utc::now().timestamp_millis(),
            tail: 4,
            hold_ms: 0,
        };
        let admitted = self.store.admit(&self.key, &request).await.unwrap();
        assert!(matches!(admitted, Admission::Admitted(_)), "{admitted:?}");
        let commit = Commit {
            lease_token: lease,
            expected_len: n as u64,
            turns: turns.clone(),
            usage: UsageTotals::default(),
            now_ms: Utc::now().timestamp_millis(),
            idempotency: None,
        };
        let outcome = self.store.commit(&self.key, &commit).await.unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
        self.sent.extend(turns);
    }

    fn start(&mut self) {
        let (asks, receiver) = mpsc::unbounded_channel();
        let (store, key, plan) = (self.store.clone(), self.key.clone(), self.plan);
        let handle = tokio::spawn(async move {
            let summarizer = Scripted { asks };
            compact(&*store, &key, LEASE_MS, |_| Ok(Some((plan, summarizer)))).await
        });
        self.jobs.push(Job {
            handle,
            asks: receiver,
            waiting: None,
        });
    }

    /// Lets every job run until it waits for the summarizer or ends; checks how it ended.
    async fn settle(&mut self) {
        let mut running = Vec::new();
        for mut job in std::mem::take(&mut self.jobs) {
            if job.waiting.is_none() {
                let wait = tokio::time::timeout(Duration::from_secs(10), async {
                    tokio::select! {
                        ask = job.asks.recv(), if !job.asks.is_closed() => Err(ask),
                        ended = &mut job.handle => Ok(ended),
                    }
                });
                match wait.await.expect("a job hangs") {
                    Err(Some(ask)) => {
                        check_ask(&ask);
                        job.waiting = Some(ask);
                    }
                    Err(None) => {
                        let ended = (&mut job.handle).await.expect("the job's task");
                        check_ending(&ended);
                        continue;
                    }
                    Ok(ended) => {
                        check_ending(&ended.expect("the job's task"));
                        continue;
                    }
                }
            }
            running.push(job);
        }
        self.jobs = running;
    }

    fn answer(&mut self, job: usize, reply: Reply) {
        if self.jobs.is_empty() {
            return;
        }
        let job = job % self.jobs.len();
        if let Some(ask) = self.jobs[job].waiting.take() {
            let _ = ask.reply.send(reply);
        }
    }

    fn kill(&mut self, job: usize) {
        if self.jobs.is_empty() {
            return;
        }
        let job = self.jobs.remove(job % self.jobs.len());
        job.handle.abort();
    }

    /// An operator's PATCH: a summary that covers the turns up to a unit boundary (the
    /// route refuses any other), or none.
    async fn patch(&mut self, at: f64, clear: bool) {
        let boundaries: Vec<usize> = (1..=self.sent.len())
            .filter(|&i| (self.sent.get(i)).is_none_or(|t| !t.message.role.is_call_result()))
            .collect();
        let summary = if clear || boundaries.is_empty() {
            None
        } else {
            let upto =
                boundaries[((at * boundaries.len() as f64) as usize).min(boundaries.len() - 1)];
            let text = format!("0-{}", upto - 1);
            let tokens = TokenCounter::shared().count_message(
                self.model.tokenizer,
                Role::System,
                &summary_turn_text(&text),
            );
            Some(Summary {
                text,
                upto: upto as u64,
                upto_id: self.sent[upto - 1].id.clone(),
                tokens,
                updated_at: Utc::now(),
            })
        };
        let generation = self.store.put_summary(&self.key, summary.as_ref()).await;
        assert!(generation.unwrap().is_some(), "the session is there");
        self.patched = Some(summary);
    }

    async fn step(&mut self, step: &Step) {
        match step {
            Step::Send { words, calls } => self.send(*words, *calls).await,
            Step::Start => self.start(),
            Step::Answer { job, reply } => self.answer(*job, *reply),
            Step::Kill { job } => self.kill(*job),
            Step::Lapse => tokio::time::sleep(Duration::from_millis(LEASE_MS + 30)).await,
            Step::Patch { at, clear } => self.patch(*at, *clear).await,
        }
        self.settle().await;
    }

    /// The invariant, read back from the store.
    async fn check(&mut self) -> Result<(), TestCaseError> {
        let kind = self.store.kind();
        let session = self.store.get_session(&self.key).await.unwrap();
        let session = session.expect("the session is there");
        prop_assert_eq!(session.message_count, self.sent.len() as u64, "{}", kind);
        let history = self.store.turns(&self.key, 0, self.sent.len() + 1).await;
        let history = history.unwrap();
        prop_assert!(history == self.sent, "{}: the history changed", kind);

        prop_assert!(session.summary_generation >= self.generation, "{}", kind);
        if session.summary != self.summary {
            prop_assert!(session.summary_generation > self.generation, "{}", kind);
        }
        // A PATCH is what it wrote; a job's commit builds on the summary it replaces.
        match self.patched.take() {
            Some(patched) => prop_assert_eq!(&session.summary, &patched, "{}", kind),
            None => {
                let (before, now) = (self.summary.as_ref(), session.summary.as_ref());
                if let (Some(before), Some(now)) = (before, now)
                    && before != now
                {
                    let builds_on = now.text.starts_with(&format!("{},", before.text));
                    prop_assert!(builds_on, "{}: {} replaced {}", kind, now.text, before.text);
                }
                prop_assert!(
                    before.is_none() || now.is_some(),
                    "{}: only a PATCH clears",
                    kind
                );
            }
        }
        self.generation = session.summary_generation;
        self.summary = session.summary.clone();
        if let Some(summary) = &session.summary {
            let upto = summary.upto;
            prop_assert!(upto >= 1 && upto <= session.message_count, "{}", kind);
            let expected: Vec<u64> = (0..upto).collect();
            prop_assert_eq!(
                covered(&summary.text),
                Some(expected),
                "{}: {}",
                kind,
                summary.text
            );
            prop_assert_eq!(&summary.upto_id, &self.sent[upto as usize - 1].id);
            let next = self.sent.get(upto as usize);
            prop_assert!(
                next.is_none_or(|t| !t.message.role.is_call_result()),
                "{}: the summary ends between calls and their results",
                kind
            );
        }

        let around = Around {
            new_turns: &[],
            new_tokens: 0,
            tools_tokens: 0,
            pinned: 0,
            budget: BUDGET,
            instructions: None,
        };
        let tail = self.store.recent_turns(&self.key, 4).await.unwrap();
        let context = assemble(&*self.store, &session, &self.model, &around, tail).await;
        let context = context.expect("a context");
        prop_assert!(
            context.tokens <= BUDGET,
            "{}: {} tokens",
            kind,
            context.tokens
        );
        Ok(())
    }
}

/// A chunk starts right after what the summary it builds on covers, and holds whole
/// units: nothing skipped, nothing folded twice.
fn check_ask(ask: &Ask) {
    let start = ask.previous.as_deref().map_or(0, |p| {
        covered(p).expect("a summary the fake wrote").len() as u64
    });
    let first = ask.chunk.first().expect("a chunk holds turns");
    assert_eq!(
        index(first),
        start,
        "the chunk starts where the summary ends"
    );
    assert!(
        !first.message.role.is_call_result(),
        "a chunk starts a unit"
    );
}

/// A job ends well or by its summarizer; never by the store or a missing session.
fn check_ending(ended: &Result<Outcome, JobError>) {
    match ended {
        Ok(Outcome::Missing) => panic!("the session went missing"),
        Err(JobError::Store(err)) => panic!("store: {err}"),
        Err(JobError::Config(err)) => panic!("config: {err}"),
        _ => {}
    }
}

fn echo_model() -> Arc<Model> {
    let http = Arc::new(PerThread::new(reqwest::Client::new));
    let settings = Settings::from_toml("", &Default::default()).expect("the defaults");
    let registry = ModelRegistry::from_settings(&settings, &http);
    registry.get("echo").expect("the built-in model").clone()
}

async fn run_cases(
    store_of: impl Fn() -> futures_util::future::BoxFuture<'static, Arc<dyn Store>>,
) {
    let model = echo_model();
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = prop::collection::vec(step(), 1..60);
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |steps| {
            handle.block_on(async {
                let mut case = Case::new(store_of().await, model.clone()).await;
                for step in &steps {
                    case.step(step).await;
                    case.check().await?;
                }
                // Whatever is still waiting is answered; nothing may break then either.
                for job in 0..case.jobs.len() {
                    case.answer(job, Reply::Summary);
                }
                case.settle().await;
                case.check().await
            })
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_turn_is_summarized_once_or_after_the_watermark_in_memory() {
    run_cases(|| Box::pin(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_turn_is_summarized_once_or_after_the_watermark_on_redis() {
    run_cases(|| {
        Box::pin(async {
            let store = unprepared_redis_store(&format!("ci{}", &new_id()[..12])).await;
            store.prepare().await.expect("store prepared");
            Arc::new(store) as Arc<dyn Store>
        })
    })
    .await;
}
