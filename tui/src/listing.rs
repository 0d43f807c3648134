//! The sessions on screen: one page at a time from `Admin::list`, the cursors to page back,
//! the filter and sort that decide which sessions and in what order, and what the search scan
//! that filled the page cost. Nothing here knows the screen size, and the last page is listed
//! backward from the end rather than reached page by page, so a million sessions cost the same
//! per frame as a hundred.

use std::cmp::Ordering;
use std::time::Instant;

use sessdb::{Admin, Cursor, ListQuery, SessionInfo, Status};

use crate::clock::{Clock, Cost};

/// Sessions per page asked of the store.
pub(crate) const PAGE_SIZE: usize = 100;
/// Index entries one `list` call may read for a filter the indexes do not serve, so a selective
/// search in a huge store returns to the event loop in bounded time and continues on a tick.
pub(crate) const SCAN_BUDGET: usize = 2_000;

/// Which sessions to show, as typed after `/`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Filter {
    /// Every session.
    #[default]
    None,
    /// Principal, label or handle starting with this text (a budgeted scan).
    Search(String),
    /// Exactly this principal, typed as `p:NAME` (served by the principal index).
    Principal(String),
    /// Exactly this label, typed as `l:LABEL` (a budgeted scan).
    Label(String),
}

impl Filter {
    /// Reads what the operator typed: `p:NAME`, `l:LABEL`, or a prefix to search.
    pub(crate) fn parse(text: &str) -> Filter {
        let text = text.trim();
        let exact = |rest: &str, make: fn(String) -> Filter| match rest.trim() {
            "" => Filter::None,
            name => make(name.to_string()),
        };
        if let Some(rest) = text.strip_prefix("p:") {
            exact(rest, Filter::Principal)
        } else if let Some(rest) = text.strip_prefix("l:") {
            exact(rest, Filter::Label)
        } else if text.is_empty() {
            Filter::None
        } else {
            Filter::Search(text.to_string())
        }
    }

    /// Whether a filter is set.
    pub(crate) fn is_active(&self) -> bool {
        *self != Filter::None
    }

    fn apply(&self, query: &mut ListQuery) {
        match self {
            Filter::None => {}
            Filter::Search(s) => query.search = Some(s.clone()),
            Filter::Principal(p) => query.principal = Some(p.clone()),
            Filter::Label(l) => query.label = Some(l.clone()),
        }
    }
}

/// The order of the table (`s` cycles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sort {
    /// Soonest expiry first: the order of the expiry index.
    #[default]
    Expiry,
    /// Most recent access first.
    LastAccess,
    /// By principal name; sessions without one last.
    Principal,
    /// Newest first.
    Created,
}

impl Sort {
    /// The next order in the cycle.
    pub(crate) fn next(self) -> Sort {
        match self {
            Sort::Expiry => Sort::LastAccess,
            Sort::LastAccess => Sort::Principal,
            Sort::Principal => Sort::Created,
            Sort::Created => Sort::Expiry,
        }
    }

    /// The name shown on screen.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sort::Expiry => "expiry",
            Sort::LastAccess => "last access",
            Sort::Principal => "principal",
            Sort::Created => "created",
        }
    }

    /// Whether the store's index yields this order across pages (to its 10-second resolution,
    /// and to within the 5 minutes an expiry entry may lag its deadline).
    /// The principal index yields a principal's sessions by handle, so under `p:` even expiry
    /// order covers only the loaded page.
    pub(crate) fn served_by_index(self, filter: &Filter) -> bool {
        self == Sort::Expiry && !matches!(filter, Filter::Principal(_))
    }

    fn compare(self, a: &SessionInfo, b: &SessionInfo) -> Ordering {
        let by = match self {
            Sort::Expiry => a.expires_at.cmp(&b.expires_at),
            Sort::LastAccess => b.last_access.cmp(&a.last_access),
            Sort::Principal => match (&a.principal, &b.principal) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            Sort::Created => b.created.cmp(&a.created),
        };
        by.then_with(|| a.handle.cmp(&b.handle))
    }
}

/// What to list: the filter, whether expired sessions show, and the order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct View {
    pub(crate) filter: Filter,
    pub(crate) show_expired: bool,
    pub(crate) sort: Sort,
}

