//! Stream-id bookkeeping of one cluster connection, kept apart from the socket code so its rules
//! can be tested alone.
//!
//! The rule that matters: an id is free again only once the cluster has answered it (or the
//! connection is gone). A requester that stops waiting (timeout) leaves its id *orphaned*:
//! still reserved, because the cluster may still answer it, and an answer arriving on an id that
//! was handed to a new request would be delivered to the wrong requester. The late answer, when
//! it comes, frees the id and is dropped. An orphan whose answer never comes would hold its id
//! forever, so the connection watches how many orphans it has and how old the oldest is; past
//! either bound the connection is closed (see `ClusterConn`), which frees every id at once.
//!
//! Each reservation carries a generation number, so a requester that times out just as its
//! answer arrives (and its id is reused at once) cannot orphan the new owner's reservation.
//!
//! The table grows with use: an id gets a slot the first time it is needed (the connection's
//! highest concurrency so far), not when the connection opens. An idle connection of a
//! 2048-id pool would otherwise hold 2048 slots and a 2048-entry free list (about 52 KiB,
//! twice per client connection: origin and target) for ids it never uses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

enum Slot<W> {
    Free,
    Waiting { generation: u64, waiter: W },
    Orphaned { generation: u64 },
}

/// One reservation: the id sent to the cluster and the generation that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub id: i16,
    generation: u64,
}

/// What an answer arriving on a stream id means.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<W> {
    /// Someone waits for it; the id is free again.
    Waiter(W),
    /// Its requester gave up (timeout); the id is free again and the answer must be dropped.
    Late,
    /// No reservation holds this id (a cluster bug or a stray frame): nothing changes.
    Unknown,
}

/// The ids of one connection: which are free, which wait for an answer, which are orphaned.
pub struct StreamIds<W> {
    /// One slot per id handed out so far (ids `0..slots.len()`); never longer than `capacity`.
    slots: Vec<Slot<W>>,
    /// Ids below `slots.len()` that are free again, the most recently freed last.
    free: Vec<i16>,
    capacity: usize,
    /// Orphans in the order they were orphaned, for the age check; entries whose slot was freed
    /// (or reused) since are skipped lazily.
    orphans: VecDeque<(Ticket, Instant)>,
    orphaned: usize,
    next_generation: u64,
}

