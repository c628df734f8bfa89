//! A SQLite VFS over the platform's own that writes each commit's WAL frames in one `pwrite`.
//!
//! SQLite writes a WAL frame as two writes, its 24-byte header and then its page, so a commit of
//! five pages is ten system calls, each looking up and dirtying page-cache pages: on single-event
//! requests, a fifth of `serve`'s time (docs/performance.md). Here a WAL file's writes that
//! follow each other are gathered and written at once:
//! - when the commit frame (a frame header whose "database size" field is set) has been
//!   written, inside that `xWrite`, so a failure (a full disk) fails the commit as before;
//! - before anything that could see the file: a read, its size, a sync, a truncation, a file
//!   control, closing it; and before the connection publishes new frames to readers
//!   (`xShmBarrier`, between the wal-index header's two copies) or releases a lock.
//!
//! Nothing else changes: every other call goes to the platform's VFS, the bytes and their order
//! in the file are the same, and a commit has reached the kernel before SQLite reports it.
//! Should the write at `xShmBarrier` fail (it cannot return an error, and what it holds is
//! already being published), the process aborts rather than let readers see frames that are not
//! in the file. Something is still gathered there only when a commit rewrote the checksums of
//! frames it had written (a page written twice in one transaction) or SQLite writes a commit in
//! a shape this module does not recognise; the unit tests hold the shape of this SQLite.

use rusqlite::ffi;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::{Mutex, OnceLock};

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(super) const NAME: &CStr = c"bucket-relay-wal";

/// A frame header's size (SQLite's `WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: usize = 24;

/// Past this many bytes gathered (a large transaction), they are written without waiting.
const MOST_GATHERED: usize = 1 << 20;

/// The most one platform write is handed: the unix VFS writes at most 128 KiB − 1 bytes a call
/// (it masks the length with `0x1ffff`, and a masked length of 0 reads as a full disk).
const MOST_PER_WRITE: usize = 64 << 10;

/// Registers the VFS once (not as the default) and answers its name, or the error SQLite gave.
pub(super) fn register() -> Result<&'static CStr, c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    let result = REGISTERED.get_or_init(|| {
        // SAFETY: the platform VFS lives as long as the process; the new VFS is leaked, so it
        // does too, as SQLite requires of a registered VFS.
        unsafe {
            let real = ffi::sqlite3_vfs_find(ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs: ffi::sqlite3_vfs = ptr::read(real);
            vfs.szOsFile = c_int::try_from(Shim::real_offset())
                .unwrap_or(c_int::MAX)
                .saturating_add((*real).szOsFile);
            vfs.zName = NAME.as_ptr();
            vfs.pAppData = real.cast();
            vfs.pNext = ptr::null_mut();
            vfs.xOpen = Some(open);
            vfs.xDelete = Some(delete);
            vfs.xAccess = Some(access);
            vfs.xFullPathname = Some(full_pathname);
            let vfs = Box::leak(Box::new(vfs));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    });
    result.map(|()| NAME)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Database,
    Wal,
    Other,
}

/// The file SQLite holds: this header, then the platform's file (at [`Shim::real_offset`]).
#[repr(C)]
struct Shim {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    kind: Kind,
    /// A database: the WAL its connection has open. A WAL: its database's file, when open.
    partner: *mut Shim,
    /// A database: its name as SQLite passed it (the key its WAL finds it by).
    name: usize,
    /// A WAL: the writes gathered, to be written at `at`.
    gathered: Vec<u8>,
    at: i64,
    /// A WAL: the last write was a commit frame's header, so the next completes the commit.
    commit_header: bool,
}

impl Shim {
    const fn real_offset() -> usize {
        std::mem::size_of::<Shim>().next_multiple_of(16)
    }
}

