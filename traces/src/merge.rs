//! What the reader merges: one [`Queue`] of undecoded blocks per thread, and
//! [`Heads`], the threads' next event times in a heap.
//!
//! The merge emits events in `(time, thread)` order, each thread's events in
//! their order in the file: the thread whose next event comes first runs
//! until another thread's next event comes first. When threads take turns
//! every few events, decoding straight into the caller's batch would pay a
//! decoder's setup per run, so such a thread's queue decodes a few hundred
//! events ahead into a batch of its own ([`Queue::decode_run`]) and runs are
//! copied from there. Either way the events, the errors and the point where
//! an error is reported are the same.

use std::collections::VecDeque;

use crate::batch::EventBatch;
use crate::codec;
use crate::event::ThreadId;

/// Events a queue decodes ahead at a time when its thread's runs are short.
const AHEAD_EVENTS: usize = 256;

/// Runs (cut by another thread's event) shorter than this make a thread's
/// queue decode ahead; longer ones make it decode straight into the batch.
/// About where the decoder's setup per run costs what the copy does (four
/// threads in runs of 16 events: 224 instructions per event decoded ahead,
/// 231 straight; in runs of 24: 218 and 212).
pub(crate) const SHORT_RUN: usize = 20;

/// One thread's pending events: undecoded blocks, the thread's address model,
/// and events decoded ahead.
#[derive(Default)]
pub(crate) struct Queue {
    model: codec::AddrModel,
    pub(crate) blocks: VecDeque<codec::BlockDecoder>,
    /// Payload bytes of blocks finished since the reader last looked.
    pub(crate) released: usize,
    /// Payloads of those blocks, for the block reader to reuse.
    pub(crate) spent: Vec<Vec<u8>>,
    /// Events of the front block decoded ahead (never past its end, so a
    /// block is released when its last event leaves, as without), allocated
    /// the first time the thread's runs are short.
    ahead: Option<Box<EventBatch>>,
    /// Next event in `ahead`, and next entry of its others.
    ahead_pos: usize,
    ahead_other: usize,
    /// The error that decoding ahead stopped at, reported when the merge
    /// gets there: with the bad event's time, when that event is next;
    /// without, as soon as the events before it are out (a bad time, or
    /// bytes left over at the end of the block).
    ahead_err: Option<(Option<u64>, String)>,
    /// Whether the next events are decoded ahead.
    short_runs: bool,
    /// Events of the run under way taken by [`Heads::run_ahead`] before the
    /// events decoded ahead ran out (so the run is measured whole).
    run_so_far: usize,
}

impl Queue {
    /// Time of the thread's next event, dropping used-up blocks; `None` when
    /// the queue is empty.
    pub(crate) fn head_time(&mut self) -> Result<Option<u64>, String> {
        if let Some(&t) = self
            .ahead
            .as_ref()
            .and_then(|a| a.times().get(self.ahead_pos))
        {
            return Ok(Some(t));
        }
        match &mut self.ahead_err {
            Some((Some(t), _)) => return Ok(Some(*t)),
            Some((None, e)) => return Err(std::mem::take(e)),
            None => {}
        }
        while let Some(front) = self.blocks.front() {
            if let Some(t) = front.peek_time()? {
                return Ok(Some(t));
            }
            self.release_front();
        }
        Ok(None)
    }

    fn release_front(&mut self) {
        if let Some(b) = self.blocks.pop_front() {
            self.released += b.payload_len();
            self.spent.push(b.into_payload());
        }
    }

    /// Decodes into `out` up to `max` events with time below `limit` (their
    /// thread: `thread`); returns the time of the next event left, if any.
    /// `short_run`: runs shorter than this make the queue decode ahead.
    #[inline(always)]
    pub(crate) fn decode_run(
        &mut self,
        out: &mut EventBatch,
        limit: u128,
        max: usize,
        thread: ThreadId,
        short_run: usize,
    ) -> Result<Option<u64>, String> {
        // The run is taken from events decoded ahead if there are, the fast
        // path when threads take turns: no call, no decoder set up.
        let mut ran = std::mem::take(&mut self.run_so_far);
        if let Some(ahead) = self.ahead.as_deref_mut() {
            let (p, o) = (&mut self.ahead_pos, &mut self.ahead_other);
            let k = out.take_run(ahead, p, o, limit, max, thread);
            ran += k;
            if let Some(&t) = ahead.times().get(*p) {
                if k < max {
                    self.short_runs = ran < short_run;
                }
                return Ok(Some(t));
            }
            return self.decode_run_slow(out, limit, max - k, thread, short_run, ran);
        }
        self.decode_run_slow(out, limit, max, thread, short_run, ran)
    }

