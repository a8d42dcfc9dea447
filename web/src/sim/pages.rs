//! Which pages of one device are alive, and whether two ever were at once.
//!
//! Two live pages of one paired device is what fleet mode must never
//! produce: two nodes' browsers on copies of one profile, both acting as the
//! tenant's phone. WhatsApp's servers keep one connection per device and end
//! the older one when another logs in (Baileys `DisconnectReason.
//! connectionReplaced`, 440; the page's `CONFLICT`); the simulator counts it
//! instead, so tests can assert it never happened.
//!
//! A page proves it lives by heartbeats, named by an id of its document
//! (sim.js, every second; WhatsApp Web's socket pings too — Baileys
//! `startKeepAliveRequest`, the `w:p` ping iq). An open event stream alone
//! is no proof: the server learns that a stream closed when it next polls
//! that connection, with no bound under load, so a reload's new stream may
//! open while the old one still looks open. So an
//! overlap is two pages *heard at the same time*: a page heard again after
//! a newer page's first heartbeat. A reload never counts (the old document
//! is gone before the new one beats), nor does a reconnecting event stream
//! (same document, same id). Each page counts at most once, as the newer of
//! a pair. The price: two pages alive together for less than a heartbeat
//! may go unseen (the older one must beat while the newer lives), so a
//! test holds an overlap it means to catch for a few seconds. Pure: the
//! caller passes the time.

use std::time::{Duration, Instant};

/// Pages remembered per device (the least recently heard is dropped first).
const MAX_PAGES: usize = 16;
/// A page not heard for this long is forgotten: if it beats again it is
/// new (and overlaps whatever is live then).
const FORGET_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Page {
    id: String,
    first: Instant,
    last: Instant,
    /// Already counted as the newer page of an overlap.
    counted: bool,
}

/// The heartbeats of one device's pages, and the overlaps they showed.
#[derive(Debug, Clone, Default)]
pub(super) struct Pages {
    pages: Vec<Page>,
    overlaps: u64,
}

impl Pages {
    /// Records that `page` was heard at `now`; returns how many new
    /// overlaps that showed (0 or more).
    pub(super) fn beat(&mut self, page: &str, now: Instant) -> u64 {
        self.pages
            .retain(|p| now.saturating_duration_since(p.last) < FORGET_AFTER);
        match self.pages.iter_mut().find(|p| p.id == page) {
            Some(p) => p.last = now,
            None => {
                if self.pages.len() >= MAX_PAGES {
                    if let Some(oldest) = (0..self.pages.len()).min_by_key(|&i| self.pages[i].last)
                    {
                        self.pages.remove(oldest);
                    }
                }
                self.pages.push(Page {
                    id: page.to_owned(),
                    first: now,
                    last: now,
                    counted: false,
                });
            }
        }
        let heard: Vec<(usize, Instant, Instant)> = self
            .pages
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.first, p.last))
            .collect();
        let mut new = 0;
        for (i, newer) in self.pages.iter_mut().enumerate() {
            if newer.counted {
                continue;
            }
            let overlapped = heard
                .iter()
                .any(|&(j, first, last)| j != i && first <= newer.first && last > newer.first);
            if overlapped {
                newer.counted = true;
                new += 1;
            }
        }
        self.overlaps += new;
        new
    }

    /// Overlaps seen so far.
    pub(super) fn overlaps(&self) -> u64 {
        self.overlaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn one_page_beating_for_a_long_time_is_no_overlap() {
        let t = Instant::now();
        let mut pages = Pages::default();
        for i in 0..200 {
            assert_eq!(pages.beat("a", at(t, i * 2_000)), 0);
        }
        assert_eq!(pages.overlaps(), 0);
    }

    #[test]
    fn a_reload_is_no_overlap_even_right_after_the_old_pages_last_beat() {
        let t = Instant::now();
        let mut pages = Pages::default();
        pages.beat("old", at(t, 0));
        pages.beat("old", at(t, 2_000));
        // The old document is gone; the new one beats 1 ms after.
        for i in 0..10 {
            assert_eq!(pages.beat("new", at(t, 2_001 + i * 2_000)), 0);
        }
        // And a third load after that.
        assert_eq!(pages.beat("third", at(t, 30_000)), 0);
        assert_eq!(pages.overlaps(), 0);
    }

    #[test]
    fn two_pages_heard_at_once_are_one_overlap_whichever_beats_first() {
        let t = Instant::now();
        let mut pages = Pages::default();
        pages.beat("a", at(t, 0));
        assert_eq!(pages.beat("b", at(t, 500)), 0, "a not heard since b began");
        assert_eq!(pages.beat("a", at(t, 2_000)), 1, "a heard after b began");
        assert_eq!(pages.beat("b", at(t, 2_500)), 0, "counted once");
        assert_eq!(pages.beat("a", at(t, 4_000)), 0);
        assert_eq!(pages.overlaps(), 1);

        // The other order: the newer page beats again first.
        let mut pages = Pages::default();
        pages.beat("a", at(t, 0));
        pages.beat("b", at(t, 500));
        assert_eq!(
            pages.beat("b", at(t, 2_500)),
            0,
            "a not heard since b began"
        );
        assert_eq!(pages.beat("a", at(t, 3_000)), 1);
    }

    #[test]
    fn each_newer_page_of_an_overlap_counts() {
        let t = Instant::now();
        let mut pages = Pages::default();
        pages.beat("a", at(t, 0));
        pages.beat("b", at(t, 100));
        pages.beat("c", at(t, 200));
        assert_eq!(pages.beat("a", at(t, 2_000)), 2, "b and c each overlap a");
        assert_eq!(pages.overlaps(), 2);
    }

    #[test]
    fn a_page_silent_past_the_window_comes_back_as_a_new_one() {
        let t = Instant::now();
        let mut pages = Pages::default();
        pages.beat("a", at(t, 0));
        pages.beat("b", at(t, 70_000));
        assert_eq!(pages.overlaps(), 0, "a was forgotten before b began");
        // a wakes up (a frozen browser resumed) while b lives: an overlap.
        pages.beat("a", at(t, 71_000));
        assert_eq!(pages.beat("b", at(t, 72_000)), 1);
    }

    #[test]
    fn pages_are_bounded() {
        let t = Instant::now();
        let mut pages = Pages::default();
        for i in 0..100u64 {
            pages.beat(&format!("p{i}"), at(t, i * 10_000));
        }
        assert!(pages.pages.len() <= MAX_PAGES);
    }
}
