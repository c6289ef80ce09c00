use super::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("usage-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn append(p: &Path, s: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// What copytruncate does to the original after copying it.
fn truncate(p: &Path) {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p)
        .unwrap();
}

fn gzip(p: &Path) -> PathBuf {
    let gz = PathBuf::from(format!("{}.gz", p.display()));
    let mut e = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
    e.write_all(&std::fs::read(p).unwrap()).unwrap();
    e.finish().unwrap();
    std::fs::remove_file(p).unwrap();
    gz
}

/// Lines and skipped kinds, as strings (forcing a fresh look at the folder first).
fn drain(f: &mut Follower) -> Vec<String> {
    f.last_scan = None;
    let mut out = Vec::new();
    f.poll(usize::MAX, &mut |it| match it {
        Item::Line { bytes, .. } => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Item::Skipped { kind, .. } => out.push(format!("<{}>", kind.name())),
    })
    .unwrap();
    out
}

/// What the state file would say with nothing held in memory.
fn saved(f: &Follower) -> Option<Saved> {
    Some(Saved::Files(f.marks(&HashMap::new())))
}

#[test]
fn lines_positions_and_partial_lines() {
    let d = tmpdir("lines");
    let p = d.join("access.log");
    append(&p, "a\nbb\nc");
    let mut f = Follower::new(&p, None, &[]);
    let mut got = Vec::new();
    f.poll(10, &mut |it| {
        if let Item::Line { start, bytes } = it {
            got.push((
                start.offset,
                start.offset + bytes.len() as u64 + 1,
                bytes.to_vec(),
            ));
        }
    })
    .unwrap();
    assert_eq!(got, vec![(0, 2, b"a".to_vec()), (2, 5, b"bb".to_vec())]);
    append(&p, "c\n\n");
    assert_eq!(drain(&mut f), ["cc"]);
    assert_eq!(f.backlog().0, 0);
    assert_eq!(f.backlog().1, 0);
}

#[test]
fn a_file_without_a_complete_first_line_waits() {
    let d = tmpdir("wait");
    let p = d.join("access.log");
    append(&p, "{\"partial");
    let mut f = Follower::new(&p, None, &[]);
    assert!(drain(&mut f).is_empty());
    append(&p, "\"}\nnext\n");
    assert_eq!(drain(&mut f), ["{\"partial\"}", "next"]);
}

#[test]
fn rotation_by_rename_reads_the_old_file_to_its_end_first() {
    let d = tmpdir("rename");
    let p = d.join("access.log");
    append(&p, "1\n2\n");
    let mut f = Follower::new(&p, None, &[]);
    assert_eq!(drain(&mut f), ["1", "2"]);
    append(&p, "3\n");
    std::fs::rename(&p, d.join("access.log.1")).unwrap();
    append(&d.join("access.log.1"), "4\n5");
    assert_eq!(drain(&mut f), ["3", "4", "<partial>"]);
    append(&p, "6\n");
    assert_eq!(drain(&mut f), ["6"]);
    append(&p, "7\n");
    assert_eq!(drain(&mut f), ["7"]);
}

#[test]
fn two_renames_while_stalled_read_every_file_oldest_first() {
    let d = tmpdir("stalled");
    let p = d.join("access.log");
    append(&p, "a1\n");
    let mut f = Follower::new(&p, None, &[]);
    assert_eq!(drain(&mut f), ["a1"]);
    // Caddy's names, while the agent does not look.
    append(&p, "a2\n");
    std::fs::rename(&p, d.join("access-2026-12-06T05-00-00.000.log")).unwrap();
    append(&p, "b1\nb2\n");
    std::fs::rename(&p, d.join("access-2026-12-06T05-00-01.000.log")).unwrap();
    append(&p, "c1\n");
    assert_eq!(drain(&mut f), ["a2", "b1", "b2", "c1"]);
    assert_eq!(f.backlog().1, 0);
}

#[test]
fn a_restart_reads_the_rolled_files_it_had_not_finished_plain_and_gzip() {
    let d = tmpdir("restart");
    let p = d.join("access.log");
    append(&p, "a1\na2\n");
    let mut f = Follower::new(&p, None, &[]);
    f.poll(1, &mut |_| {}).unwrap();
    let state = saved(&f);
    drop(f);
    // Stopped: two rolls (the first gzipped, as Caddy does), and a live file.
    append(&p, "a3\n");
    let a = d.join("access-2026-12-06T05-00-00.000.log");
    std::fs::rename(&p, &a).unwrap();
    gzip(&a);
    append(&p, "b1\n");
    std::fs::rename(&p, d.join("access-2026-12-06T05-00-01.000.log")).unwrap();
    append(&p, "c1\n");
    let mut f = Follower::new(&p, state, &[]);
    assert_eq!(drain(&mut f), ["a2", "a3", "b1", "c1"]);
    // Everything read and saved: a second restart reads nothing again, gzip included.
    let state = saved(&f);
    let mut f = Follower::new(&p, state, &[]);
    assert!(drain(&mut f).is_empty());
    assert_eq!(f.backlog().1, 0);
}