impl View {
    fn query(&self, after: Option<Cursor>, limit: usize, reverse: bool) -> ListQuery {
        let mut query = ListQuery {
            status: if self.show_expired {
                Status::All
            } else {
                Status::Live
            },
            limit,
            after,
            scan_budget: SCAN_BUDGET,
            reverse,
            ..ListQuery::default()
        };
        self.filter.apply(&mut query);
        query
    }
}

/// The end of the listing that paging started from: the first page (`g`, and at the start),
/// or the last (`G`, listed backward from the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Start,
    End,
}

/// Where the loaded page sits in the whole listing, for the table's title and scrollbar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// Rows of the listing above the loaded page; counted from the end when `from_end`.
    pub(crate) above: usize,
    /// Rows in the whole listing, or a lower bound from what has been paged through.
    pub(crate) total: usize,
    /// The page was reached from the end and the size of the listing is unknown: `above`
    /// is a guess, and the title counts from the end instead.
    pub(crate) from_end: bool,
}

/// The loaded page and how it was reached.
#[derive(Debug)]
pub(crate) struct Listing {
    view: View,
    /// Which end the pages in `starts` count from.
    anchor: Anchor,
    /// The cursor each visited page started after, in the anchor's direction (`None` for the
    /// page at the anchor); the last one is the current page. Going back towards the anchor
    /// reloads from the previous cursor.
    starts: Vec<Option<Cursor>>,
    rows: Vec<SessionInfo>,
    /// Where the store stopped, going away from the anchor; `None` when nothing follows.
    next: Option<Cursor>,
    /// The scan budget ran out before the page was full: [`Listing::continue_scan`] goes on.
    incomplete: bool,
    clock: Clock,
    /// When the read of the loaded page began, before its first call.
    began: Instant,
    /// What the search scan that filled the loaded page over several calls took, once it has
    /// ended or failed partway; `None` while it runs, and for a page read in one call.
    scan: Option<Cost>,
}

impl Listing {
    /// An empty listing of `view`, timing its reads on `clock`; nothing is read until
    /// [`Listing::reload`].
    pub(crate) fn new(view: View, clock: Clock) -> Listing {
        Listing {
            view,
            anchor: Anchor::Start,
            starts: vec![None],
            rows: Vec::new(),
            next: None,
            incomplete: false,
            began: clock.now(),
            scan: None,
            clock,
        }
    }

    pub(crate) fn view(&self) -> &View {
        &self.view
    }

    pub(crate) fn rows(&self) -> &[SessionInfo] {
        &self.rows
    }