/// Database files by the name pointer SQLite opened them with: a WAL's name leads back to the
/// same pointer (`sqlite3_filename_database`), which pairs a connection's WAL with its database.
fn databases() -> &'static Mutex<HashMap<usize, usize>> {
    static DATABASES: OnceLock<Mutex<HashMap<usize, usize>>> = OnceLock::new();
    DATABASES.get_or_init(Default::default)
}

fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: only this module's VFS reaches these functions, and its app data is the platform's.
    unsafe { (*vfs).pAppData.cast() }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs(vfs);
    let shim = file.cast::<Shim>();
    let real = file
        .cast::<u8>()
        .add(Shim::real_offset())
        .cast::<ffi::sqlite3_file>();
    let kind = if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
        Kind::Database
    } else if flags & ffi::SQLITE_OPEN_WAL != 0 {
        Kind::Wal
    } else {
        Kind::Other
    };
    ptr::write(
        shim,
        Shim {
            base: ffi::sqlite3_file {
                pMethods: ptr::null(),
            },
            real,
            kind,
            partner: ptr::null_mut(),
            name: name as usize,
            gathered: Vec::new(),
            at: 0,
            commit_header: false,
        },
    );
    let Some(real_open) = (*real_vfs).xOpen else {
        ptr::drop_in_place(shim);
        return ffi::SQLITE_ERROR;
    };
    let rc = real_open(real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        ptr::drop_in_place(shim);
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_ERROR
        } else {
            rc
        };
    }
    let mut databases = databases().lock().unwrap_or_else(|e| e.into_inner());
    match kind {
        Kind::Database if !name.is_null() => {
            databases.insert(name as usize, shim as usize);
        }
        Kind::Wal if !name.is_null() => {
            let database = ffi::sqlite3_filename_database(name) as usize;
            if let Some(&database) = databases.get(&database) {
                let database = database as *mut Shim;
                (*database).partner = shim;
                (*shim).partner = database;
            }
        }
        _ => {}
    }
    (*shim).base.pMethods = &METHODS;
    ffi::SQLITE_OK
}

/// Calls the platform VFS's own method: the file-name calls this VFS does not change.
macro_rules! forward_vfs {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> c_int {
            let real = real_vfs(vfs);
            match (*real).$method {
                Some(f) => f(real $(, $arg)*),
                None => ffi::SQLITE_ERROR,
            }
        }
    };
}

forward_vfs!(delete, xDelete, (name: *const c_char, sync: c_int));
forward_vfs!(access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int));
forward_vfs!(full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char));

fn shim<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Shim {
    // SAFETY: SQLite hands these methods only files this VFS opened, which start with a `Shim`,
    // and never one file to two calls at once.
    unsafe { &mut *file.cast::<Shim>() }
}

/// The platform file's methods (set, as its open succeeded).
fn methods(shim: &Shim) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the platform's methods table is static and outlives the file.
    unsafe { &*(*shim.real).pMethods }
}

