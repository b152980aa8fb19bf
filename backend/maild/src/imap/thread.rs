//! THREAD (RFC 5256): ORDEREDSUBJECT, messages grouped by base subject;
//! and REFERENCES, the conversation tree the References and In-Reply-To
//! headers describe (section 3, steps 1 to 6), with threads that lost
//! their common parent joined again by subject. The answer's thread list:
//! a parent then its only child, or its children each in parentheses.
use std::{
    collections::{HashMap, HashSet},
    fmt::Write,
};

use crate::imap::sort::Keys;

/// Sent-date order (section 2.2), ties in mailbox order.
fn by_date(a: &Keys, b: &Keys) -> std::cmp::Ordering {
    a.date.cmp(&b.date).then(a.position.cmp(&b.position))
}

/// THREAD=ORDEREDSUBJECT: messages grouped by base subject, each group in
/// sent-date order with the first as the parent of the rest, groups in the
/// order of their first message's date.
pub fn ordered_subject(mut messages: Vec<Keys>) -> String {
    messages.sort_by(|a, b| a.subject.cmp(&b.subject).then_with(|| by_date(a, b)));
    let mut threads: Vec<Vec<Keys>> = Vec::new();
    for m in messages {
        match threads.last_mut() {
            Some(t) if t[0].subject == m.subject => t.push(m),
            _ => threads.push(vec![m]),
        }
    }
    threads.sort_by(|a, b| by_date(&a[0], &b[0]));
    let mut tree = Tree::default();
    let roots = threads
        .into_iter()
        .map(|t| {
            let mut members = t.into_iter().map(|m| tree.node(Some(m)));
            let first = members.next().expect("a group has a message");
            tree.nodes[first].children = members.collect();
            first
        })
        .collect::<Vec<_>>();
    tree.write(&roots)
}

/// THREAD=REFERENCES.
pub fn references(mut messages: Vec<Keys>) -> String {
    // A Message-ID used twice belongs to the first message that has it.
    messages.sort_by_key(|m| m.position);
    let mut tree = Tree::default();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for m in messages {
        let own = match m.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&n) if tree.nodes[n].message.is_none() => n,
                Some(_) => tree.node(None),
                None => {
                    let n = tree.node(None);
                    by_id.insert(id.to_string(), n);
                    n
                }
            },
            None => tree.node(None),
        };
        // Step 1A: the references, each the parent of the next, where
        // the next has no parent yet and no loop would be made.
        let chain: Vec<usize> = m
            .references
            .iter()
            .map(|id| *by_id.entry(id.clone()).or_insert_with(|| tree.node(None)))
            .collect();
        tree.nodes[own].message = Some(m);
        for pair in chain.windows(2) {
            let (parent, child) = (pair[0], pair[1]);
            if tree.nodes[child].parent.is_none() && !tree.descends(parent, child) {
                tree.link(parent, child);
            }
        }
        // Step 1B: the last reference is the message's parent, replacing
        // one a truncated References of another message made.
        tree.unlink(own);
        if let Some(&parent) = chain.last()
            && !tree.descends(parent, own)
        {
            tree.link(parent, own);
        }
    }
    // Step 2: the messages with no parent are the root's children.
    let roots: Vec<usize> = (0..tree.nodes.len())
        .filter(|&n| tree.nodes[n].parent.is_none())
        .collect();
    // Step 3, then 4 (the root's children by date), 5 and 6.
    let mut roots = tree.prune(roots, true);
    tree.sort_siblings(&mut roots);
    let mut roots = tree.join_by_subject(roots);
    tree.sort_all(&mut roots);
    tree.write(&roots)
}

#[derive(Default)]
struct Node {
    /// None: a dummy, for a message referred to but not in the set.
    message: Option<Keys>,
    parent: Option<usize>,
    children: Vec<usize>,
}

