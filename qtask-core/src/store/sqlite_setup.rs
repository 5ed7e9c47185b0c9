//! Process-wide SQLite settings, made once before the first connection starts SQLite.

use std::sync::Once;

/// Turns off SQLite's memory statistics (SQLITE_DEFAULT_MEMSTATUS=0, one of SQLite's
/// recommended compile-time options). With them on, every allocation and free inside
/// SQLite takes one process-wide mutex: sqlx's connection thread copies each returned
/// value while the tokio thread frees the previous rows, and the two threads queued on
/// that mutex.
pub(super) fn before_first_connection() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. sqlite3_config is not
        // thread-safe, which the Once covers for this process's calls; after SQLite has
        // started (another library in this process used it first) the call changes
        // nothing and returns SQLITE_MISUSE, which is harmless.
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int);
        }
    });
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    #[tokio::test]
    async fn sqlite_keeps_no_memory_statistics() {
        super::before_first_connection();
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        conn.execute("CREATE TABLE t (v TEXT); INSERT INTO t VALUES (hex(randomblob(4000)))")
            .await
            .unwrap();
        // SAFETY: reads a counter.
        let used = unsafe { libsqlite3_sys::sqlite3_memory_used() };
        assert_eq!(
            used, 0,
            "SQLite counts its memory, so each allocation takes its global mutex"
        );
        conn.close().await.unwrap();
    }
}