    /// [`Queue::decode_run`] once events decoded ahead, if any, are used up
    /// (`ran` of them went into this run).
    #[inline(never)]
    fn decode_run_slow(
        &mut self,
        out: &mut EventBatch,
        limit: u128,
        max: usize,
        thread: ThreadId,
        short_run: usize,
        ran: usize,
    ) -> Result<Option<u64>, String> {
        let start = out.len();
        let next = self.run(out, limit, max, thread);
        let ran = ran + out.len() - start;
        // A run cut by the room left says nothing about the thread's runs.
        if out.len() - start < max {
            self.short_runs = ran < short_run;
        }
        next
    }

    fn run(
        &mut self,
        out: &mut EventBatch,
        limit: u128,
        mut max: usize,
        thread: ThreadId,
    ) -> Result<Option<u64>, String> {
        while max > 0 {
            let pos = self.ahead_pos;
            if let Some(ahead) = self.ahead.as_deref_mut().filter(|a| pos < a.len()) {
                let (p, o) = (&mut self.ahead_pos, &mut self.ahead_other);
                max -= out.take_run(ahead, p, o, limit, max, thread);
                if let Some(&t) = ahead.times().get(*p) {
                    return Ok(Some(t));
                }
                continue;
            }
            match &mut self.ahead_err {
                Some((Some(t), _)) if u128::from(*t) >= limit => break,
                Some((_, e)) => return Err(std::mem::take(e)),
                None => {}
            }
            let Some(front) = self.blocks.front_mut() else {
                return Ok(None);
            };
            if front.remaining() == 0 {
                self.release_front();
                continue;
            }
            if self.short_runs {
                let ahead = self.ahead.get_or_insert_with(Default::default);
                ahead.clear();
                (self.ahead_pos, self.ahead_other) = (0, 0);
                let r = front.decode_into(&mut self.model, ahead, u128::MAX, AHEAD_EVENTS);
                if let Err(e) = r {
                    // Where the error is reported: when the bad event is
                    // next, or (a bad time, leftover bytes) at once.
                    let at = if e == codec::TIME_OVERFLOW {
                        None
                    } else {
                        front.peek_time().ok().flatten()
                    };
                    self.ahead_err = Some((at, e));
                }
                continue;
            }
            max -= front.decode_into(&mut self.model, out, limit, max)?;
            if front.remaining() > 0 {
                break;
            }
            self.release_front();
        }
        self.head_time()
    }
}

/// A thread's next event time, and its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) time: u64,
    pub(crate) thread: ThreadId,
    pub(crate) queue: usize,
}

impl Head {
    /// The bound [`crate::codec::BlockDecoder::decode_into`] takes for a run
    /// of `thread` while this head waits: `thread`'s events come first
    /// while earlier, or at the same time if `thread` is the lower.
    #[inline]
    pub(crate) fn limit_for(&self, thread: ThreadId) -> u128 {
        u128::from(self.time) + u128::from(thread < self.thread)
    }
}

/// A head in the heap (16 bytes).
#[derive(Clone, Copy)]
struct Entry {
    time: u64,
    thread: ThreadId,
    queue: u32,
}

impl Entry {
    fn new(h: Head) -> Self {
        Entry {
            time: h.time,
            thread: h.thread,
            queue: h.queue as u32,
        }
    }

    #[inline]
    fn head(self) -> Head {
        Head {
            time: self.time,
            thread: self.thread,
            queue: self.queue as usize,
        }
    }

    /// Whether this comes before `other` in the merge: earlier, or at the
    /// same time and of a lower thread (queues and threads are one to one).
    #[inline(always)]
    fn before(&self, other: &Entry) -> bool {
        (self.time, self.thread) < (other.time, other.thread)
    }
}

/// The heads of every non-empty queue, a binary heap with the earliest head
/// (by time, then thread) at the top. Kept by hand rather than in a
/// [`std::collections::BinaryHeap`] so that the top can be updated in place
/// and the next head read (one of the top's children) without a pop and a
/// push. (A list scanned for the earliest two after each change was tried
/// for up to eight threads: slower at four.)
#[derive(Default)]
pub(crate) struct Heads {
    list: Vec<Entry>,
}

impl Heads {
    /// The earliest head.
    #[inline]
    pub(crate) fn top(&self) -> Option<Head> {
        self.list.first().map(|e| e.head())
    }