#[derive(Default)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn node(&mut self, message: Option<Keys>) -> usize {
        self.nodes.push(Node {
            message,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    fn dummy(&self, n: usize) -> bool {
        self.nodes[n].message.is_none()
    }

    /// Whether `a` is `b` or below it.
    fn descends(&self, mut a: usize, b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.nodes[a].parent {
                Some(p) => a = p,
                None => return false,
            }
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(parent) = self.nodes[child].parent.take() {
            self.nodes[parent].children.retain(|&c| c != child);
        }
    }

    /// Step 3: dummies go; their children take their place, except that
    /// a dummy at the top with several children stays (its children
    /// would each become a thread of their own).
    fn prune(&mut self, list: Vec<usize>, top: bool) -> Vec<usize> {
        let mut kept = Vec::new();
        for n in list {
            let children = std::mem::take(&mut self.nodes[n].children);
            let children = self.prune(children, false);
            if self.dummy(n) && (!top || children.len() <= 1) {
                kept.extend(children);
            } else {
                self.nodes[n].children = children;
                kept.push(n);
            }
        }
        kept
    }

    /// The message a node sorts and is named by: its own, or a dummy's
    /// first child's (its children sorted first).
    fn face(&self, n: usize) -> Option<&Keys> {
        match &self.nodes[n].message {
            Some(m) => Some(m),
            None => self.nodes[n].children.first().and_then(|&c| self.face(c)),
        }
    }

    fn sort_siblings(&mut self, list: &mut [usize]) {
        for &n in list.iter() {
            if self.dummy(n) {
                let mut children = std::mem::take(&mut self.nodes[n].children);
                self.sort_siblings(&mut children);
                self.nodes[n].children = children;
            }
        }
        list.sort_by(|&a, &b| match (self.face(a), self.face(b)) {
            (Some(a), Some(b)) => by_date(a, b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        });
    }

    /// Step 6: every set of siblings by date, the deepest first.
    fn sort_all(&mut self, list: &mut [usize]) {
        for &n in list.iter() {
            let mut children = std::mem::take(&mut self.nodes[n].children);
            self.sort_all(&mut children);
            self.nodes[n].children = children;
        }
        self.sort_siblings(list);
    }

    /// The base subject a top-level thread is known by, and whether its
    /// message is a reply or forward.
    fn subject(&self, n: usize) -> (&str, bool) {
        self.face(n)
            .map_or(("", false), |m| (m.subject.as_str(), m.reply))
    }

    /// Step 5: top-level threads with the same base subject are joined.
    fn join_by_subject(&mut self, roots: Vec<usize>) -> Vec<usize> {
        // 5B: per subject the thread the others join: a dummy first, then
        // one that is not a reply.
        let mut table: HashMap<String, usize> = HashMap::new();
        for &n in &roots {
            let (subject, reply) = self.subject(n);
            if subject.is_empty() {
                continue;
            }
            match table.get(subject) {
                None => {
                    table.insert(subject.to_string(), n);
                }
                Some(&old) => {
                    let old_reply = self.subject(old).1;
                    if !self.dummy(old) && (self.dummy(n) || (old_reply && !reply)) {
                        table.insert(subject.to_string(), n);
                    }
                }
            }
        }
        // 5C: the merge.
        let mut kept: Vec<usize> = Vec::new();
        let mut placed: HashSet<usize> = HashSet::new();
        for n in roots {
            if placed.contains(&n) {
                continue;
            }
            let (subject, reply) = self.subject(n);
            let subject = subject.to_string();
            let Some(&head) = table.get(&subject).filter(|_| !subject.is_empty()) else {
                kept.push(n);
                continue;
            };
            if head == n {
                kept.push(n);
                continue;
            }
            let head_reply = self.subject(head).1;
            match (self.dummy(head), self.dummy(n)) {
                (true, true) => {
                    let children = std::mem::take(&mut self.nodes[n].children);
                    for c in children {
                        self.link(head, c);
                    }
                }
                (true, false) => self.link(head, n),
                _ if reply && !head_reply => self.link(head, n),
                _ => {
                    let dummy = self.node(None);
                    self.link(dummy, head);
                    self.link(dummy, n);
                    table.insert(subject, dummy);
                    placed.insert(head);
                    kept.retain(|&k| k != head);
                    kept.push(dummy);
                }
            }
        }
        kept
    }

    /// The thread list: each top-level thread in parentheses.
    fn write(&self, roots: &[usize]) -> String {
        let mut out = String::new();
        for &n in roots {
            out.push('(');
            self.write_member(n, &mut out);
            out.push(')');
        }
        out
    }

    fn write_member(&self, n: usize, out: &mut String) {
        let node = &self.nodes[n];
        if let Some(m) = &node.message {
            let _ = write!(out, "{}", m.id);
        }
        match node.children.as_slice() {
            [] => {}
            [only] if node.message.is_some() => {
                out.push(' ');
                self.write_member(*only, out);
            }
            children => {
                if node.message.is_some() {
                    out.push(' ');
                }
                for &c in children {
                    out.push('(');
                    self.write_member(c, out);
                    out.push(')');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
