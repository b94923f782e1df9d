//! `heap diff`: growth by class between two snapshots, and memlab's three-snapshot method
//! (objects allocated between baseline and target that are still alive in the final one),
//! matched by V8 object id, which is stable across snapshots of one process.

use std::collections::HashMap;

use crate::graph::{reachable, Analysis, PathStep};
use crate::snapshot::{NodeIndex, Snapshot};
use crate::summary::top_by_retained;

/// The live objects of one snapshot, kept small so the snapshot itself can be dropped:
/// `(id, class, self size)` sorted by id, and the class names.
#[derive(Debug)]
pub struct Census {
    objects: Vec<(u32, u32, u64)>,
    classes: Vec<String>,
}

impl Census {
    /// The reachable objects of `snap`.
    pub fn new(snap: &Snapshot) -> Census {
        let live = reachable(snap);
        let mut index: HashMap<u32, u32> = HashMap::new();
        let mut classes = Vec::new();
        let mut objects = Vec::new();
        for v in 0..snap.node_count() as u32 {
            if !live[v as usize] {
                continue;
            }
            let key = snap.class_key(v);
            let class = *index.entry(key).or_insert_with(|| {
                classes.push(snap.class_name_of(key).into_owned());
                classes.len() as u32 - 1
            });
            objects.push((snap.id(v), class, snap.self_size(v)));
        }
        objects.sort_unstable_by_key(|o| o.0);
        Census { objects, classes }
    }

    /// Live objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are no live objects.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn position(&self, id: u32) -> Option<usize> {
        self.objects.binary_search_by_key(&id, |o| o.0).ok()
    }

    /// Whether an object with this id is alive.
    pub fn contains(&self, id: u32) -> bool {
        self.position(id).is_some()
    }
}

/// How one class changed between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassDelta {
    /// Constructor name or `(type)`.
    pub name: String,
    /// Live objects before.
    pub count_before: u64,
    /// Live objects after.
    pub count_after: u64,
    /// Self sizes before, in bytes.
    pub bytes_before: u64,
    /// Self sizes after, in bytes.
    pub bytes_after: u64,
    /// Objects alive after whose id was not alive before.
    pub new_count: u64,
    /// Their bytes.
    pub new_bytes: u64,
    /// Objects alive before whose id is gone after.
    pub freed_count: u64,
    /// Their bytes.
    pub freed_bytes: u64,
}

impl ClassDelta {
    /// Growth in bytes (negative when it shrank).
    pub fn byte_delta(&self) -> i128 {
        i128::from(self.bytes_after) - i128::from(self.bytes_before)
    }

    /// Growth in objects.
    pub fn count_delta(&self) -> i128 {
        i128::from(self.count_after) - i128::from(self.count_before)
    }
}

/// What grew between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoWayDiff {
    /// Live objects before.
    pub count_before: u64,
    /// Live objects after.
    pub count_after: u64,
    /// Live bytes before.
    pub bytes_before: u64,
    /// Live bytes after.
    pub bytes_after: u64,
    /// The classes that grew in bytes, most first (at most `top`).
    pub grew: Vec<ClassDelta>,
}

/// Compares the live objects of `before` and `after` by class.
pub fn diff_two(before: &Census, after: &Census, top: usize) -> TwoWayDiff {
    let mut rows: HashMap<&str, ClassDelta> = HashMap::new();
    let mut matched = vec![false; before.objects.len()];
    for &(id, class, size) in &after.objects {
        let name = after.classes[class as usize].as_str();
        let row = rows.entry(name).or_default();
        row.count_after += 1;
        row.bytes_after += size;
        match before.position(id) {
            Some(i) => matched[i] = true,
            None => {
                row.new_count += 1;
                row.new_bytes += size;
            }
        }
    }
    for (i, &(_, class, size)) in before.objects.iter().enumerate() {
        let row = rows
            .entry(before.classes[class as usize].as_str())
            .or_default();
        row.count_before += 1;
        row.bytes_before += size;
        if !matched[i] {
            row.freed_count += 1;
            row.freed_bytes += size;
        }
    }
    let mut grew: Vec<ClassDelta> = rows
        .into_iter()
        .map(|(name, mut row)| {
            row.name = name.to_owned();
            row
        })
        .filter(|row| row.byte_delta() > 0 || row.count_delta() > 0)
        .collect();
    grew.sort_by(|a, b| {
        b.byte_delta()
            .cmp(&a.byte_delta())
            .then(b.count_delta().cmp(&a.count_delta()))
            .then(a.name.cmp(&b.name))
    });
    grew.truncate(top);
    TwoWayDiff {
        count_before: before.objects.len() as u64,
        count_after: after.objects.len() as u64,
        bytes_before: before.objects.iter().map(|o| o.2).sum(),
        bytes_after: after.objects.iter().map(|o| o.2).sum(),
        grew,
    }
}

/// One leak suspect: an object of the final snapshot, with its retainer path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// Its position in the final snapshot.
    pub node: NodeIndex,
    /// V8's object id.
    pub id: u32,
    /// How DevTools shows it.
    pub name: String,
    /// Bytes.
    pub self_size: u64,
    /// Bytes.
    pub retained_size: u64,
    /// A shortest retainer path from the GC roots in the final snapshot.
    pub path: Vec<PathStep>,
}

