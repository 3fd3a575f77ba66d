//! Store behaviour on a real SQLite file in a temporary directory.

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), "n1").unwrap();
    (dir, s)
}

#[tokio::test]
async fn account_gets_default_mailboxes_and_password_checks() {
    let (_d, s) = store();
    s.create_account("Ana", "Ana P", "secret").await.unwrap();
    let names: Vec<String> = s
        .list_mailboxes("ana")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["INBOX", "Drafts", "Junk", "Sent", "Trash"]);
    assert_eq!(
        s.verify_password("ANA", "secret").await.unwrap().as_deref(),
        Some("ana")
    );
    assert_eq!(s.verify_password("ana", "wrong").await.unwrap(), None);
    assert_eq!(s.verify_password("nobody", "secret").await.unwrap(), None);
    assert!(matches!(
        s.create_account("ana", "", "x").await,
        Err(StoreError::AccountExists(_))
    ));
    s.set_password("ana", "other").await.unwrap();
    assert!(s.verify_password("ana", "other").await.unwrap().is_some());
    s.delete_account("ana").await.unwrap();
    assert!(s.list_mailboxes("ana").await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_deliveries_get_distinct_increasing_uids() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.deliver(
                format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
                &["ana".into()],
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let inbox = s.mailbox("ana", "inbox").await.unwrap().unwrap();
    let msgs = s.messages(&inbox.id).await.unwrap();
    let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
    assert_eq!(uids, (1..=50).collect::<Vec<_>>());
    assert_eq!(inbox.uidnext, 51);
    assert_eq!(inbox.unseen, 50);
    // One op per delivery (plus the account), in order, all from this node.
    let ops = s.ops_since(0, 1000).await.unwrap();
    assert_eq!(ops.len(), 51);
    assert!(
        ops.windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].hlc < w[1].hlc)
    );
    assert!(ops.iter().all(|o| o.origin == "n1"));
}

#[tokio::test]
async fn failing_op_does_not_undo_its_batch_neighbours() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    let (ana, nobody) = (["ana".to_string()], ["nobody".to_string()]);
    let good = s.deliver(b"Subject: a\r\n\r\nx\r\n".to_vec(), &ana);
    let bad = s.deliver(b"Subject: b\r\n\r\ny\r\n".to_vec(), &nobody);
    let (g, b) = tokio::join!(good, bad);
    g.unwrap();
    assert!(matches!(b, Err(StoreError::NoSuchAccount(_))));
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
    assert_eq!(inbox.messages, 1);
}

#[tokio::test]
async fn flags_copy_move_expunge() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
    let trash = s.mailbox("ana", "Trash").await.unwrap().unwrap();
    for i in 0..3 {
        s.append(
            &inbox.id,
            format!("Subject: {i}\r\n\r\n").into_bytes(),
            &[],
            Some(1000),
        )
        .await
        .unwrap();
    }
    let up = s
        .store_flags(
            &inbox.id,
            &[1, 2],
            FlagMode::Add,
            &["\\seen".into(), "$Work".into()],
        )
        .await
        .unwrap();
    assert_eq!(up.len(), 2);
    assert_eq!(up[0].flags, ["$Work", "\\Seen"]);
    assert!(up[1].modseq > up[0].modseq);
    // Adding again changes nothing.
    assert!(
        s.store_flags(&inbox.id, &[1], FlagMode::Add, &["\\Seen".into()])
            .await
            .unwrap()
            .is_empty()
    );
    let c = s
        .copy(&inbox.id, &[2, 3, 9], &trash.id, false)
        .await
        .unwrap();
    assert_eq!(c.src_uids, [2, 3]);
    assert_eq!(c.dst_uids, [1, 2]);
    assert_eq!(c.uidvalidity, trash.uidvalidity);
    let m = s.copy(&inbox.id, &[1], &trash.id, true).await.unwrap();
    assert_eq!((m.src_uids, m.dst_uids), (vec![1], vec![3]));
    let left: Vec<u32> = s
        .messages(&inbox.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, [2, 3]);
    s.store_flags(&inbox.id, &[3], FlagMode::Replace, &["\\Deleted".into()])
        .await
        .unwrap();
    assert_eq!(
        s.expunge(&inbox.id, Some(&[2])).await.unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(s.expunge(&inbox.id, None).await.unwrap(), [3]);
    let trash_msgs = s.messages(&trash.id).await.unwrap();
    assert_eq!(trash_msgs[2].flags, ["$Work", "\\Seen"]);
}