#[test]
fn the_state_file_and_other_names_are_never_logs() {
    let d = tmpdir("exclude");
    let p = d.join("access.log");
    let st = d.join("access.log.1"); // a state file with a rolled file's name
    append(&st, "{\"version\":2}\n");
    append(&d.join("other.log"), "x\n");
    append(&p, "a\n");
    let mut f = Follower::new(&p, None, std::slice::from_ref(&st));
    assert_eq!(drain(&mut f), ["a"]);
}

#[test]
fn copy_truncate_while_running_reads_only_the_new_lines() {
    let d = tmpdir("truncate");
    let p = d.join("access.log");
    append(&p, "one\ntwo\n");
    let mut f = Follower::new(&p, None, &[]);
    assert_eq!(drain(&mut f), ["one", "two"]);
    std::fs::copy(&p, d.join("access.log.1")).unwrap();
    truncate(&p);
    append(&p, "x\n");
    assert_eq!(drain(&mut f), ["x"]);
}

#[test]
fn copy_truncate_while_stalled_reads_the_rest_from_the_copy() {
    let d = tmpdir("truncate-stalled");
    let p = d.join("access.log");
    append(&p, "one\ntwo\n");
    let mut f = Follower::new(&p, None, &[]);
    f.poll(1, &mut |_| {}).unwrap();
    // Not read yet: "two", "three". The new content grows past the old read position.
    append(&p, "three\n");
    std::fs::copy(&p, d.join("access.log.1")).unwrap();
    truncate(&p);
    append(&p, "new line 1, long enough\nnew 2\n");
    assert_eq!(
        drain(&mut f),
        ["two", "three", "new line 1, long enough", "new 2"]
    );
    assert!(f.lost_bytes.is_empty());
}

#[test]
fn a_truncation_without_a_copy_and_a_deleted_rolled_file_are_counted_lost() {
    let d = tmpdir("lost");
    let p = d.join("access.log");
    append(&p, "one\ntwo\n");
    let mut f = Follower::new(&p, None, &[]);
    f.poll(1, &mut |_| {}).unwrap();
    // "two" was read before the truncation; "three" was seen (a look at the folder), not read.
    append(&p, "three\n");
    f.scan();
    truncate(&p);
    append(&p, "x\n");
    assert_eq!(drain(&mut f), ["two", "x"]);
    assert_eq!(f.lost_bytes.get("truncated_unread"), Some(&6));
    assert!(f.notes.iter().any(|n| n.contains("lost 6 bytes")));
    // A rolled file seen but deleted before it was read.
    let mut g = Follower::new(&p, saved(&f), &[]);
    std::fs::rename(&p, d.join("access.log.1")).unwrap();
    append(&p, "y\n");
    g.scan();
    std::fs::remove_file(d.join("access.log.1")).unwrap();
    append(&d.join("access.log.2"), "unrelated first line\n");
    std::fs::remove_file(d.join("access.log.2")).unwrap();
    assert_eq!(drain(&mut g), ["y"]);
    assert_eq!(
        g.lost_bytes.get("deleted_unread"),
        None,
        "x was read: nothing lost"
    );
    let mut h = Follower::new(&p, None, &[]);
    append(&d.join("access.log.1"), "r1\nr2\n");
    h.scan();
    std::fs::remove_file(d.join("access.log.1")).unwrap();
    assert_eq!(drain(&mut h), ["y"]);
    assert_eq!(h.lost_bytes.get("deleted_unread"), Some(&6));
}

#[test]
fn the_first_state_format_resumes_by_inode() {
    let d = tmpdir("v1");
    let p = d.join("access.log");
    append(&d.join("access.log.1"), "old\n");
    append(&p, "a\nb\n");
    let ino = std::fs::metadata(&p).unwrap().ino();
    let dev = std::fs::metadata(&p).unwrap().dev();
    let saved = Some(Saved::Inode {
        dev,
        ino,
        offset: 2,
    });
    let mut f = Follower::new(&p, saved, &[]);
    assert_eq!(drain(&mut f), ["b"]);
}

#[test]
fn an_overlong_line_is_skipped() {
    let d = tmpdir("long");
    let p = d.join("access.log");
    append(&p, &format!("{}\nok\n", "x".repeat(MAX_LINE + 10)));
    let mut f = Follower::new(&p, None, &[]);
    assert_eq!(drain(&mut f), ["<too_long>", "ok"]);
}