/// Leak suspects of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspectClass {
    /// Constructor name or `(type)`.
    pub name: String,
    /// Suspects of the class.
    pub count: u64,
    /// Their self sizes, in bytes.
    pub self_size: u64,
    /// Bytes they retain, nested members counted once.
    pub retained_size: u64,
    /// The member that retains the most.
    pub example: Suspect,
}

/// Leak suspects that share a retainer path (element indices left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGroup {
    /// The shared path: classes and edge names.
    pub signature: String,
    /// Outermost suspects on this path (not held by another suspect).
    pub count: u64,
    /// Bytes they retain.
    pub retained_size: u64,
    /// The member that retains the most.
    pub example: Suspect,
}

/// memlab's method over baseline A, target B, final C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreeWayDiff {
    /// Objects alive in B that were not alive in A.
    pub new_in_target: u64,
    /// Of those, how many are still alive in C: the suspects.
    pub suspects: u64,
    /// The suspects' self sizes, in bytes.
    pub suspect_self_size: u64,
    /// Bytes retained by the suspects in C, nested suspects counted once.
    pub suspect_retained_size: u64,
    /// Suspects by class, most retained first.
    pub by_class: Vec<SuspectClass>,
    /// Outermost suspects by retainer path, most retained first.
    pub by_path: Vec<PathGroup>,
}

fn suspect(snap: &Snapshot, analysis: &Analysis, v: NodeIndex) -> Suspect {
    Suspect {
        node: v,
        id: snap.id(v),
        name: snap.display_name(v),
        self_size: snap.self_size(v),
        retained_size: analysis.retained(v),
        path: analysis.retainer_path(v),
    }
}

/// The path of a node with ids and element indices left out, for grouping.
fn signature(snap: &Snapshot, path: &[PathStep]) -> String {
    let mut out = String::new();
    for (i, step) in path.iter().enumerate() {
        if i > 0 {
            out.push_str(" → ");
        }
        if let Some(edge) = step.edge {
            let mut label = snap.edge_label_generic(edge);
            if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
                label = "[]".into();
            }
            if label != "[]" {
                out.push('.');
            }
            out.push_str(&label);
            out.push(' ');
        }
        out.push_str(&snap.class_name(step.node));
    }
    out
}

/// Objects alive in `target` but not `baseline` that are still reachable in `last`.
pub fn diff_three(
    baseline: &Census,
    target: &Census,
    last: &Snapshot,
    analysis: &Analysis,
    top: usize,
) -> ThreeWayDiff {
    let is_new = |id: u32| target.contains(id) && !baseline.contains(id);
    let new_in_target = target
        .objects
        .iter()
        .filter(|o| !baseline.contains(o.0))
        .count() as u64;
    let n = last.node_count();
    let member: Vec<bool> = (0..n as u32)
        .map(|v| v != 0 && analysis.is_reachable(v) && is_new(last.id(v)))
        .collect();
    let mut per_class: HashMap<u32, (u64, u64)> = HashMap::new();
    for v in 0..n as u32 {
        if member[v as usize] {
            let e = per_class.entry(last.class_key(v)).or_default();
            e.0 += 1;
            e.1 += last.self_size(v);
        }
    }
    let class_retained = analysis.group_retained(last.class_key_count(), |v| {
        member[v as usize].then(|| last.class_key(v))
    });
    let outermost = analysis.outermost(|v| member[v as usize]);
    let suspect_retained_size = outermost.iter().map(|&v| analysis.retained(v)).sum();

    let mut classes: Vec<(u32, u64, u64)> = per_class
        .iter()
        .map(|(&k, &(count, size))| (k, count, size))
        .collect();
    classes.sort_by(|a, b| {
        class_retained[b.0 as usize]
            .cmp(&class_retained[a.0 as usize])
            .then(b.1.cmp(&a.1))
            .then(a.0.cmp(&b.0))
    });
    classes.truncate(top);
    let by_class = classes
        .into_iter()
        .map(|(key, count, self_size)| {
            let best = top_by_retained(last, analysis, 1, |v| {
                member[v as usize] && last.class_key(v) == key
            });
            let example = suspect(last, analysis, best.first().copied().unwrap_or(0));
            SuspectClass {
                name: last.class_name_of(key).into_owned(),
                count,
                self_size,
                retained_size: class_retained[key as usize],
                example,
            }
        })
        .collect();

    let mut groups: HashMap<String, (u64, u64, NodeIndex)> = HashMap::new();
    for &v in &outermost {
        let path = analysis.retainer_path(v);
        let g = groups.entry(signature(last, &path)).or_insert((0, 0, v));
        g.0 += 1;
        g.1 += analysis.retained(v);
        if analysis.retained(v) > analysis.retained(g.2) {
            g.2 = v;
        }
    }
    let mut by_path: Vec<PathGroup> = groups
        .into_iter()
        .map(|(signature, (count, retained_size, best))| PathGroup {
            signature,
            count,
            retained_size,
            example: suspect(last, analysis, best),
        })
        .collect();
    by_path.sort_by(|a, b| {
        b.retained_size
            .cmp(&a.retained_size)
            .then(b.count.cmp(&a.count))
            .then(a.signature.cmp(&b.signature))
    });
    by_path.truncate(top);

    ThreeWayDiff {
        new_in_target,
        suspects: member.iter().filter(|&&m| m).count() as u64,
        suspect_self_size: per_class.values().map(|c| c.1).sum(),
        suspect_retained_size,
        by_class,
        by_path,
    }
}