/// Writes what a WAL file has gathered, if anything.
fn write_gathered(wal: &mut Shim) -> c_int {
    if wal.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = methods(wal).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut at = wal.at;
    #[cfg(test)]
    tests::WAL_WRITES.set(tests::WAL_WRITES.get() + 1);
    for chunk in wal.gathered.chunks(MOST_PER_WRITE) {
        // SAFETY: the chunk is live for the call (at most MOST_PER_WRITE bytes, so its length
        // fits); the platform file is open.
        rc = unsafe { write(wal.real, chunk.as_ptr().cast(), chunk.len() as c_int, at) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    wal.gathered.clear();
    wal.commit_header = false;
    rc
}

/// Writes what the database's WAL has gathered, before the connection shows readers anything.
fn write_partner_wal(database: &mut Shim) -> c_int {
    if database.kind != Kind::Database || database.partner.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: the WAL clears this pointer when it closes; both belong to one connection, which
    // SQLite uses from one thread at a time.
    write_gathered(unsafe { &mut *database.partner })
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let shim = shim(file);
    let written = if shim.kind == Kind::Wal {
        write_gathered(shim)
    } else {
        ffi::SQLITE_OK
    };
    {
        let mut databases = databases().lock().unwrap_or_else(|e| e.into_inner());
        match shim.kind {
            Kind::Database => {
                databases.remove(&shim.name);
                if !shim.partner.is_null() {
                    (*shim.partner).partner = ptr::null_mut();
                }
            }
            Kind::Wal if !shim.partner.is_null() => {
                (*shim.partner).partner = ptr::null_mut();
            }
            _ => {}
        }
    }
    let rc = match methods(shim).xClose {
        Some(f) => f(shim.real),
        None => ffi::SQLITE_OK,
    };
    ptr::drop_in_place(file.cast::<Shim>());
    if written != ffi::SQLITE_OK {
        written
    } else {
        rc
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    n: c_int,
    at: i64,
) -> c_int {
    let shim = shim(file);
    let rc = write_gathered(shim);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    match methods(shim).xRead {
        Some(f) => f(shim.real, buf, n, at),
        None => ffi::SQLITE_IOERR_READ,
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    n: c_int,
    at: i64,
) -> c_int {
    let shim = shim(file);
    let Some(real_write) = methods(shim).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let Ok(len) = usize::try_from(n) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // Only a WAL whose database this VFS opened is gathered: the database's barrier writes it.
    if shim.kind != Kind::Wal || shim.partner.is_null() {
        #[cfg(test)]
        if shim.kind == Kind::Wal {
            tests::WAL_WRITES.set(tests::WAL_WRITES.get() + 1);
        }
        return real_write(shim.real, buf, n, at);
    }
    let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
    let follows = i64::try_from(shim.gathered.len()).is_ok_and(|gathered| shim.at + gathered == at);
    if !follows {
        let rc = write_gathered(shim);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        shim.at = at;
    }
    let completes_commit = shim.commit_header && len != FRAME_HEADER;
    shim.commit_header = len == FRAME_HEADER && bytes[4..8] != [0; 4];
    shim.gathered.extend_from_slice(bytes);
    if completes_commit || shim.gathered.len() >= MOST_GATHERED {
        return write_gathered(shim);
    }
    ffi::SQLITE_OK
}

/// Calls the platform's method after writing what was gathered.
macro_rules! after_writing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let shim = shim(file);
            let rc = write_gathered(shim);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match methods(shim).$method {
                Some(f) => f(shim.real $(, $arg)*),
                None => $missing,
            }
        }
    };
}

/// Calls the platform's method as it is.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let shim = shim(file);
            match methods(shim).$method {
                Some(f) => f(shim.real $(, $arg)*),
                None => $missing,
            }
        }
    };
}