impl<W> StreamIds<W> {
    /// `capacity` ids, 0..capacity (at most 32768: the protocol's ids are positive `i16`s).
    pub fn new(capacity: usize) -> StreamIds<W> {
        StreamIds {
            slots: Vec::new(),
            free: Vec::new(),
            capacity: capacity.min(i16::MAX as usize + 1),
            orphans: VecDeque::new(),
            orphaned: 0,
            next_generation: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ids not free: waiting for an answer or orphaned.
    pub fn reserved(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Ids whose requester gave up and whose answer has not come yet.
    pub fn orphaned(&self) -> usize {
        self.orphaned
    }

    /// Reserves a free id for `waiter`; None when every id is reserved. The most recently freed
    /// id is reused first; a new id (the next one up from 0) only when none is free.
    pub fn reserve(&mut self, waiter: W) -> Option<Ticket> {
        let generation = self.next_generation;
        let slot = Slot::Waiting { generation, waiter };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None if self.slots.len() < self.capacity => {
                self.slots.push(slot);
                (self.slots.len() - 1) as i16
            }
            None => return None,
        };
        self.next_generation += 1;
        Some(Ticket { id, generation })
    }

    /// An answer arrived on `id`.
    pub fn answer(&mut self, id: i16) -> Answer<W> {
        let Some(slot) = usize::try_from(id).ok().and_then(|i| self.slots.get_mut(i)) else {
            return Answer::Unknown;
        };
        match std::mem::replace(slot, Slot::Free) {
            Slot::Free => Answer::Unknown,
            Slot::Waiting { waiter, .. } => {
                self.free.push(id);
                Answer::Waiter(waiter)
            }
            Slot::Orphaned { .. } => {
                self.orphaned -= 1;
                self.free.push(id);
                Answer::Late
            }
        }
    }

    /// The requester of `ticket` stopped waiting at `now`. True when the id stays reserved as an
    /// orphan; false when its answer already came (the id was freed, maybe reused: untouched).
    pub fn orphan(&mut self, ticket: Ticket, now: Instant) -> bool {
        let slot = &mut self.slots[ticket.id as usize];
        match slot {
            Slot::Waiting { generation, .. } if *generation == ticket.generation => {
                *slot = Slot::Orphaned {
                    generation: ticket.generation,
                };
                self.orphaned += 1;
                self.orphans.push_back((ticket, now));
                true
            }
            _ => false,
        }
    }

    /// How long the oldest orphan still unanswered has waited.
    pub fn oldest_orphan_age(&mut self, now: Instant) -> Option<Duration> {
        while let Some((ticket, since)) = self.orphans.front() {
            match &self.slots[ticket.id as usize] {
                Slot::Orphaned { generation } if *generation == ticket.generation => {
                    return Some(now.saturating_duration_since(*since));
                }
                _ => {
                    self.orphans.pop_front();
                }
            }
        }
        None
    }

    /// The connection is gone: every id is free again and every waiter is dropped (which wakes
    /// it with "closed"). Returns how many ids were reserved.
    pub fn release_all(&mut self) -> usize {
        let reserved = self.reserved();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !matches!(slot, Slot::Free) {
                *slot = Slot::Free;
                self.free.push(i as i16);
            }
        }
        self.orphans.clear();
        self.orphaned = 0;
        reserved
    }
}

/// When a connection has too many orphans to stay useful. Closing it is the only safe way to
/// get their ids back (their answers may still come), so it is done once a quarter of the ids
/// are orphaned (the Java driver's default ratio: 256 orphans of 1024 requests), or an orphan
/// has waited longer than `max_age` (Cassandra answers every request within its own server-side
/// timeouts, at most a minute by default; an answer older than that is not coming).
pub struct OrphanLimits {
    pub max_orphans: usize,
    pub max_age: Duration,
}

impl OrphanLimits {
    pub fn for_capacity(capacity: usize) -> OrphanLimits {
        OrphanLimits {
            max_orphans: (capacity / 4).max(1),
            max_age: Duration::from_secs(120),
        }
    }

