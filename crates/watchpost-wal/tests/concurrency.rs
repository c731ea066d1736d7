//! Many threads appending at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use watchpost_wal::{Lsn, Wal, WalOptions};

const THREADS: usize = 8;
const PER_THREAD: usize = 100;

fn payload(thread: usize, index: usize) -> Vec<u8> {
    format!("thread {thread} record {index}").into_bytes()
}

fn append_concurrently(options: WalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                (0..PER_THREAD).map(|index| wal.append(&payload(thread, index)).unwrap()).collect::<Vec<Lsn>>()
            })
        })
        .collect();
    let mut expected: HashMap<Lsn, Vec<u8>> = HashMap::new();
    for (thread, handle) in handles.into_iter().enumerate() {
        let lsns = handle.join().unwrap();
        assert!(lsns.windows(2).all(|pair| pair[0] < pair[1]), "one thread's lsns increase");
        for (index, lsn) in lsns.into_iter().enumerate() {
            assert!(expected.insert(lsn, payload(thread, index)).is_none(), "lsn {lsn} handed out twice");
        }
    }
    let total = (THREADS * PER_THREAD) as Lsn;
    assert_eq!(wal.last_lsn(), total);
    drop(wal);

    let (wal, recovered) = Wal::open(dir.path(), options).unwrap();
    let lsns: Vec<Lsn> = recovered.iter().map(|(lsn, _)| *lsn).collect();
    assert_eq!(lsns, (1..=total).collect::<Vec<_>>());
    for (lsn, record) in recovered {
        assert_eq!(expected[&lsn], record, "payload of lsn {lsn}");
    }
    assert_eq!(wal.append(b"after").unwrap(), total + 1);
}

#[test]
fn concurrent_appends_get_unique_increasing_lsns_and_are_all_recovered() {
    append_concurrently(WalOptions::default());
}

#[test]
fn concurrent_appends_across_segment_rollovers() {
    append_concurrently(WalOptions { segment_bytes: 512, fsync: true, direct_io: true });
}
