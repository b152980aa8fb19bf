use super::*;

fn temp_root(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("fulmar-maildir-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    root
}

#[test]
fn addresses_cannot_leave_the_store() {
    assert_eq!(
        account_dir_name("Ann@Example.TEST").unwrap(),
        "ann@example.test"
    );
    assert_eq!(
        account_dir_name("a/../b@x.test").unwrap(),
        "a%2F..%2Fb@x.test"
    );
    assert_eq!(
        account_dir_name(".hidden@x.test").unwrap(),
        "%2Ehidden@x.test"
    );
    assert_eq!(
        account_dir_name("*)(uid=*@x.test").unwrap(),
        "%2A%29%28uid%3D%2A@x.test"
    );
    assert!(account_dir_name("no-at-sign").is_err());
    assert!(account_dir_name("@x.test").is_err());
}

#[test]
fn quota_counts_every_change_and_refuses_what_does_not_fit() {
    let root = temp_root("quota");
    let store = Store::open(&root).unwrap().with_default_quota(Some(100));
    let ann = "ann@x.test";
    store.create_account(ann).unwrap();
    let used = |s: &Store| s.quota(ann).unwrap().unwrap().used;
    store.deliver(ann, &[b'a'; 40]).unwrap();
    store.deliver(ann, &[b'b'; 40]).unwrap();
    assert_eq!(used(&store), 80);
    assert!(matches!(
        store.deliver(ann, &[b'c'; 40]),
        Err(StoreError::OverQuota {
            used: 80,
            limit: 100
        })
    ));
    assert!(matches!(
        store.append(ann, "Drafts", &[b'd'; 21], "", None),
        Err(StoreError::OverQuota { .. })
    ));
    let inbox = store.sync(ann, INBOX).unwrap();
    assert!(matches!(
        store.copy(ann, &inbox.messages, &[], "Trash"),
        Err(StoreError::OverQuota { .. })
    ));
    store.copy(ann, &inbox.messages[..0], &[], "Trash").unwrap();
    store.expunge(&[&inbox.messages[0]], false).unwrap();
    assert_eq!(used(&store), 40);
    store.append(ann, "Drafts", &[b'd'; 20], "", None).unwrap();
    assert_eq!(used(&store), 60);
    // A new store (a restart) counts the same from the files.
    assert_eq!(
        used(&Store::open(&root).unwrap().with_default_quota(Some(100))),
        60
    );
    store.delete_mailbox(ann, "Drafts").unwrap();
    assert_eq!(used(&store), 40);
    // Full at exactly the limit: even a size not yet known is refused.
    store.set_quota(ann, Some("40")).unwrap();
    assert!(store.check_quota(ann, 0).is_err());
    store.set_quota(ann, Some("none")).unwrap();
    assert_eq!(store.quota(ann).unwrap(), None);
    assert!(store.set_quota(ann, Some("lots")).is_err());
    store.set_quota(ann, None).unwrap();
    assert_eq!(store.quota(ann).unwrap().unwrap().limit, 100);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn uids_are_given_once_and_survive_resync() {
    let root = temp_root("uids");
    let store = Store::open(&root).unwrap();
    assert!(matches!(
        store.deliver("ann@x.test", b"x"),
        Err(StoreError::NoAccount(_))
    ));
    store.create_account("ann@x.test").unwrap();
    for i in 0..3 {
        store
            .deliver("ann@x.test", format!("m{i}").as_bytes())
            .unwrap();
    }
    let first = store.sync("ann@x.test", INBOX).unwrap();
    assert_eq!(
        first.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(fs::read(&first.messages[2].path).unwrap(), b"m2");
    // A flag change is a rename to cur/NAME:2,FLAGS: same UID.
    let m = &first.messages[0];
    let base = m.path.file_name().unwrap().to_string_lossy().into_owned();
    let flagged = m
        .path
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("cur")
        .join(format!("{base}:2,FS"));
    fs::rename(&m.path, &flagged).unwrap();
    fs::remove_file(&first.messages[1].path).unwrap();
    store.deliver("ann@x.test", b"m3").unwrap();
    let second = store.sync("ann@x.test", INBOX).unwrap();
    assert_eq!(second.uid_validity, first.uid_validity);
    let listed: Vec<(u32, &str)> = second
        .messages
        .iter()
        .map(|m| (m.uid, m.flags.as_str()))
        .collect();
    assert_eq!(listed, [(1, "FS"), (3, ""), (4, "")]);
    assert_eq!(second.next_uid, 5);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn names_sort_in_the_order_they_were_made() {
    let root = temp_root("names");
    let store = Store::open(&root).unwrap();
    let made: Vec<String> = (0..2000).map(|_| store.unique_name()).collect();
    let mut sorted = made.clone();
    sorted.sort();
    assert_eq!(sorted, made);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_copy_that_fails_leaves_the_target_as_it_was() {
    let root = temp_root("copy-undo");
    let store = Store::open(&root).unwrap();
    let ann = "ann@x.test";
    store.create_account(ann).unwrap();
    store.deliver(ann, b"one").unwrap();
    store.deliver(ann, b"two").unwrap();
    let inbox = store.sync(ann, INBOX).unwrap();
    fs::remove_file(&inbox.messages[1].path).unwrap();
    assert!(matches!(
        store.copy(ann, &inbox.messages, &[], "Trash"),
        Err(StoreError::Gone)
    ));
    assert!(store.sync(ann, "Trash").unwrap().messages.is_empty());
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_damaged_uid_list_renumbers_with_a_new_uidvalidity() {
    let root = temp_root("damaged");
    let store = Store::open(&root).unwrap();
    store.create_account("bob@x.test").unwrap();
    store.deliver("bob@x.test", b"one").unwrap();
    let before = store.sync("bob@x.test", INBOX).unwrap();
    let list = root.join("mail/bob@x.test/INBOX/uidlist");
    fs::write(&list, "garbage").unwrap();
    // No wait for the clock: the account's last UIDVALIDITY is kept.
    let after = store.sync("bob@x.test", INBOX).unwrap();
    assert_ne!(after.uid_validity, before.uid_validity);
    assert_eq!(after.messages.len(), 1);
    fs::remove_dir_all(&root).unwrap();
}

/// What a store that never saw the mailbox lists (it scans), to compare
/// with what a kept index lists.
fn scanned(root: &Path, address: &str) -> Arc<Vec<Message>> {
    Store::open(root)
        .unwrap()
        .sync(address, INBOX)
        .unwrap()
        .messages
}

#[test]
fn the_kept_index_follows_the_stores_own_changes_without_a_scan() {
    let root = temp_root("index");
    let store = Store::open(&root).unwrap();
    let ann = "ann@x.test";
    store.create_account(ann).unwrap();
    for body in [&b"one"[..], b"two", b"three"] {
        store.deliver(ann, body).unwrap();
    }
    let first = store.sync(ann, INBOX).unwrap();
    let scans = store.scans();
    // Nothing changed: the very same listing, shared.
    assert!(Arc::ptr_eq(
        &store.sync(ann, INBOX).unwrap().messages,
        &first.messages
    ));
    // Each of the store's own changes, then a sync: the index's listing
    // is what a scan finds, and no scan was made.
    let flagged = store
        .set_flags(&first.messages[0], &FlagChange::Add("S".into()))
        .unwrap();
    assert_eq!(
        store.sync(ann, INBOX).unwrap().messages,
        scanned(&root, ann)
    );
    store.append(ann, INBOX, b"four", "F", None).unwrap();
    assert_eq!(
        store.sync(ann, INBOX).unwrap().messages,
        scanned(&root, ann)
    );
    store.copy(ann, &[flagged], &[], INBOX).unwrap();
    store.expunge(&[&first.messages[1]], false).unwrap();
    store.keyword_letters(ann, INBOX, &["$Label1"]).unwrap();
    let now = store.sync_claiming_recent(ann, INBOX).unwrap();
    assert_eq!(now.messages, scanned(&root, ann));
    let uids: Vec<u32> = now.messages.iter().map(|m| m.uid).collect();
    assert_eq!(uids, [1, 3, 4, 5]);
    assert_eq!(now.keywords, ["$Label1"]);
    assert_eq!(store.scans(), scans, "no change above needed a scan");
    // A copy with a keyword into a mailbox whose index is kept: the
    // target learns the keyword's name (its own letter for it).
    let drafts = store.sync(ann, "Drafts").unwrap();
    assert!(drafts.keywords.is_empty());
    let scans = store.scans();
    let labelled = store
        .set_flags(&now.messages[0], &FlagChange::Add("a".into()))
        .unwrap();
    store
        .copy(ann, &[labelled], &now.keywords, "Drafts")
        .unwrap();
    let drafts = store.sync(ann, "Drafts").unwrap();
    assert_eq!(drafts.keywords, ["$Label1"]);
    assert_eq!(drafts.messages[0].flags, "Sa");
    assert_eq!(store.scans(), scans, "no change above needed a scan");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_change_from_outside_the_store_is_found_by_a_scan() {
    let root = temp_root("outside");
    let store = Store::open(&root).unwrap();
    let ann = "ann@x.test";
    store.create_account(ann).unwrap();
    store.deliver(ann, b"one").unwrap();
    store.sync(ann, INBOX).unwrap();
    let scans = store.scans();
    // A file dropped into new/ from outside moves new/'s modification
    // time (set here far from now, as a coarse clock could leave it).
    let new = root.join("mail/ann@x.test/INBOX/new");
    fs::write(new.join("1.outside"), b"three").unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
    fs::File::open(&new).unwrap().set_modified(old).unwrap();
    let seen = store.sync(ann, INBOX).unwrap();
    assert_eq!(store.scans(), scans + 1);
    assert_eq!(seen.messages.len(), 2);
    assert_eq!(
        seen.messages[1].size, 5,
        "sized by a stat: no ,S= in its name"
    );
    // The store's own names carry the size.
    assert!(
        seen.messages[0].base().ends_with(",S=3"),
        "{:?}",
        seen.messages[0]
    );
    // An index that missed a change does not take the next one of ours:
    // flags changed from outside, then a delivery through the store.
    let renamed = seen.messages[0]
        .path
        .with_file_name(format!("{}:2,S", seen.messages[0].base()));
    fs::rename(&seen.messages[0].path, root.join(&renamed)).unwrap();
    let cur = root.join("mail/ann@x.test/INBOX/cur");
    fs::File::open(&cur).unwrap().set_modified(old).unwrap();
    store.deliver(ann, b"two").unwrap();
    let after = store.sync(ann, INBOX).unwrap();
    assert_eq!(after.messages, scanned(&root, ann));
    assert_eq!(after.messages[0].flags, "S");
    fs::remove_dir_all(&root).unwrap();
}