    /// The earliest head but the top.
    #[inline]
    pub(crate) fn second(&self) -> Option<Head> {
        let e = match self.list.get(1..3) {
            Some([a, b]) => Some(if b.before(a) { b } else { a }),
            _ => self.list.get(1),
        };
        e.map(|e| e.head())
    }

    pub(crate) fn push(&mut self, h: Head) {
        let x = Entry::new(h);
        let mut i = self.list.len();
        self.list.push(x);
        while i > 0 {
            let parent = (i - 1) / 2;
            if !x.before(&self.list[parent]) {
                break;
            }
            self.list[i] = self.list[parent];
            i = parent;
        }
        self.list[i] = x;
    }

    /// Runs threads from their events decoded ahead while the earliest
    /// thread's run ends among them (the fast path when threads take turns
    /// every few events): moves up to `room` events into `out`, none at or
    /// after `cap` (the watermark, before the end of the file). Returns how
    /// many. When the earliest thread's events decoded ahead run out within
    /// its run, its head is left as it was (still the earliest) for
    /// [`Queue::decode_run`] to go on with the run.
    pub(crate) fn run_ahead(
        &mut self,
        queues: &mut [Queue],
        out: &mut EventBatch,
        cap: u128,
        mut room: usize,
        short_run: usize,
    ) -> usize {
        let mut moved = 0;
        while room > 0 {
            let Some(&top) = self.list.first() else { break };
            if u128::from(top.time) >= cap {
                break;
            }
            let Some(q) = queues.get_mut(top.queue as usize) else {
                break;
            };
            let pos = q.ahead_pos;
            let Some(ahead) = q.ahead.as_deref_mut().filter(|a| pos < a.len()) else {
                break;
            };
            let limit = self.second().map_or(u128::MAX, |h| h.limit_for(top.thread));
            let (p, o) = (&mut q.ahead_pos, &mut q.ahead_other);
            let k = out.take_run(ahead, p, o, limit.min(cap), room, top.thread);
            moved += k;
            let Some(&t) = ahead.times().get(*p) else {
                // `decode_run` goes on with this run.
                q.run_so_far = k;
                break;
            };
            if k < room {
                q.short_runs = k < short_run;
            }
            room -= k;
            self.retime_top(t);
        }
        moved
    }

    /// Gives the top a new time (any: nothing is above the top to compare).
    #[inline]
    pub(crate) fn retime_top(&mut self, time: u64) {
        if let Some(top) = self.list.first_mut() {
            top.time = time;
            if self.list.len() > 1 {
                self.sift_down();
            }
        }
    }

    pub(crate) fn pop(&mut self) {
        if self.list.is_empty() {
            return;
        }
        self.list.swap_remove(0);
        self.sift_down();
    }

    /// Moves the top of the heap down to its place.
    fn sift_down(&mut self) {
        let h = &mut self.list[..];
        let Some(&x) = h.first() else { return };
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            let Some(left) = h.get(l) else { break };
            let c = match h.get(l + 1) {
                Some(right) if right.before(left) => l + 1,
                _ => l,
            };
            if !h[c].before(&x) {
                break;
            }
            h[i] = h[c];
            i = c;
        }
        h[i] = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heads come out in (time, thread) order whatever the pushes, pops and
    /// retimings, and `second` is always the next one.
    #[test]
    fn heads_agree_with_sorting() {
        let mut rng = crate::synthetic::Rng::new(7);
        for round in 0..300 {
            let n = 1 + round % 40;
            let mut heads = Heads::default();
            let mut all: Vec<(u64, ThreadId)> = Vec::new();
            let mut threads = 0;
            let mut push = |heads: &mut Heads, all: &mut Vec<_>, time| {
                threads += 1;
                // Thread ids not in queue order.
                let thread = (threads * 7919) % 10007;
                let h = Head {
                    time,
                    thread,
                    queue: threads as usize,
                };
                heads.push(h);
                all.push((h.time, h.thread));
            };
            for _ in 0..n {
                push(&mut heads, &mut all, rng.range(0, 20));
            }
            for _ in 0..600 {
                all.sort();
                let Some(top) = heads.top() else { break };
                assert_eq!((top.time, top.thread), all[0]);
                let second = heads.second().map(|h| (h.time, h.thread));
                assert_eq!(second, all.get(1).copied());
                match rng.range(0, 9) {
                    0 | 1 => {
                        heads.pop();
                        all.remove(0);
                    }
                    2 => push(&mut heads, &mut all, top.time + rng.range(0, 8)),
                    _ => {
                        let t = top.time + rng.range(0, 6);
                        heads.retime_top(t);
                        all[0].0 = t;
                    }
                }
            }
        }
    }
}