after_writing!(truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR_TRUNCATE);
after_writing!(sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
after_writing!(file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
after_writing!(file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
forward!(lock, xLock, (level: c_int), ffi::SQLITE_IOERR_LOCK);
forward!(unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR_UNLOCK);
forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
forward!(sector_size, xSectorSize, (), 4096);
forward!(device_characteristics, xDeviceCharacteristics, (), 0);
forward!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
forward!(shm_unmap, xShmUnmap, (delete: c_int), ffi::SQLITE_OK);
forward!(fetch, xFetch, (at: i64, n: c_int, out: *mut *mut c_void), { *out = ptr::null_mut(); ffi::SQLITE_OK });
forward!(unfetch, xUnfetch, (at: i64, p: *mut c_void), ffi::SQLITE_OK);

/// Before a lock on the wal-index changes (a write transaction ends, a reader starts), the WAL's
/// gathered writes reach the file. What is still gathered then never held a commit (that was
/// written with its commit frame), so a failure here loses nothing committed.
unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let shim = shim(file);
    let _ = write_partner_wal(shim);
    match methods(shim).xShmLock {
        Some(f) => f(shim.real, offset, n, flags),
        None => ffi::SQLITE_IOERR_SHMLOCK,
    }
}

/// Between the wal-index header's two copies: readers may see the new frames after this.
unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    let shim = shim(file);
    #[cfg(test)]
    if !shim.partner.is_null() && !(*shim.partner).gathered.is_empty() {
        tests::BARRIER_WRITES.set(tests::BARRIER_WRITES.get() + 1);
    }
    if write_partner_wal(shim) != ffi::SQLITE_OK {
        // Frames about to be published are not in the file: stop before a reader trusts them.
        std::process::abort();
    }
    if let Some(f) = methods(shim).xShmBarrier {
        f(shim.real);
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::cell::Cell;
    use std::path::Path;

    thread_local! {
        /// Writes handed to the platform's VFS for a WAL file, on this thread.
        pub(super) static WAL_WRITES: Cell<usize> = const { Cell::new(0) };
        /// Times the barrier before publishing found frames still gathered, on this thread.
        pub(super) static BARRIER_WRITES: Cell<usize> = const { Cell::new(0) };
    }

    /// A connection as `serve` opens one: this VFS, WAL, `synchronous=NORMAL`.
    fn through_vfs(path: &Path) -> Connection {
        let conn =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), register().unwrap())
                .unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        conn
    }

    /// Another process's view: SQLite's own VFS, reading what is in the files.
    fn rows_seen_elsewhere(path: &Path) -> i64 {
        let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        reader
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    fn insert(conn: &Connection, from: i64, rows: i64, bytes: usize) {
        let tx = conn.unchecked_transaction().unwrap();
        for k in from..from + rows {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", (k, vec![7u8; bytes]))
                .unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn a_commit_of_several_pages_is_one_write_and_is_in_the_file_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = through_vfs(&path);
        for round in 0..20 {
            WAL_WRITES.set(0);
            // Three rows of 3 KB: three leaf pages and the interior page above them.
            insert(&conn, round * 3, 3, 3000);
            assert_eq!(
                WAL_WRITES.get(),
                1,
                "SQLite alone writes each frame's header and page apart"
            );
            // Written with its commit frame, where a failure fails the commit: the barrier
            // before publishing found nothing left.
            assert_eq!(BARRIER_WRITES.get(), 0);
            assert_eq!(rows_seen_elsewhere(&path), (round + 1) * 3);
        }
    }

    #[test]
    fn a_transaction_larger_than_one_platform_write_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = through_vfs(&path);
        // 3 MB: past MOST_GATHERED and many times the unix VFS's largest single write.
        insert(&conn, 0, 1000, 3000);
        assert_eq!(rows_seen_elsewhere(&path), 1000);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_rolled_back_transaction_leaves_nothing_and_the_next_commit_lands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = through_vfs(&path);
        insert(&conn, 0, 2, 100);
        {
            // Big enough to spill frames into the WAL before it is rolled back.
            conn.pragma_update(None, "cache_size", 10).unwrap();
            let tx = conn.unchecked_transaction().unwrap();
            for k in 100..400 {
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (k, vec![1u8; 3000]))
                    .unwrap();
            }
            tx.rollback().unwrap();
        }
        insert(&conn, 2, 1, 100);
        assert_eq!(rows_seen_elsewhere(&path), 3);
        drop(conn);
        // Closed and opened again (the WAL checkpointed into the file): the same rows.
        let again = through_vfs(&path);
        let (count, sum): (i64, i64) = again
            .query_row("SELECT count(*), sum(k) FROM t", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!((count, sum), (3, 3));
    }

    #[test]
    fn a_checkpointing_connection_beside_the_writer_sees_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = through_vfs(&path);
        let checkpointer = through_vfs(&path);
        for round in 0..50 {
            insert(&writer, round * 4, 4, 1500);
            if round % 10 == 9 {
                // As serve's checkpointer does past its bound: the next commit starts the WAL
                // over from its beginning.
                checkpointer
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                    .unwrap();
            }
        }
        assert_eq!(rows_seen_elsewhere(&path), 200);
        let check: String = writer
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
