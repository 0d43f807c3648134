//! A database a command makes for itself (`import` into a new folder), and how it is
//! taken away again when the command fails: only what this run made, never what another
//! process made or put there meanwhile.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// The folders a run made for a new database (none when it was given an empty folder).
#[derive(Debug)]
pub(crate) struct Fresh {
    /// The folders this run created, outermost first; the database folder last.
    folders: Vec<PathBuf>,
}

impl Fresh {
    /// Makes the database folder `path` (0700), and any missing folder above it, or takes it
    /// as it is when it is an empty folder. `None` when it holds something (a database, say)
    /// or cannot be made: then nothing of it is this run's to remove.
    pub(crate) fn folders_for(path: &Path) -> Option<Fresh> {
        if fs::symlink_metadata(path).is_ok() {
            return (fs::metadata(path).is_ok_and(|m| m.is_dir()) && is_empty_dir(path)).then(
                || Fresh {
                    folders: Vec::new(),
                },
            );
        }
        let mut missing = vec![path.to_path_buf()];
        let mut above = path.parent();
        while let Some(p) = above.filter(|p| !p.as_os_str().is_empty()) {
            if fs::symlink_metadata(p).is_ok() {
                break;
            }
            missing.push(p.to_path_buf());
            above = p.parent();
        }
        missing.reverse();
        let mut folders: Vec<PathBuf> = Vec::new();
        for folder in missing {
            // One that appeared meanwhile is someone else's, and so is what goes in it; the
            // ones made before it are removed again, if still empty.
            if DirBuilder::new().mode(0o700).create(&folder).is_err() {
                for made in folders.iter().rev() {
                    if fs::remove_dir(made).is_err() {
                        break;
                    }
                }
                return None;
            }
            folders.push(folder);
        }
        Some(Fresh { folders })
    }

    /// Removes the folders this run created, innermost first, each only if empty (after a
    /// failure, once the database in them is gone).
    pub(crate) fn remove_folders(&self) {
        for folder in self.folders.iter().rev() {
            // Not empty: someone else's files are in it now, or removing the database failed.
            if fs::remove_dir(folder).is_err() {
                break;
            }
        }
    }
}

/// Whether the database holds no session at all, expired ones included (a failed read says
/// it may hold some): right after this run's open, that it is the new database this run made,
/// not one another process made and filled meanwhile.
pub(crate) fn holds_no_session(admin: &dyn sessdb::Admin) -> bool {
    let query = sessdb::ListQuery {
        status: sessdb::Status::All,
        limit: 1,
        ..sessdb::ListQuery::default()
    };
    admin
        .list(&query)
        .is_ok_and(|page| page.sessions.is_empty() && page.next.is_none())
}

/// Removes the database's own entries in the folder `dir` (sled's files, its blobs, an admin
/// socket: [`sessdb::is_database_entry`], decided for each entry as the listing meets it), and
/// nothing else: a file someone put there meanwhile stays. Call it while the database is still
/// open, so that it is not already another opener's.
pub(crate) fn remove_database(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if !sessdb::is_database_entry(&entry.file_name(), kind) {
            continue;
        }
        if kind.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Whether `path` is a folder with nothing in it (one that cannot be read is not).
pub(crate) fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_database_leaves_what_else_is_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let fresh = Fresh::folders_for(&path).expect("made");
        let store = sessdb::Store::open(&path).unwrap();
        assert!(holds_no_session(&store));
        store.create().save().unwrap();
        assert!(!holds_no_session(&store));
        fs::write(path.join("notes.txt"), "mine").unwrap();
        fs::create_dir(path.join("old")).unwrap();
        remove_database(&path).unwrap();
        drop(store);
        fresh.remove_folders();
        let mut left: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "old"]);
        // A folder that is there already is not this run's to remove, nor one that holds
        // something.
        assert!(Fresh::folders_for(&path).is_none());
        fs::remove_file(path.join("notes.txt")).unwrap();
        fs::remove_dir(path.join("old")).unwrap();
        let given = Fresh::folders_for(&path).expect("an empty folder");
        given.remove_folders();
        assert!(path.is_dir());
    }
}