    /// Pages between the loaded one and the anchor: 0 for the first page, or after `G` for
    /// the last.
    pub(crate) fn page_index(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether a page away from the anchor may follow this one (it may turn out empty).
    fn has_further(&self) -> bool {
        self.next.is_some() && !self.incomplete
    }

    /// Whether a page may follow this one below (it may turn out empty).
    pub(crate) fn has_next(&self) -> bool {
        match self.anchor {
            Anchor::Start => self.has_further(),
            Anchor::End => self.page_index() > 0,
        }
    }

    /// Whether a page may precede this one above.
    pub(crate) fn has_prev(&self) -> bool {
        match self.anchor {
            Anchor::Start => self.page_index() > 0,
            Anchor::End => self.has_further(),
        }
    }

    /// Whether the loaded page is the first of the listing (as far as is known).
    pub(crate) fn at_first(&self) -> bool {
        !(self.has_prev() || (self.anchor == Anchor::End && self.incomplete))
    }

    /// Whether the loaded page is the last of the listing (as far as is known).
    pub(crate) fn at_last(&self) -> bool {
        !(self.has_next() || (self.anchor == Anchor::Start && self.incomplete))
    }

    /// Where the loaded page sits, given the size of the whole listing if it is known. The
    /// pages between it and the anchor were full: only the page at the far end is not.
    pub(crate) fn place(&self, total: Option<usize>) -> Place {
        let paged = self.page_index() * PAGE_SIZE;
        let len = self.rows.len();
        let guess = |more: bool| if more { PAGE_SIZE } else { 0 };
        match (self.anchor, total) {
            (Anchor::Start, total) => {
                let seen = paged + len;
                Place {
                    above: paged,
                    total: total.unwrap_or(seen + guess(self.has_next())).max(seen),
                    from_end: false,
                }
            }
            (Anchor::End, Some(total)) => Place {
                above: total.saturating_sub(paged + len),
                total: total.max(paged + len),
                from_end: false,
            },
            (Anchor::End, None) => {
                let above = guess(self.has_prev());
                Place {
                    above,
                    total: above + len + paged,
                    from_end: true,
                }
            }
        }
    }

    /// Whether the page still has index entries to scan before it is full.
    pub(crate) fn is_incomplete(&self) -> bool {
        self.incomplete
    }

    /// What the search scan that filled the loaded page took, once it has ended or failed;
    /// `None` for a page read in one call, and while the scan runs.
    pub(crate) fn scan_cost(&self) -> Option<Cost> {
        self.scan
    }

    /// Changes the order of the loaded rows; the store is not asked again, since only expiry
    /// order comes from an index.
    pub(crate) fn set_sort(&mut self, sort: Sort) {
        self.view.sort = sort;
        self.sort_rows();
    }

    /// The query for a page from `after`, in the anchor's direction.
    fn query(&self, after: Option<Cursor>, limit: usize) -> ListQuery {
        self.view.query(after, limit, self.anchor == Anchor::End)
    }

    /// Reads the current page again from where it started.
    ///
    /// # Errors
    /// The store's error; the loaded rows stay as they were.
    pub(crate) fn reload(&mut self, admin: &dyn Admin) -> sessdb::Result<()> {
        let start = self.starts.last().cloned().flatten();
        let began = self.clock.now();
        let page = admin.list(&self.query(start, PAGE_SIZE))?;
        self.read(began);
        self.rows = page.sessions;
        self.set_next(page.next);
        Ok(())
    }

    /// Goes to the first page.
    ///
    /// # Errors
    /// The store's error; the listing stays where it was.
    pub(crate) fn first_page(&mut self, admin: &dyn Admin) -> sessdb::Result<()> {
        self.anchor_at(admin, Anchor::Start)
    }

    /// Goes to the last page: one call listing backward from the end, however far it is.
    ///
    /// # Errors
    /// The store's error; the listing stays where it was.
    pub(crate) fn last_page(&mut self, admin: &dyn Admin) -> sessdb::Result<()> {
        self.anchor_at(admin, Anchor::End)
    }

    fn anchor_at(&mut self, admin: &dyn Admin, anchor: Anchor) -> sessdb::Result<()> {
        let began = self.clock.now();
        let page = admin.list(&self.view.query(None, PAGE_SIZE, anchor == Anchor::End))?;
        self.read(began);
        self.anchor = anchor;
        self.starts.truncate(1);
        self.starts[0] = None;
        self.rows = page.sessions;
        self.set_next(page.next);
        Ok(())
    }

    /// Moves to the page below; `false`, with nothing changed, when there is none.
    ///
    /// # Errors
    /// The store's error; the listing stays where it was.
    pub(crate) fn next_page(&mut self, admin: &dyn Admin) -> sessdb::Result<bool> {
        match self.anchor {
            Anchor::Start => self.further(admin),
            Anchor::End => self.back(admin),
        }
    }

    /// Moves to the page above; `false`, with nothing changed, when there is none.
    ///
    /// # Errors
    /// The store's error; the listing stays where it was.
    pub(crate) fn prev_page(&mut self, admin: &dyn Admin) -> sessdb::Result<bool> {
        match self.anchor {
            Anchor::Start => self.back(admin),
            Anchor::End => self.further(admin),
        }
    }

    /// Moves one page away from the anchor; `false`, with nothing changed, when there is none.
    fn further(&mut self, admin: &dyn Admin) -> sessdb::Result<bool> {
        if !self.has_further() {
            return Ok(false);
        }
        let cursor = self.next.clone();
        let began = self.clock.now();
        let page = admin.list(&self.query(cursor.clone(), PAGE_SIZE))?;
        if page.sessions.is_empty() && page.next.is_none() {
            // The last page was exactly full: now we know nothing follows.
            self.next = None;
            return Ok(false);
        }
        self.read(began);
        self.starts.push(cursor);
        self.rows = page.sessions;
        self.set_next(page.next);
        Ok(true)
    }

    /// Moves one page back towards the anchor; `false` on the page at the anchor.
    ///
    /// # Errors
    /// The store's error; the listing stays where it was.
    pub(crate) fn back(&mut self, admin: &dyn Admin) -> sessdb::Result<bool> {
        if self.starts.len() < 2 {
            return Ok(false);
        }
        let start = self.starts[self.starts.len() - 2].clone();
        let began = self.clock.now();
        let page = admin.list(&self.query(start, PAGE_SIZE))?;
        self.read(began);
        self.starts.pop();
        self.rows = page.sessions;
        self.set_next(page.next);
        Ok(true)
    }

    /// Scans on where the budget stopped, appending what matches. A page that ends up empty
    /// (the filter matched nothing past the previous page) is dropped for the previous one.
    ///
    /// # Errors
    /// The store's error; what was loaded stays, and the scan has ended there: its cost is
    /// what it took until the call that failed, not that call's own time.
    pub(crate) fn continue_scan(&mut self, admin: &dyn Admin) -> sessdb::Result<()> {
        if !self.incomplete {
            return Ok(());
        }
        let limit = PAGE_SIZE.saturating_sub(self.rows.len()).max(1);
        let called = self.clock.now();
        let page = match admin.list(&self.query(self.next.clone(), limit)) {
            Ok(page) => page,
            Err(e) => {
                // Only a read from the page's start goes on from here, so an auto-refresh
                // waits on what this scan cost, as on one that ended, rather than have a
                // failing store scan from the start over and over. The failed call is left
                // out: through a hung admin socket it is the client's timeout (up to 20 s),
                // time the store spent on nothing, and 10 times it would keep the table stale
                // for minutes after the application came back.
                self.scan = Some(Cost {
                    took: called.saturating_duration_since(self.began),
                    ended: self.clock.now(),
                });
                return Err(e);
            }
        };
        self.rows.extend(page.sessions);
        self.set_next(page.next);
        if !self.incomplete {
            let ended = self.clock.now();
            self.scan = Some(Cost {
                took: ended.saturating_duration_since(self.began),
                ended,
            });
        }
        if self.rows.is_empty() && !self.incomplete && self.back(admin)? {
            self.next = None;
        }
        Ok(())
    }

    /// A page read from its start, which began at `began`, replaces the loaded one.
    fn read(&mut self, began: Instant) {
        self.began = began;
        self.scan = None;
    }

    fn set_next(&mut self, next: Option<Cursor>) {
        self.incomplete = self.rows.len() < PAGE_SIZE && next.is_some();
        self.next = next;
        self.sort_rows();
    }

    /// Sorts the loaded page. Even in expiry order: the expiry index orders by 10-second
    /// buckets, then by handle, and an entry may lag its deadline by up to 5 minutes, while the
    /// table shows exact times; and a page listed backward comes last session first.
    fn sort_rows(&mut self) {
        let sort = self.view.sort;
        self.rows.sort_by(|a, b| sort.compare(a, b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_what_the_operator_types() {
        assert_eq!(Filter::parse(""), Filter::None);
        assert_eq!(Filter::parse("  "), Filter::None);
        assert_eq!(Filter::parse("ali"), Filter::Search("ali".into()));
        assert_eq!(Filter::parse("p:alice"), Filter::Principal("alice".into()));
        assert_eq!(Filter::parse("p: "), Filter::None);
        assert_eq!(Filter::parse("l:web"), Filter::Label("web".into()));
    }

    #[test]
    fn filters_become_list_queries() {
        let view = |filter| View {
            filter,
            ..View::default()
        };
        let q = view(Filter::Principal("alice".into())).query(None, 10, false);
        assert_eq!(q.principal.as_deref(), Some("alice"));
        assert_eq!((q.limit, q.scan_budget), (10, SCAN_BUDGET));
        assert_eq!(q.status, Status::Live);
        assert!(!q.reverse);
        let q = view(Filter::Search("3f".into())).query(None, 10, true);
        assert!(q.reverse, "the last page is listed backward");
        assert_eq!((q.search.as_deref(), q.principal), (Some("3f"), None));
        let q = view(Filter::Label("web".into())).query(None, 10, false);
        assert_eq!(q.label.as_deref(), Some("web"));
        let all = View {
            show_expired: true,
            ..View::default()
        };
        assert_eq!(all.query(None, 1, false).status, Status::All);
    }

    #[test]
    fn sort_cycles_through_four_orders() {
        let mut sort = Sort::Expiry;
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(sort.name());
            sort = sort.next();
        }
        assert_eq!(seen, ["expiry", "last access", "principal", "created"]);
        assert_eq!(sort, Sort::Expiry);
        assert!(Sort::Expiry.served_by_index(&Filter::None));
        assert!(!Sort::Expiry.served_by_index(&Filter::Principal("a".into())));
        assert!(!Sort::Created.served_by_index(&Filter::None));
    }
}