#[tokio::test]
async fn mailbox_create_rename_delete() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    s.create_mailbox("ana", "Work").await.unwrap();
    s.create_mailbox("ana", "Work/2026").await.unwrap();
    assert!(matches!(
        s.create_mailbox("ana", "work").await.map(|_| ()),
        Ok(())
    ));
    assert!(matches!(
        s.create_mailbox("ana", "Work").await,
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        s.delete_mailbox("ana", "Work").await,
        Err(StoreError::NotAllowed(_))
    ));
    s.rename_mailbox("ana", "Work", "Job").await.unwrap();
    assert!(s.mailbox("ana", "Job/2026").await.unwrap().is_some());
    assert!(s.mailbox("ana", "Work/2026").await.unwrap().is_none());
    assert!(
        s.subscriptions("ana")
            .await
            .unwrap()
            .contains(&"Job/2026".to_string())
    );
    s.delete_mailbox("ana", "Job/2026").await.unwrap();
    s.delete_mailbox("ana", "Job").await.unwrap();
    assert!(s.delete_mailbox("ana", "INBOX").await.is_err());
    // RFC 3501 6.3.5: renaming INBOX moves its messages and leaves it empty.
    s.deliver(b"Subject: x\r\n\r\n".to_vec(), &["ana".into()])
        .await
        .unwrap();
    s.rename_mailbox("ana", "INBOX", "Old").await.unwrap();
    assert_eq!(
        s.mailbox("ana", "INBOX").await.unwrap().unwrap().messages,
        0
    );
    assert_eq!(s.mailbox("ana", "Old").await.unwrap().unwrap().messages, 1);
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (uidvalidity, flags) = {
        let s = Store::open(dir.path(), "n1").unwrap();
        s.create_account("ana", "", "pw").await.unwrap();
        s.deliver(b"Subject: x\r\n\r\nhello\r\n".to_vec(), &["ana".into()])
            .await
            .unwrap();
        let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
        s.store_flags(&inbox.id, &[1], FlagMode::Add, &["\\Flagged".into()])
            .await
            .unwrap();
        s.enqueue(
            "ana@cluster.com.ec",
            &["x@example.org".into()],
            b"Subject: q\r\n\r\n".to_vec(),
        )
        .await
        .unwrap();
        (inbox.uidvalidity, vec!["\\Flagged".to_string()])
    };
    let s = Store::open(dir.path(), "n1").unwrap();
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
    assert_eq!(inbox.uidvalidity, uidvalidity);
    assert_eq!(inbox.uidnext, 2);
    let m = &s.messages(&inbox.id).await.unwrap()[0];
    assert_eq!(m.flags, flags);
    assert_eq!(
        s.read_blob(&m.blob).await.unwrap(),
        b"Subject: x\r\n\r\nhello\r\n"
    );
    assert_eq!(s.queue().await.unwrap().len(), 1);
    // The op log continues where it stopped.
    s.deliver(b"Subject: y\r\n\r\n".to_vec(), &["ana".into()])
        .await
        .unwrap();
    let ops = s.ops_since(0, 100).await.unwrap();
    let seqs: Vec<u64> = ops.iter().map(|o| o.origin_seq).collect();
    assert_eq!(seqs, (1..=ops.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn changes_are_broadcast_after_commit() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
    let mut rx = s.subscribe();
    s.deliver(b"Subject: x\r\n\r\n".to_vec(), &["ana".into()])
        .await
        .unwrap();
    let c = rx.recv().await.unwrap();
    assert_eq!(
        c,
        Change::Appended {
            mailbox: inbox.id.clone(),
            uids: vec![1]
        }
    );
    // The notified state is readable.
    assert_eq!(s.messages(&inbox.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn read_only_store_refuses_writes() {
    let (_d, s) = store();
    s.set_writable(false);
    assert!(matches!(
        s.create_account("ana", "", "pw").await,
        Err(StoreError::ReadOnly)
    ));
}

#[test]
fn names_are_validated() {
    assert!(normalize_account("sistemas").is_ok());
    assert!(normalize_account("a b").is_err());
    assert!(normalize_account("").is_err());
    assert_eq!(normalize_mailbox_name("inbox/Sub").unwrap(), "INBOX/Sub");
    assert!(normalize_mailbox_name("a//b").is_err());
    assert!(normalize_mailbox_name("a*").is_err());
}

#[tokio::test]
async fn content_files_are_stored_listed_and_replaced() {
    let (_d, s) = store();
    let mut rx = s.subscribe();
    s.put_content("zones/a.zone", b"one".to_vec())
        .await
        .unwrap();
    assert_eq!(
        rx.recv().await.unwrap(),
        Change::Content {
            path: "zones/a.zone".into()
        }
    );
    s.put_content("/zones/a.zone", b"two".to_vec())
        .await
        .unwrap();
    s.put_content("www/index.html", b"<h1>".to_vec())
        .await
        .unwrap();
    assert_eq!(s.content("zones/a.zone").await.unwrap().unwrap(), b"two");
    let zones = s.content_list("zones/").await.unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].size, 3);
    let seq = s.last_seq().await.unwrap();
    s.put_content("zones/a.zone", b"two".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.last_seq().await.unwrap(),
        seq,
        "unchanged content is not re-committed"
    );
    s.delete_content("zones/a.zone").await.unwrap();
    assert!(s.content("zones/a.zone").await.unwrap().is_none());
    assert!(s.put_content("../etc/passwd", vec![]).await.is_err());
}

#[tokio::test]
async fn contacts_are_added_edited_deleted_per_account_and_logged() {
    let (dir, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    s.create_account("luis", "", "pw").await.unwrap();
    let c = s
        .put_contact(
            "ana",
            None,
            "  Zoe Q ",
            "zoe@example.org",
            "amiga\r\nde la U",
        )
        .await
        .unwrap();
    assert_eq!(c.name, "Zoe Q");
    assert_eq!(c.note, "amiga\nde la U");
    let b = s
        .put_contact("ANA", None, "Bruno", "bruno@example.org", "")
        .await
        .unwrap();
    let names: Vec<String> = s
        .contacts("ana")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Bruno", "Zoe Q"]);
    assert!(s.contacts("luis").await.unwrap().is_empty());
    // Bad addresses are refused.
    for bad in ["", "no-at", "a b@x.org", "a@", "<a@x.org>"] {
        assert!(
            matches!(
                s.put_contact("ana", None, "x", bad, "").await,
                Err(StoreError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    // Another account cannot edit or delete ana's contact.
    assert!(matches!(
        s.put_contact("luis", Some(&b.id), "x", "x@y.org", "").await,
        Err(StoreError::NotAllowed(_))
    ));
    assert!(matches!(
        s.delete_contact("luis", &b.id).await,
        Err(StoreError::NotAllowed(_))
    ));
    assert!(s.contact("luis", &b.id).await.unwrap().is_none());
    // Edit keeps the id.
    let e = s
        .put_contact("ana", Some(&b.id), "Bruno M", "bm@example.org", "n")
        .await
        .unwrap();
    assert_eq!(e.id, b.id);
    let got = s.contact("ana", &b.id).await.unwrap().unwrap();
    assert_eq!(
        (got.name.as_str(), got.email.as_str()),
        ("Bruno M", "bm@example.org")
    );
    s.delete_contact("ana", &c.id).await.unwrap();
    assert_eq!(s.contacts("ana").await.unwrap().len(), 1);
    // Each change is an op in the log (so it replicates) and survives a reopen.
    let ops = s.ops_since(0, 100).await.unwrap();
    let puts = ops
        .iter()
        .filter(|o| matches!(o.op, op::Op::ContactPut { .. }))
        .count();
    let dels = ops
        .iter()
        .filter(|o| matches!(o.op, op::Op::ContactDelete { .. }))
        .count();
    assert_eq!((puts, dels), (3, 1));
    drop(s);
    let s = Store::open(dir.path(), "n1").unwrap();
    let left = s.contacts("ana").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].email, "bm@example.org");
    // Deleting the account removes its address book.
    s.delete_account("ana").await.unwrap();
    assert!(s.contacts("ana").await.unwrap().is_empty());
}

#[tokio::test]
async fn contact_ops_apply_verbatim_on_a_replica() {
    let (_d1, a) = store();
    let (_d2, b) = store();
    a.create_account("ana", "", "pw").await.unwrap();
    let c = a
        .put_contact("ana", None, "Zoe", "zoe@example.org", "")
        .await
        .unwrap();
    a.delete_contact("ana", &c.id).await.unwrap();
    let c2 = a
        .put_contact("ana", None, "Yves", "yves@example.org", "x")
        .await
        .unwrap();
    // Applying the logged ops to another database gives the same address book.
    let db = b.data_dir().join("store.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    for o in a.ops_since(0, 100).await.unwrap() {
        apply::apply(&conn, &o.op).unwrap();
    }
    drop(conn);
    assert_eq!(b.contacts("ana").await.unwrap(), vec![c2]);
}

#[tokio::test]
async fn replicated_ops_apply_verbatim_once_and_the_digests_agree() {
    let (_d1, a) = store();
    let dir2 = tempfile::tempdir().unwrap();
    let b = Store::open(dir2.path(), "n2").unwrap();
    b.set_writable(false); // a standby: closed for its own writes, open to the peer's
    a.create_account("ana", "Ana", "pw").await.unwrap();
    a.deliver(b"Subject: one\r\n\r\nbody\r\n".to_vec(), &["ana".into()])
        .await
        .unwrap();
    let inbox = a.mailbox("ana", "INBOX").await.unwrap().unwrap();
    a.store_flags(&inbox.id, &[1], FlagMode::Add, &["\\Seen".into()])
        .await
        .unwrap();
    assert_ne!(a.digest().await.unwrap(), b.digest().await.unwrap());

    let ops = a.ops_since(0, 100).await.unwrap();
    for op in &ops {
        for blob in op.op.blobs() {
            let raw = a.read_blob(blob).await.unwrap();
            assert_eq!(&b.put_blob(raw).await.unwrap().0, blob);
        }
    }
    assert!(matches!(
        b.create_account("x", "", "pw").await,
        Err(StoreError::ReadOnly)
    ));
    assert_eq!(b.apply_replicated(ops.clone()).await.unwrap(), ops.len());
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
    // The same ops again change nothing; the origin and its sequence are kept.
    assert_eq!(b.apply_replicated(ops.clone()).await.unwrap(), 0);
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
    let marks = b.origin_marks().await.unwrap();
    assert_eq!(marks, vec![("n1".to_string(), ops.len() as u64)]);
    let copy = b.ops_since(0, 100).await.unwrap();
    assert_eq!(
        copy.iter()
            .map(|o| (&o.origin, o.origin_seq, o.hlc))
            .collect::<Vec<_>>(),
        ops.iter()
            .map(|o| (&o.origin, o.origin_seq, o.hlc))
            .collect::<Vec<_>>()
    );
    // The replica serves what was replicated.
    let msgs = b.messages(&inbox.id).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].has_flag("\\Seen"));
}

#[tokio::test]
async fn settings_from_both_nodes_end_equal_whatever_the_order() {
    let (_d1, a) = store();
    let dir2 = tempfile::tempdir().unwrap();
    let b = Store::open(dir2.path(), "n2").unwrap();
    a.set_setting("tls.cert", "from-a").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    b.set_setting("tls.cert", "from-b").await.unwrap();
    let (from_a, from_b) = (
        a.ops_since(0, 10).await.unwrap(),
        b.ops_since(0, 10).await.unwrap(),
    );
    b.apply_replicated(from_a).await.unwrap();
    a.apply_replicated(from_b).await.unwrap();
    // The later write wins on both.
    assert_eq!(
        a.setting("tls.cert").await.unwrap().as_deref(),
        Some("from-b")
    );
    assert_eq!(
        b.setting("tls.cert").await.unwrap().as_deref(),
        Some("from-b")
    );
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
}

#[tokio::test]
async fn a_retried_delivery_is_stored_once_and_bulk_without_message_id_is_not_merged() {
    let (_d, s) = store();
    s.create_account("ana", "Ana", "pw").await.unwrap();
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
    let body = "From: a@example.org\r\nMessage-ID: <1@example.org>\r\n\r\nhola\r\n";
    for trace in ["id AAA", "id BBB"] {
        let raw = format!(
            "Received: from x ([10.0.0.10])\r\n\tby mail (clusterd) with ESMTP {trace};\r\n\tdate\r\n{body}"
        );
        s.deliver(raw.into_bytes(), &["ana".into()]).await.unwrap();
    }
    assert_eq!(
        s.messages(&inbox.id).await.unwrap().len(),
        1,
        "a retry is one delivery"
    );
    // Another message, or one without a Message-ID, is a delivery of its own.
    s.deliver(
        b"Message-ID: <2@example.org>\r\n\r\nhola\r\n".to_vec(),
        &["ana".into()],
    )
    .await
    .unwrap();
    for _ in 0..2 {
        s.deliver(b"Subject: bulk\r\n\r\nx\r\n".to_vec(), &["ana".into()])
            .await
            .unwrap();
    }
    assert_eq!(s.messages(&inbox.id).await.unwrap().len(), 4);
    // A submission retried: the Date SMTP added after its trace field differs.
    for (trace, date) in [("id CCC", "10:00:00"), ("id DDD", "10:00:07")] {
        let raw = format!(
            "Received: from x ([10.0.0.10])\r\n\tby mail (clusterd) with ESMTPSA {trace};\r\n\tdate\r\nDate: Mon, 4 Mar 2024 {date}\r\n +0000\r\nMessage-ID: <3@example.org>\r\n\r\nhola\r\n"
        );
        s.deliver(raw.into_bytes(), &["ana".into()]).await.unwrap();
    }
    assert_eq!(s.messages(&inbox.id).await.unwrap().len(), 5);
    // Without our trace field a Date is part of the message.
    for date in ["10:00:00", "10:00:07"] {
        let raw = format!(
            "Date: Mon, 4 Mar 2024 {date} +0000\r\nMessage-ID: <4@example.org>\r\n\r\nx\r\n"
        );
        s.deliver(raw.into_bytes(), &["ana".into()]).await.unwrap();
    }
    assert_eq!(s.messages(&inbox.id).await.unwrap().len(), 7);
}

/// Copies the blobs `ops` name from `from` to `to` (what replication's frames carry).
async fn copy_blobs(from: &Store, to: &Store, ops: &[op::LoggedOp]) {
    for op in ops {
        for blob in op.op.blobs() {
            let raw = from.read_blob(blob).await.unwrap();
            to.put_blob(raw).await.unwrap();
        }
    }
}

/// The ops of `from`'s log that `to` does not hold (by `to`'s marks).
async fn divergent(from: &Store, to: &Store) -> Vec<op::LoggedOp> {
    let marks: std::collections::HashMap<String, u64> =
        to.origin_marks().await.unwrap().into_iter().collect();
    from.ops_since(0, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| marks.get(&l.origin).is_none_or(|m| l.origin_seq > *m))
        .collect()
}

fn mail(id: &str, body: &str) -> Vec<u8> {
    format!("Message-ID: <{id}@test>\r\nSubject: {id}\r\n\r\n{body}\r\n").into_bytes()
}

async fn subjects(s: &Store, mailbox: &str) -> Vec<(u32, String, Vec<String>)> {
    let mut out = Vec::new();
    for m in s.messages(mailbox).await.unwrap() {
        let raw = s.read_blob(&m.blob).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .to_string();
        out.push((m.uid, subject, m.flags.clone()));
    }
    out
}

#[tokio::test]
async fn split_brain_merge_keeps_the_union_once_with_lww_flags_and_winning_expunges() {
    let (_d1, a) = store();
    let dir2 = tempfile::tempdir().unwrap();
    let b = Store::open(dir2.path(), "n2").unwrap();
    // Shared history: n1 active, n2 a replica of it.
    a.create_account("ana", "Ana", "pw").await.unwrap();
    for id in ["m1", "m2"] {
        a.deliver(mail(id, "shared"), &["ana".into()])
            .await
            .unwrap();
    }
    let shared = a.ops_since(0, 100).await.unwrap();
    copy_blobs(&a, &b, &shared).await;
    b.set_writable(false);
    b.apply_replicated(shared).await.unwrap();
    let inbox = a.mailbox("ana", "INBOX").await.unwrap().unwrap();

    // The split: both are active.
    b.set_writable(true);
    a.deliver(mail("a-only", "x"), &["ana".into()])
        .await
        .unwrap();
    a.store_flags(&inbox.id, &[1], FlagMode::Add, &["\\Seen".into()])
        .await
        .unwrap();
    b.deliver(mail("b-only", "y"), &["ana".into()])
        .await
        .unwrap();
    // A client that retried on the other side: the same message on both.
    a.deliver(mail("both", "z"), &["ana".into()]).await.unwrap();
    b.deliver(mail("both", "z"), &["ana".into()]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    b.store_flags(&inbox.id, &[1], FlagMode::Add, &["\\Flagged".into()])
        .await
        .unwrap();
    b.store_flags(&inbox.id, &[2], FlagMode::Add, &["\\Deleted".into()])
        .await
        .unwrap();
    b.expunge(&inbox.id, None).await.unwrap();
    let work = b.create_mailbox("ana", "Work").await.unwrap();
    b.append(&work.id, mail("filed", "w"), &[], None)
        .await
        .unwrap();

    // Healed: n1 survives; n2's divergent ops are replayed on it.
    let theirs = divergent(&b, &a).await;
    assert!(theirs.iter().all(|l| l.origin == "n2"));
    copy_blobs(&b, &a, &theirs).await;
    let b_marks = b.origin_marks().await.unwrap().into_iter().collect();
    let report = a.merge(theirs.clone(), b_marks).await.unwrap();
    assert_eq!(report.messages_added, 2, "{report:?}"); // b-only, filed
    assert_eq!(report.duplicates, 1, "{report:?}"); // both
    assert_eq!(
        report.renumbered,
        vec!["ana/INBOX".to_string()],
        "{report:?}"
    );
    let after = a.mailbox("ana", "INBOX").await.unwrap().unwrap();
    assert_ne!(after.uidvalidity, inbox.uidvalidity);
    let got = subjects(&a, &inbox.id).await;
    let names: Vec<&str> = got.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(names, ["m1", "a-only", "both", "b-only"], "{got:?}");
    // n2 flagged m1 after n1 marked it seen: n2's flag set wins; m2 expunged on n2.
    assert_eq!(got[0].2, vec!["\\Flagged".to_string()]);
    let uids: Vec<u32> = got.iter().map(|(u, _, _)| *u).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    // UIDs 3 and 4 named different messages on the two sides during the split: now
    // they name none (both sides' new messages moved above 4), so a client that
    // learnt them from either side cannot mistake one message for another.
    assert_eq!(uids, [1, 5, 6, 7], "{got:?}");
    // A mailbox only n2 had arrives with its message, its UIDs kept.
    let w = a.mailbox("ana", "Work").await.unwrap().unwrap();
    assert_eq!(w.id, work.id);
    assert_eq!(subjects(&a, &w.id).await[0].0, 1);
    assert_eq!(w.uidvalidity, work.uidvalidity);

    // The same divergent ops are not offered twice: n1's marks cover them.
    assert!(divergent(&b, &a).await.is_empty());

    // n2 takes n1's snapshot and equals it; its own next op continues its sequence.
    let snap = a.snapshot().await.unwrap();
    let missing = b.missing_blobs(&snap.blobs());
    for blob in &missing {
        b.put_blob(a.read_blob(blob).await.unwrap()).await.unwrap();
    }
    let b_last = b.last_seq().await.unwrap();
    b.set_resync_needed().await.unwrap();
    assert!(b.resync_needed().await.unwrap());
    b.set_writable(false);
    b.install_snapshot(snap.clone()).await.unwrap();
    assert!(!b.resync_needed().await.unwrap());
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
    assert_eq!(
        a.origin_marks().await.unwrap(),
        b.origin_marks().await.unwrap()
    );
    // Later ops of n1 apply on n2 from the snapshot's position.
    a.deliver(mail("later", "l"), &["ana".into()])
        .await
        .unwrap();
    let next = a.ops_since(snap.seq, 100).await.unwrap();
    copy_blobs(&a, &b, &next).await;
    assert_eq!(b.apply_replicated(next).await.unwrap(), 1);
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
    // n2's log positions never go back (acks name positions).
    assert!(b.last_seq().await.unwrap() > b_last);
    b.set_writable(true);
    b.deliver(mail("n2-again", "q"), &["ana".into()])
        .await
        .unwrap();
    let mine = b.ops_since(0, 100).await.unwrap();
    let last_n2 = mine.iter().rev().find(|l| l.origin == "n2").unwrap();
    let max_theirs = theirs.iter().map(|l| l.origin_seq).max().unwrap();
    assert!(last_n2.origin_seq > max_theirs);
}

#[tokio::test]
async fn compaction_keeps_the_newest_ops_and_remembers_what_it_dropped() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    for i in 0..9 {
        s.deliver(mail(&format!("c{i}"), "b"), &["ana".into()])
            .await
            .unwrap();
    }
    let before = s.origin_marks().await.unwrap();
    let last = s.last_seq().await.unwrap();
    assert_eq!(last, 10);
    assert_eq!(s.compact(last, 3).await.unwrap(), 7);
    let left = s.ops_since(0, 100).await.unwrap();
    assert_eq!(left.iter().map(|l| l.seq).collect::<Vec<_>>(), [8, 9, 10]);
    assert_eq!(s.origin_marks().await.unwrap(), before);
    assert_eq!(s.baseline().await.unwrap(), vec![("n1".to_string(), 7)]);
    // Only acknowledged positions go: nothing above `upto`.
    assert_eq!(s.compact(8, 1).await.unwrap(), 1);
    assert_eq!(s.compact(8, 1).await.unwrap(), 0);
    s.deliver(mail("after", "b"), &["ana".into()])
        .await
        .unwrap();
    assert_eq!(s.last_seq().await.unwrap(), 11);
    drop(s);
    // Reopened, it continues its origin sequence past what it compacted.
    let s = Store::open(_d.path(), "n1").unwrap();
    s.deliver(mail("reopened", "b"), &["ana".into()])
        .await
        .unwrap();
    let ops = s.ops_since(0, 100).await.unwrap();
    assert_eq!(ops.last().unwrap().origin_seq, 12);
}

#[test]
fn error_messages_are_the_ones_clients_and_logs_know() {
    use snapshot::BadSnapshot;
    let cases: [(StoreError, &str); 9] = [
        (StoreError::NoRecipients, "no recipients"),
        (StoreError::WriterStopped, "store writer stopped"),
        (
            StoreError::CommitFailed("database failure: disk I/O error".into()),
            "commit failed: database failure: disk I/O error",
        ),
        (StoreError::MergeNotCommitted, "merge not committed"),
        (StoreError::SnapshotNotCommitted, "snapshot not committed"),
        (StoreError::MaintenanceNotCommitted, "not committed"),
        (
            BadSnapshot::MissingBlobs {
                count: 2,
                example: "ab12".into(),
            }
            .into(),
            "snapshot refers to 2 blobs this node lacks (e.g. ab12)",
        ),
        (
            BadSnapshot::UnknownColumn {
                table: "messages".into(),
                column: "colour".into(),
            }
            .into(),
            "snapshot table messages has an unknown column colour",
        ),
        (
            BadSnapshot::RowWidth {
                table: "queue".into(),
                values: 3,
                columns: 9,
            }
            .into(),
            "snapshot row of queue has 3 values for 9 columns",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
    assert_eq!(
        StoreError::from(BadSnapshot::UnknownTable("gizmos".into())).to_string(),
        "snapshot has a table this node does not know: gizmos"
    );
    let json = serde_json::from_str::<op::Op>("{").unwrap_err();
    let text = json.to_string();
    assert_eq!(StoreError::CorruptLog(json).to_string(), text);
}

#[tokio::test]
async fn one_message_by_uid_and_changes_from_a_uid_with_no_modseq_bound() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap();
    for i in 0..3 {
        s.append(
            &inbox.id,
            format!("Subject: {i}\r\n\r\n").into_bytes(),
            &[],
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        s.message(&inbox.id, 2).await.unwrap().map(|m| m.uid),
        Some(2)
    );
    assert_eq!(s.message(&inbox.id, 9).await.unwrap(), None);
    // u64::MAX means "no MODSEQ is newer": only UIDs from 3 on (it once wrapped to -1
    // in SQL and matched every message).
    let uids: Vec<u32> = s
        .messages_changed(&inbox.id, 3, u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [3]);
}

#[tokio::test]
async fn expunges_are_recorded_with_their_modseq_and_replicate() {
    let (_d1, a) = store();
    let dir2 = tempfile::tempdir().unwrap();
    let b = Store::open(dir2.path(), "n2").unwrap();
    b.set_writable(false);
    a.create_account("ana", "Ana", "pw").await.unwrap();
    let inbox = a.mailbox("ana", "INBOX").await.unwrap().unwrap();
    for i in 0..4 {
        a.append(&inbox.id, mail(&i.to_string(), "x"), &[], None)
            .await
            .unwrap();
    }
    let before = a
        .mailbox_by_id(&inbox.id)
        .await
        .unwrap()
        .unwrap()
        .highest_modseq;
    a.store_flags(&inbox.id, &[2, 3], FlagMode::Add, &["\\Deleted".into()])
        .await
        .unwrap();
    assert_eq!(a.expunge(&inbox.id, Some(&[2])).await.unwrap(), [2]);
    let mid = a
        .mailbox_by_id(&inbox.id)
        .await
        .unwrap()
        .unwrap()
        .highest_modseq;
    assert_eq!(a.expunge(&inbox.id, None).await.unwrap(), [3]);
    let all = a.vanished(&inbox.id, before).await.unwrap();
    assert_eq!((all.uids.as_slice(), all.complete), (&[2, 3][..], true));
    assert_eq!(a.vanished(&inbox.id, mid).await.unwrap().uids, [3]);

    // UNCHANGEDSINCE: message 1 is untouched since `before`, message 4 too; after a
    // change to 4 it is refused and left alone.
    a.store_flags(&inbox.id, &[4], FlagMode::Add, &["\\Seen".into()])
        .await
        .unwrap();
    let (done, refused) = a
        .store_flags_unchanged_since(
            &inbox.id,
            &[1, 4],
            FlagMode::Add,
            &["\\Flagged".into()],
            Some(before),
        )
        .await
        .unwrap();
    assert_eq!(done.iter().map(|u| u.uid).collect::<Vec<_>>(), [1]);
    assert_eq!(refused, [4]);

    // The standby applies the same ops and answers the same.
    let ops = a.ops_since(0, 100).await.unwrap();
    copy_blobs(&a, &b, &ops).await;
    b.apply_replicated(ops).await.unwrap();
    assert_eq!(b.vanished(&inbox.id, before).await.unwrap(), all);
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
}

#[tokio::test]
async fn staged_bodies_are_installed_by_batch_and_recovered_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let tmp_files = || {
        std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .count()
    };
    {
        let s = Store::open(dir.path(), "n1").unwrap();
        // A batch: staged (not at its address yet), then installed.
        let (a, staged_a) = s.stage_blob(b"body a".to_vec()).await.unwrap();
        let (b, staged_b) = s.stage_blob(b"body b".to_vec()).await.unwrap();
        assert!(
            s.read_blob(&a).await.is_err(),
            "not at its address before install"
        );
        assert_eq!(tmp_files(), 2);
        s.install_staged(staged_a.into_iter().chain(staged_b).collect())
            .await
            .unwrap();
        assert_eq!(s.read_blob(&a).await.unwrap(), b"body a");
        assert_eq!(s.read_blob(&b).await.unwrap(), b"body b");
        assert_eq!(tmp_files(), 0);
        // Already here: nothing staged.
        assert!(s.stage_blob(b"body a".to_vec()).await.unwrap().1.is_none());
        // A batch that fails leaves nothing behind.
        drop(s.stage_blob(b"body c".to_vec()).await.unwrap().1);
        assert_eq!(tmp_files(), 0);
        // The node stops after the batch's syncfs, before the rename: the staged file
        // stays; and a torn one claims an address its content does not match.
        let (d, staged_d) = s.stage_blob(b"body d".to_vec()).await.unwrap();
        std::mem::forget(staged_d);
        let torn = dir.path().join("blobs/tmp").join(format!(
            "{}.0123",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"body e"))
        ));
        std::fs::write(&torn, b"body").unwrap();
        assert_eq!(tmp_files(), 2);
        drop(s);
        let s = Store::open(dir.path(), "n1").unwrap();
        assert_eq!(
            s.read_blob(&d).await.unwrap(),
            b"body d",
            "recovered at start"
        );
        assert_eq!(tmp_files(), 0, "the torn file is dropped");
    }
}

fn event(n: i64, node: &str, service: &str) -> Event {
    Event {
        id: format!("e{n:05}"),
        at: 1_700_000_000_000 + n,
        node: node.into(),
        service: service.into(),
        kind: "down".into(),
        detail: format!("event {n}"),
    }
}

#[tokio::test]
async fn the_history_keeps_the_newest_events_filters_them_and_replicates() {
    let (_d1, a) = store();
    let dir2 = tempfile::tempdir().unwrap();
    let b = Store::open(dir2.path(), "n2").unwrap();
    b.set_writable(false);
    // 1,200 events in three ops: only the newest 1,000 stay.
    for chunk in (0..1200).collect::<Vec<i64>>().chunks(400) {
        let batch = chunk
            .iter()
            .map(|n| {
                event(
                    *n,
                    if n % 2 == 0 { "n1" } else { "n2" },
                    if n % 3 == 0 { "imap" } else { "dns" },
                )
            })
            .collect();
        a.record_events(batch).await.unwrap();
    }
    let all = a
        .events(EventFilter {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), KEEP_EVENTS);
    assert_eq!(all[0].id, "e01199", "newest first");
    assert_eq!(all.last().unwrap().id, "e00200");
    // Filters: node, service, a time range.
    let some = a
        .events(EventFilter {
            node: Some("n1".into()),
            service: Some("imap".into()),
            from: Some(1_700_000_000_000 + 600),
            to: Some(1_700_000_000_000 + 700),
            limit: 1000,
        })
        .await
        .unwrap();
    let ids: Vec<i64> = some.iter().map(|e| e.id[1..].parse().unwrap()).collect();
    assert_eq!(
        ids,
        (600..700).rev().filter(|n| n % 6 == 0).collect::<Vec<_>>()
    );
    // The replica applies the ops and ends with the same history.
    let ops = a.ops_since(0, 100).await.unwrap();
    b.apply_replicated(ops).await.unwrap();
    assert_eq!(
        b.events(EventFilter {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap(),
        all
    );
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
}

#[tokio::test]
async fn a_merge_adds_the_events_the_survivor_lacks_once() {
    let (_d1, a) = store();
    let dir2 = tempfile::tempdir().unwrap();
    let b = Store::open(dir2.path(), "n2").unwrap();
    a.record_events(vec![event(1, "n1", "imap")]).await.unwrap();
    let shared = a.ops_since(0, 100).await.unwrap();
    b.set_writable(false);
    b.apply_replicated(shared).await.unwrap();
    // Split: each side records its own events.
    b.set_writable(true);
    a.record_events(vec![event(2, "n1", "dns")]).await.unwrap();
    b.record_events(vec![event(3, "n2", "peer")]).await.unwrap();
    let theirs = divergent(&b, &a).await;
    let b_marks = b.origin_marks().await.unwrap().into_iter().collect();
    a.merge(theirs.clone(), b_marks).await.unwrap();
    let ids = |s: &Store| {
        let s = s.clone();
        async move {
            s.events(EventFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(&a).await, ["e00003", "e00002", "e00001"]);
    // Replaying the same divergent ops again adds nothing.
    let b_marks = b.origin_marks().await.unwrap().into_iter().collect();
    a.merge(theirs, b_marks).await.unwrap();
    assert_eq!(ids(&a).await, ["e00003", "e00002", "e00001"]);
}

#[tokio::test]
async fn one_process_at_a_time_opens_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), "n1").unwrap();
    // The temporary file of a body being written must survive a second opener.
    let mut sink = s.blob_sink(b"");
    sink.buf().extend_from_slice(&[b'x'; 200_000]);
    sink.flush().await.unwrap();
    match Store::open(dir.path(), "n1") {
        Err(StoreError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("a second open: {:?}", other.map(|_| ())),
    }
    let stored = sink.finish().await.unwrap();
    assert_eq!(s.read_blob(&stored.blob).await.unwrap().len(), 200_000);
    let e = Store::open(dir.path(), "n1").err().unwrap().to_string();
    assert!(e.contains("in use by another clusterd process"), "{e}");
    drop(s);
    Store::open(dir.path(), "n1").expect("free again once closed");
}

#[tokio::test]
async fn quota_usage_follows_appends_copies_and_expunges() {
    let (_d, s) = store();
    s.create_account("ana", "", "pw").await.unwrap();
    s.create_account("bob", "", "pw").await.unwrap();
    s.set_default_quota_mb(1);
    let q = s.quota("ana").await.unwrap().unwrap();
    assert_eq!((q.usage, q.limit), (0, Some(1 << 20)));
    assert!(s.quota("nobody").await.unwrap().is_none());
    let inbox = s.mailbox("ana", "INBOX").await.unwrap().unwrap().id;
    let trash = s.mailbox("ana", "Trash").await.unwrap().unwrap().id;
    for i in 0..100u32 {
        let raw = format!("Subject: {i:03}\r\n\r\n{}\r\n", "x".repeat(98)).into_bytes();
        s.append(&inbox, raw, &[], None).await.unwrap();
    }
    let one = s.messages(&inbox).await.unwrap()[0].size;
    assert_eq!(s.quota("ana").await.unwrap().unwrap().usage, 100 * one);
    // A copy counts again; bob's usage is his own.
    let uids: Vec<u32> = (1..=100).collect();
    s.copy(&inbox, &uids, &trash, false).await.unwrap();
    assert_eq!(s.quota("ana").await.unwrap().unwrap().usage, 200 * one);
    assert_eq!(s.quota("bob").await.unwrap().unwrap().usage, 0);
    s.store_flags(&inbox, &uids[..50], FlagMode::Add, &["\\Deleted".into()])
        .await
        .unwrap();
    s.expunge(&inbox, None).await.unwrap();
    assert_eq!(s.quota("ana").await.unwrap().unwrap().usage, 150 * one);
    // Over the limit by a byte is refused; own quotas replace the default.
    assert!(s.check_quota("ana", (1 << 20) - 150 * one).await.is_ok());
    assert!(matches!(
        s.check_quota("ana", (1 << 20) - 150 * one + 1).await,
        Err(StoreError::OverQuota(_))
    ));
    s.set_quota("ana", Some(0)).await.unwrap();
    assert_eq!(s.quota("ana").await.unwrap().unwrap().limit, None);
    s.set_quota("ana", Some(5)).await.unwrap();
    assert_eq!(s.quota("ana").await.unwrap().unwrap().limit, Some(5 << 20));
    s.set_quota("ana", None).await.unwrap();
    assert_eq!(s.quota("ana").await.unwrap().unwrap().limit, Some(1 << 20));
    assert!(matches!(
        s.set_quota("nobody", Some(1)).await,
        Err(StoreError::NoSuchAccount(_))
    ));

    // The cost of the SUM at 10,000 messages (copies, 100 per op).
    let uids: Vec<u32> = (51..=100).collect();
    for _ in 0..199 {
        s.copy(&inbox, &uids, &trash, false).await.unwrap();
    }
    assert_eq!(
        s.quota("ana").await.unwrap().unwrap().usage,
        (150 + 199 * 50) * one
    );
    // A MOVE changes nothing; a deleted mailbox takes its messages' bytes with it.
    let in_trash = s.messages(&trash).await.unwrap().len() as u64;
    let sent = s.mailbox("ana", "Sent").await.unwrap().unwrap().id;
    s.copy(&inbox, &uids, &sent, true).await.unwrap();
    assert_eq!(
        s.quota("ana").await.unwrap().unwrap().usage,
        (150 + 199 * 50) * one
    );
    s.create_mailbox("ana", "Old").await.unwrap();
    let old = s.mailbox("ana", "Old").await.unwrap().unwrap().id;
    s.copy(&trash, &[1, 2, 3], &old, false).await.unwrap();
    s.delete_mailbox("ana", "Old").await.unwrap();
    assert_eq!(
        s.quota("ana").await.unwrap().unwrap().usage,
        (50 + in_trash) * one
    );
    // The look-up reads the per-mailbox sums, never the messages (it ran at every
    // RCPT and again at the end of DATA: a walk of the whole account each time).
    let path = _d.path().join("store.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(u.bytes), 0) FROM mailboxes b
             JOIN mailbox_usage u ON u.mailbox = b.id WHERE b.account = 'ana'",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(plan.iter().all(|l| !l.contains("messages")), "{plan:?}");
    // A store made before the sums existed gets them, right, when opened.
    drop(s);
    conn.execute_batch(
        "DROP TRIGGER mailbox_usage_insert; DROP TRIGGER mailbox_usage_delete;
         DROP TRIGGER mailbox_usage_update; DROP TRIGGER mailbox_usage_forget;
         DROP TABLE mailbox_usage;",
    )
    .unwrap();
    drop(conn);
    let s = Store::open(_d.path(), "n1").unwrap();
    assert_eq!(
        s.quota("ana").await.unwrap().unwrap().usage,
        (50 + in_trash) * one
    );
}
