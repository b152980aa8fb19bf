//! UID ranges: the short form answers use (`1:3,5`), what a sequence set
//! names, and what of a range is missing. Kept as ranges so a client's
//! `1:4294967295` costs one entry, not four billion.
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// Inclusive ranges, ascending and apart.
pub type Ranges = Vec<(u32, u32)>;

/// The runs of `uids` (ascending).
pub fn runs(uids: &[u32]) -> Ranges {
    let mut out: Ranges = Vec::new();
    for &uid in uids {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(uid) => last.1 = uid,
            _ => out.push((uid, uid)),
        }
    }
    out
}

/// `1:3,5` for [(1, 3), (5, 5)].
pub fn render(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a set names, `*` standing for `largest`, within `1..=limit`.
pub fn of_set(set: &SequenceSet, largest: u32, limit: u32) -> Ranges {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    let mut all: Ranges = set
        .0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(v) => (value(v), value(v)),
            Sequence::Range(a, b) => (value(a).min(value(b)), value(a).max(value(b))),
        })
        .filter(|r| r.0 <= limit)
        .map(|(a, b)| (a.max(1), b.min(limit)))
        .collect();
    all.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(all.len());
    for (a, b) in all {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Whether `n` is in `ranges`.
pub fn contains(ranges: &[(u32, u32)], n: u32) -> bool {
    let i = ranges.partition_point(|r| r.1 < n);
    ranges.get(i).is_some_and(|r| r.0 <= n)
}

/// `ranges` less the UIDs in `present` (ascending).
pub fn without(ranges: &[(u32, u32)], present: &[u32]) -> Ranges {
    let mut out = Vec::new();
    for &(lo, hi) in ranges {
        let mut start = Some(lo);
        let from = present.partition_point(|&u| u < lo);
        for &u in present[from..].iter().take_while(|&&u| u <= hi) {
            if let Some(s) = start.filter(|&s| s < u) {
                out.push((s, u - 1));
            }
            start = u.checked_add(1);
        }
        if let Some(s) = start.filter(|&s| s <= hi) {
            out.push((s, hi));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> SequenceSet {
        SequenceSet::try_from(text).unwrap()
    }

    #[test]
    fn ranges_compress_name_and_subtract() {
        assert_eq!(render(&runs(&[1, 2, 3, 5, 7, 8])), "1:3,5,7:8");
        assert_eq!(render(&runs(&[4])), "4");
        assert_eq!(
            render(&runs(&[u32::MAX - 1, u32::MAX])),
            "4294967294:4294967295"
        );
        // Overlaps merge, `*` is the largest, the limit clips.
        assert_eq!(of_set(&set("5:3,4:9,20,*"), 12, 15), vec![(3, 9), (12, 12)]);
        assert_eq!(of_set(&set("1:4294967295"), 1, 10), vec![(1, 10)]);
        assert!(contains(&[(3, 9), (12, 12)], 12) && !contains(&[(3, 9)], 10));
        assert_eq!(without(&[(1, 10)], &[1, 4, 5, 10]), vec![(2, 3), (6, 9)]);
        assert_eq!(
            without(&[(1, 3), (7, 9)], &[8]),
            vec![(1, 3), (7, 7), (9, 9)]
        );
        assert_eq!(
            without(&[(5, u32::MAX)], &[u32::MAX]),
            vec![(5, u32::MAX - 1)]
        );
        assert_eq!(without(&[(2, 2)], &[2]), vec![]);
    }
}