    /// True when the connection should be closed.
    pub fn exceeded<W>(&self, ids: &mut StreamIds<W>, now: Instant) -> bool {
        ids.orphaned() >= self.max_orphans
            || ids
                .oldest_orphan_age(now)
                .is_some_and(|age| age > self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reserved_until_answered_and_then_reused() {
        let mut ids = StreamIds::new(2);
        let a = ids.reserve("a").unwrap();
        let b = ids.reserve("b").unwrap();
        assert_eq!((a.id, b.id), (0, 1));
        assert_eq!(ids.reserved(), 2);
        assert!(ids.reserve("c").is_none(), "every id is reserved");
        assert_eq!(ids.answer(1), Answer::Waiter("b"));
        assert_eq!(ids.reserved(), 1);
        let c = ids.reserve("c").unwrap();
        assert_eq!(c.id, 1, "the answered id is free again");
        assert_eq!(ids.answer(0), Answer::Waiter("a"));
        assert_eq!(ids.answer(1), Answer::Waiter("c"));
        assert_eq!(ids.reserved(), 0);
    }

    #[test]
    fn slots_are_made_only_as_concurrency_needs_them() {
        let mut ids = StreamIds::new(2048);
        assert_eq!(
            (ids.slots.len(), ids.free.capacity()),
            (0, 0),
            "idle: no table"
        );
        // One request at a time, however many: one slot.
        for _ in 0..100 {
            let t = ids.reserve(()).unwrap();
            assert_eq!(t.id, 0);
            assert_eq!(ids.answer(t.id), Answer::Waiter(()));
        }
        assert_eq!(ids.slots.len(), 1);
        // Three at once: three slots, and the capacity still bounds the table.
        let held: Vec<_> = (0..3).map(|_| ids.reserve(()).unwrap()).collect();
        assert_eq!(held.iter().map(|t| t.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!((ids.slots.len(), ids.capacity()), (3, 2048));
        let mut small = StreamIds::new(3);
        for _ in 0..3 {
            small.reserve(()).unwrap();
        }
        assert!(small.reserve(()).is_none());
        assert_eq!(small.slots.len(), 3);
    }

    #[test]
    fn a_timed_out_id_stays_reserved_until_its_late_answer() {
        let mut ids = StreamIds::new(1);
        let now = Instant::now();
        let t = ids.reserve("first").unwrap();
        assert!(ids.orphan(t, now));
        assert_eq!((ids.reserved(), ids.orphaned()), (1, 1));
        // The id may not be handed out while its answer can still arrive.
        assert!(ids.reserve("second").is_none());
        // The late answer frees it and reaches nobody.
        assert_eq!(ids.answer(t.id), Answer::Late);
        assert_eq!((ids.reserved(), ids.orphaned()), (0, 0));
        let t2 = ids.reserve("second").unwrap();
        assert_eq!(t2.id, t.id);
        assert_eq!(ids.answer(t2.id), Answer::Waiter("second"));
    }

    #[test]
    fn a_stale_timeout_cannot_orphan_the_ids_next_owner() {
        let mut ids = StreamIds::new(1);
        let old = ids.reserve("old").unwrap();
        // The answer arrives just before the old requester notices its timeout…
        assert_eq!(ids.answer(old.id), Answer::Waiter("old"));
        // …and the id goes to a new request at once.
        let new = ids.reserve("new").unwrap();
        assert_eq!(new.id, old.id);
        assert!(
            !ids.orphan(old, Instant::now()),
            "not the old owner's any more"
        );
        assert_eq!(ids.orphaned(), 0);
        assert_eq!(ids.answer(new.id), Answer::Waiter("new"));
    }

    #[test]
    fn unknown_ids_change_nothing() {
        let mut ids = StreamIds::<()>::new(4);
        assert_eq!(ids.answer(2), Answer::Unknown);
        assert_eq!(ids.answer(-1), Answer::Unknown);
        assert_eq!(ids.answer(99), Answer::Unknown);
        assert_eq!(ids.reserved(), 0);
        assert_eq!(ids.reserve(()).unwrap().id, 0);
    }

    #[test]
    fn release_all_frees_waiting_and_orphaned_ids() {
        let mut ids = StreamIds::new(3);
        let a = ids.reserve(1).unwrap();
        ids.reserve(2).unwrap();
        ids.orphan(a, Instant::now());
        assert_eq!(ids.release_all(), 2);
        assert_eq!((ids.reserved(), ids.orphaned()), (0, 0));
        assert_eq!(ids.oldest_orphan_age(Instant::now()), None);
        assert_eq!(
            ids.answer(a.id),
            Answer::Unknown,
            "a late answer after release"
        );
        for _ in 0..3 {
            assert!(ids.reserve(0).is_some());
        }
    }

    #[test]
    fn oldest_orphan_age_skips_answered_orphans() {
        let mut ids = StreamIds::new(4);
        let t0 = Instant::now();
        let a = ids.reserve(()).unwrap();
        let b = ids.reserve(()).unwrap();
        ids.orphan(a, t0);
        ids.orphan(b, t0 + Duration::from_secs(5));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(ids.oldest_orphan_age(later), Some(Duration::from_secs(10)));
        assert_eq!(ids.answer(a.id), Answer::Late);
        assert_eq!(ids.oldest_orphan_age(later), Some(Duration::from_secs(5)));
        // a's id reused and orphaned again: its new orphan time counts, not the first one.
        let a2 = ids.reserve(()).unwrap();
        assert_eq!(a2.id, a.id);
        ids.orphan(a2, t0 + Duration::from_secs(9));
        assert_eq!(ids.answer(b.id), Answer::Late);
        assert_eq!(ids.oldest_orphan_age(later), Some(Duration::from_secs(1)));
    }

    #[test]
    fn orphan_limits_close_on_count_or_age() {
        let limits = OrphanLimits::for_capacity(8);
        assert_eq!(limits.max_orphans, 2);
        let mut ids = StreamIds::new(8);
        let now = Instant::now();
        let a = ids.reserve(()).unwrap();
        ids.orphan(a, now);
        assert!(!limits.exceeded(&mut ids, now));
        assert!(limits.exceeded(&mut ids, now + limits.max_age + Duration::from_secs(1)));
        let b = ids.reserve(()).unwrap();
        ids.orphan(b, now);
        assert!(limits.exceeded(&mut ids, now));
        // A connection with a single id closes on its first orphan: it could serve nothing else.
        assert_eq!(OrphanLimits::for_capacity(1).max_orphans, 1);
    }
}
