//! The threads SQLite's store runs on: a fixed number whatever the load. Its own test binary,
//! so that no other test's store adds threads to the count.
#![allow(clippy::unwrap_used)]

use foobar_app::Store;

/// The threads of this process named `name` (Linux): the test's own runtime names its
/// threads, blocking ones included, so that other tests running beside it do not count.
fn threads(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

const RUNTIME: &str = "pile-up-test";

#[test]
fn sqlite_reads_do_not_wait_behind_a_blocked_write_nor_pile_up_threads() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(RUNTIME)
        .enable_all()
        .build()
        .unwrap()
        .block_on(reads_beside_a_blocked_write());
}

async fn reads_beside_a_blocked_write() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let post = store.create_post("Read me", "body").await.unwrap();
    // Another process's write transaction holds the write lock: our writes wait for it (up to
    // the busy timeout), our reads must not.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = threads(RUNTIME);
    let writes: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create_post(&format!("Queued {i}"), "w").await })
        })
        .collect();
    // Give the writes time to reach the lock; were reads queued behind them, they would now
    // wait for the lock too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reads: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get_post(post.id).await })
        })
        .collect();
    let read_all = async {
        for read in reads {
            assert_eq!(read.await.unwrap().unwrap().title, "Read me");
        }
    };
    tokio::time::timeout(Duration::from_secs(1), read_all)
        .await
        .expect("reads answered while a write waits for the lock");
    let during = threads(RUNTIME);
    // Calls wait for a reader as futures, not as threads: reads run on the store's own reader
    // threads, exactly as many as the pool says, and the writes wait for the writer as futures:
    // of the runtime's blocking pool they use the one thread the write in progress holds (tokio
    // may start a second when the last one has finished its call but not yet gone back idle).
    assert!(
        during <= before + 1,
        "250 queued calls took {} blocking threads",
        during - before
    );
    let readers = threads("sqlite-reader");
    assert_eq!(readers, store.pool().threads, "reader threads");
    assert!(readers >= 2, "{readers} reader threads");
    other.execute_batch("COMMIT").unwrap();
    for write in writes {
        // Each waits at most the busy timeout once the lock is free; all succeed in turn.
        write.await.unwrap().unwrap();
    }
    assert_eq!(store.list_posts(100, None).await.unwrap().posts.len(), 51);
}
