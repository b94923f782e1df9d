//! `heap summary`: totals, constructors by retained size and by count, the largest objects.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::graph::{Analysis, PathStep};
use crate::snapshot::{NodeIndex, Snapshot};

/// Count and bytes of one node type (`object`, `string`, `closure`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRow {
    /// The type name from the header.
    pub name: String,
    /// Reachable nodes of this type.
    pub count: u64,
    /// Their self sizes, in bytes.
    pub self_size: u64,
}

/// One class (constructor, or `(type)` for non-objects), DevTools' Summary view row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRow {
    /// Constructor name, or `(string)`, `(closure)`, `(system)`, ….
    pub name: String,
    /// Reachable objects of the class.
    pub count: u64,
    /// Sum of their self sizes, in bytes.
    pub self_size: u64,
    /// Bytes retained by the class, nested members counted once.
    pub retained_size: u64,
}

/// One of the objects with the largest retained sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeObject {
    /// Its position in the snapshot.
    pub node: NodeIndex,
    /// V8's object id (`@id` in DevTools).
    pub id: u32,
    /// How DevTools shows it.
    pub name: String,
    /// Its class.
    pub class: String,
    /// Bytes.
    pub self_size: u64,
    /// Bytes.
    pub retained_size: u64,
    /// A shortest retainer path from the GC roots.
    pub path: Vec<PathStep>,
}

/// What `plimsoll heap summary` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// All nodes in the file.
    pub nodes: u64,
    /// All edges in the file.
    pub edges: u64,
    /// Self sizes of all nodes, in bytes.
    pub total_self_size: u64,
    /// Nodes reachable from the root over non-weak edges.
    pub reachable_nodes: u64,
    /// Their self sizes (the root's retained size), in bytes.
    pub reachable_self_size: u64,
    /// Reachable nodes by type, largest first.
    pub by_type: Vec<TypeRow>,
    /// Top classes by retained size.
    pub by_retained: Vec<ClassRow>,
    /// Top classes by count.
    pub by_count: Vec<ClassRow>,
    /// The objects with the largest retained sizes (synthetic nodes left out).
    pub largest: Vec<LargeObject>,
}

/// Per-class totals over reachable nodes, indexed by class key.
pub(crate) fn class_rows(snap: &Snapshot, analysis: &Analysis) -> Vec<ClassRow> {
    let keys = snap.class_key_count();
    let mut count = vec![0u64; keys];
    let mut self_size = vec![0u64; keys];
    for v in 0..snap.node_count() as u32 {
        if analysis.is_reachable(v) {
            let k = snap.class_key(v) as usize;
            count[k] += 1;
            self_size[k] += snap.self_size(v);
        }
    }
    let retained = analysis.group_retained(keys, |v| Some(snap.class_key(v)));
    (0..keys)
        .filter(|&k| count[k] > 0)
        .map(|k| ClassRow {
            name: snap.class_name_of(k as u32).into_owned(),
            count: count[k],
            self_size: self_size[k],
            retained_size: retained[k],
        })
        .collect()
}

/// The `top` nodes by retained size among those `keep` accepts, largest first.
pub(crate) fn top_by_retained(
    snap: &Snapshot,
    analysis: &Analysis,
    top: usize,
    keep: impl Fn(NodeIndex) -> bool,
) -> Vec<NodeIndex> {
    let mut heap = BinaryHeap::with_capacity(top + 1);
    for v in 0..snap.node_count() as u32 {
        if !keep(v) {
            continue;
        }
        heap.push(Reverse((analysis.retained(v), Reverse(v))));
        if heap.len() > top {
            heap.pop();
        }
    }
    let mut out: Vec<_> = heap
        .into_iter()
        .map(|Reverse((r, Reverse(v)))| (r, v))
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    out.into_iter().map(|(_, v)| v).collect()
}

/// Summarises one snapshot; `top` bounds each list.
pub fn summarize(snap: &Snapshot, analysis: &Analysis, top: usize) -> Summary {
    let types = snap.node_type_names.len();
    let mut type_count = vec![0u64; types];
    let mut type_size = vec![0u64; types];
    let mut total_self_size = 0;
    for v in 0..snap.node_count() as u32 {
        total_self_size += snap.self_size(v);
        if analysis.is_reachable(v) {
            let t = snap.type_index(v) as usize;
            type_count[t] += 1;
            type_size[t] += snap.self_size(v);
        }
    }
    let mut by_type: Vec<TypeRow> = (0..types)
        .filter(|&t| type_count[t] > 0)
        .map(|t| TypeRow {
            name: snap.node_type_names[t].clone(),
            count: type_count[t],
            self_size: type_size[t],
        })
        .collect();
    by_type.sort_by(|a, b| b.self_size.cmp(&a.self_size).then(a.name.cmp(&b.name)));

    let rows = class_rows(snap, analysis);
    let mut by_retained = rows.clone();
    by_retained.sort_by(|a, b| {
        b.retained_size
            .cmp(&a.retained_size)
            .then(a.name.cmp(&b.name))
    });
    by_retained.truncate(top);
    let mut by_count = rows;
    by_count.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    by_count.truncate(top);

    let synthetic = snap.kinds.node_synthetic;
    let largest = top_by_retained(snap, analysis, top, |v| {
        v != 0 && analysis.is_reachable(v) && Some(snap.type_index(v)) != synthetic
    })
    .into_iter()
    .map(|v| LargeObject {
        node: v,
        id: snap.id(v),
        name: snap.display_name(v),
        class: snap.class_name(v).into_owned(),
        self_size: snap.self_size(v),
        retained_size: analysis.retained(v),
        path: analysis.retainer_path(v),
    })
    .collect();

    Summary {
        nodes: snap.node_count() as u64,
        edges: snap.edge_count() as u64,
        total_self_size,
        reachable_nodes: analysis.reachable_count() as u64,
        reachable_self_size: analysis.retained(0),
        by_type,
        by_retained,
        by_count,
        largest,
    }
}
