//! sessdb-tui: the terminal UI of `sessctl tui` (being built; see issue 4).
