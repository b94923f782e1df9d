//! The graph analysis: dominators (semi-NCA, iterative), retained sizes and shortest
//! retainer paths from the root, over essential edges only (as DevTools: weak edges never
//! retain, shortcut edges only from the root).

use crate::snapshot::{NodeIndex, Snapshot};

/// "No node": the root's dominator and parent, and those of unreachable nodes.
const NONE: u32 = u32::MAX;

/// Dominators, retained sizes and shortest paths of one snapshot.
#[derive(Debug)]
pub struct Analysis {
    /// Immediate dominator per node; `NONE` for the root and unreachable nodes.
    idom: Vec<u32>,
    /// Retained size per node, in bytes (its self size when unreachable).
    retained: Vec<u64>,
    /// Predecessor on a shortest path from the root; `NONE` when unreached.
    bfs_parent: Vec<u32>,
    /// The edge from `bfs_parent` to the node.
    bfs_edge: Vec<u32>,
    reachable: usize,
}

/// One step of a retainer path: a node, and the edge that leads to it from the previous step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStep {
    /// The node reached.
    pub node: NodeIndex,
    /// The edge taken from the previous step (none for the first step).
    pub edge: Option<usize>,
}

/// Whether the edge keeps its target alive for the analysis.
fn essential(snap: &Snapshot, from: NodeIndex, edge: usize) -> bool {
    let kind = Some(snap.edge_type[edge]);
    kind != snap.kinds.edge_weak && (kind != snap.kinds.edge_shortcut || from == 0)
}

impl Analysis {
    /// Computes dominators, retained sizes and shortest paths; time and memory linear in the
    /// snapshot (near-linear for the dominators).
    pub fn new(snap: &Snapshot) -> Analysis {
        let (idom, order) = dominators(snap);
        let reachable = order.len();
        let mut retained = snap.node_self_size.clone();
        // Preorder puts every node after its dominator: add up from the deepest.
        for &v in order.iter().rev() {
            let d = idom[v as usize];
            if d != NONE {
                retained[d as usize] += retained[v as usize];
            }
        }
        drop(order);
        let (bfs_parent, bfs_edge) = shortest_paths(snap);
        Analysis {
            idom,
            retained,
            bfs_parent,
            bfs_edge,
            reachable,
        }
    }

    /// Bytes that would be freed if the node were gone.
    pub fn retained(&self, node: NodeIndex) -> u64 {
        self.retained[node as usize]
    }

    /// Whether the node is reachable from the root over essential edges.
    pub fn is_reachable(&self, node: NodeIndex) -> bool {
        node == 0 || self.idom[node as usize] != NONE
    }

    /// How many nodes are reachable (the root included).
    pub fn reachable_count(&self) -> usize {
        self.reachable
    }

    /// The node's immediate dominator; none for the root and unreachable nodes.
    pub fn immediate_dominator(&self, node: NodeIndex) -> Option<NodeIndex> {
        let d = self.idom[node as usize];
        (d != NONE).then_some(d)
    }

    /// A shortest retainer path from the root (left out) to `node`; empty when unreachable.
    pub fn retainer_path(&self, node: NodeIndex) -> Vec<PathStep> {
        let mut steps = Vec::new();
        let mut v = node;
        while v != 0 {
            let parent = self.bfs_parent[v as usize];
            if parent == NONE {
                return Vec::new();
            }
            steps.push(PathStep {
                node: v,
                edge: Some(self.bfs_edge[v as usize] as usize),
            });
            v = parent;
        }
        steps.reverse();
        if let Some(first) = steps.first_mut() {
            first.edge = None;
        }
        steps
    }

    /// Children of each node in the dominator tree, as offsets and a flat list.
    pub(crate) fn dominator_children(&self) -> (Vec<u32>, Vec<u32>) {
        let n = self.idom.len();
        let mut start = vec![0u32; n + 1];
        for &d in &self.idom {
            if d != NONE {
                start[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut children = vec![0u32; start[n] as usize];
        for (v, &d) in self.idom.iter().enumerate() {
            if d != NONE {
                children[fill[d as usize] as usize] = v as u32;
                fill[d as usize] += 1;
            }
        }
        (start, children)
    }

    /// Visits the dominator tree depth first: `visit(node, true)` on the way down and
    /// `visit(node, false)` on the way back up.
    pub(crate) fn walk_dominator_tree(&self, mut visit: impl FnMut(NodeIndex, bool)) {
        let (start, children) = self.dominator_children();
        let mut stack: Vec<(u32, u32)> = vec![(0, start[0])];
        visit(0, true);
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            if next < start[v as usize + 1] {
                top.1 += 1;
                let c = children[next as usize];
                visit(c, true);
                stack.push((c, start[c as usize]));
            } else {
                stack.pop();
                visit(v, false);
            }
        }
    }

    /// Sums, per group, the retained sizes of the group's members that have no other member
    /// of the same group above them in the dominator tree (so nothing is counted twice, as
    /// DevTools does for constructors). `group(node)` returns a group below `groups`.
    pub(crate) fn group_retained(
        &self,
        groups: usize,
        group: impl Fn(NodeIndex) -> Option<u32>,
    ) -> Vec<u64> {
        let mut sums = vec![0u64; groups];
        let mut active = vec![0u32; groups];
        self.walk_dominator_tree(|v, down| {
            if let Some(g) = group(v) {
                let g = g as usize;
                if down {
                    if active[g] == 0 {
                        sums[g] += self.retained[v as usize];
                    }
                    active[g] += 1;
                } else {
                    active[g] -= 1;
                }
            }
        });
        sums
    }

    /// The members that have no other member above them in the dominator tree.
    pub(crate) fn outermost(&self, member: impl Fn(NodeIndex) -> bool) -> Vec<NodeIndex> {
        let mut out = Vec::new();
        let mut active = 0u32;
        self.walk_dominator_tree(|v, down| {
            if member(v) {
                if down {
                    if active == 0 {
                        out.push(v);
                    }
                    active += 1;
                } else {
                    active -= 1;
                }
            }
        });
        out
    }
}

/// Which nodes are reachable from the root over essential edges (cheaper than a full
/// [`Analysis`] when only that is needed).
pub(crate) fn reachable(snap: &Snapshot) -> Vec<bool> {
    let mut seen = vec![false; snap.node_count()];
    let mut queue = vec![0u32];
    seen[0] = true;
    while let Some(v) = queue.pop() {
        for e in snap.edges(v) {
            let w = snap.edge_to[e];
            if essential(snap, v, e) && !seen[w as usize] {
                seen[w as usize] = true;
                queue.push(w);
            }
        }
    }
    seen
}

/// Reachable nodes in depth-first preorder from the root over essential edges, and the
/// DFS-tree parent of each (as a preorder number).
fn preorder(snap: &Snapshot) -> (Vec<u32>, Vec<u32>) {
    let n = snap.node_count();
    let mut seen = vec![false; n];
    let mut order = vec![0u32];
    let mut parent = vec![0u32];
    // (node, its preorder number, next edge to look at)
    let mut stack: Vec<(u32, u32, u32)> = vec![(0, 0, snap.first_edge[0])];
    seen[0] = true;
    while let Some(top) = stack.last_mut() {
        let (v, number) = (top.0, top.1);
        let end = snap.first_edge[v as usize + 1];
        let mut pushed = None;
        while top.2 < end {
            let e = top.2 as usize;
            top.2 += 1;
            if !essential(snap, v, e) {
                continue;
            }
            let w = snap.edge_to[e];
            if !seen[w as usize] {
                seen[w as usize] = true;
                pushed = Some(w);
                break;
            }
        }
        match pushed {
            Some(w) => {
                let w_number = order.len() as u32;
                order.push(w);
                parent.push(number);
                stack.push((w, w_number, snap.first_edge[w as usize]));
            }
            None => {
                stack.pop();
            }
        }
    }
    (order, parent)
}

/// Immediate dominators by semi-NCA (Georgiadis; the variant LLVM uses), all loops
/// iterative so that deep heaps (long linked lists) cannot overflow the stack. Returns the
/// dominator of each node in node space and the reachable nodes in preorder.
fn dominators(snap: &Snapshot) -> (Vec<u32>, Vec<u32>) {
    let n = snap.node_count();
    let (order, parent) = preorder(snap);
    let r = order.len();
    let mut number = vec![NONE; n];
    for (i, &v) in order.iter().enumerate() {
        number[v as usize] = i as u32;
    }
    let mut pred_start = vec![0u32; r + 1];
    for &v in &order {
        for e in snap.edges(v) {
            if essential(snap, v, e) {
                let w = number[snap.edge_to[e] as usize] as usize;
                pred_start[w + 1] += 1;
            }
        }
    }
    for i in 0..r {
        pred_start[i + 1] += pred_start[i];
    }
    let mut fill = pred_start.clone();
    let mut preds = vec![0u32; pred_start[r] as usize];
    for (i, &v) in order.iter().enumerate() {
        for e in snap.edges(v) {
            if essential(snap, v, e) {
                let w = number[snap.edge_to[e] as usize] as usize;
                preds[fill[w] as usize] = i as u32;
                fill[w] += 1;
            }
        }
    }
    drop(fill);
    drop(number);

    let mut ancestor = parent.clone();
    let mut idom = parent;
    let mut semi: Vec<u32> = (0..r as u32).collect();
    let mut label = semi.clone();
    let mut stack = Vec::new();
    for i in (1..r).rev() {
        let mut s = idom[i];
        for &p in &preds[pred_start[i] as usize..pred_start[i + 1] as usize] {
            let x = eval(
                p,
                i as u32 + 1,
                &mut ancestor,
                &mut label,
                &semi,
                &mut stack,
            );
            s = s.min(semi[x as usize]);
        }
        semi[i] = s;
    }
    drop(preds);
    drop(pred_start);
    drop(ancestor);
    drop(label);
    for i in 1..r {
        let sd = semi[i];
        let mut c = idom[i];
        while c > sd {
            c = idom[c as usize];
        }
        idom[i] = c;
    }
    let mut out = vec![NONE; n];
    for i in 1..r {
        out[order[i] as usize] = order[idom[i] as usize];
    }
    (out, order)
}

/// Semi-NCA's EVAL with path compression over the linked part of the forest (vertices
/// numbered at least `last_linked`), iteratively.
fn eval(
    v: u32,
    last_linked: u32,
    ancestor: &mut [u32],
    label: &mut [u32],
    semi: &[u32],
    stack: &mut Vec<u32>,
) -> u32 {
    if ancestor[v as usize] < last_linked {
        return label[v as usize];
    }
    let mut x = v;
    loop {
        stack.push(x);
        x = ancestor[x as usize];
        if ancestor[x as usize] < last_linked {
            break;
        }
    }
    let mut p = x;
    let mut p_label = label[p as usize];
    let mut last = v;
    while let Some(y) = stack.pop() {
        ancestor[y as usize] = ancestor[p as usize];
        let y_label = label[y as usize];
        if semi[p_label as usize] < semi[y_label as usize] {
            label[y as usize] = p_label;
        } else {
            p_label = y_label;
        }
        p = y;
        last = y;
    }
    label[last as usize]
}

/// Breadth-first search from the root over essential edges: each node's predecessor and
/// edge on a shortest path. As DevTools does, the user roots (the root's non-synthetic
/// children: the global objects) go first; and the handle scopes and strong roots, which hold
/// whatever the runtime happened to touch while the snapshot was taken, go last: a path then
/// runs through the variables and structures that really keep an object.
fn shortest_paths(snap: &Snapshot) -> (Vec<u32>, Vec<u32>) {
    let n = snap.node_count();
    let mut parent = vec![NONE; n];
    let mut via = vec![NONE; n];
    if n == 0 {
        return (parent, via);
    }
    let synthetic = |w: u32| snap.type_name(w) == "synthetic";
    // Handle scopes and the strong roots (which include the snapshot generator's own identity
    // map) point at whatever the runtime touched while writing the snapshot.
    let deferred = |w: u32| {
        synthetic(w) && {
            let name = snap.display_name(w);
            name.starts_with("(Handle scope") || name.starts_with("(Strong roots")
        }
    };
    let mut queue = Vec::with_capacity(n);
    let mut later = Vec::new();
    parent[0] = 0;
    for e in snap.edges(0) {
        let w = snap.edge_to[e];
        if essential(snap, 0, e) && !synthetic(w) && parent[w as usize] == NONE {
            parent[w as usize] = 0;
            via[w as usize] = e as u32;
            queue.push(w);
        }
    }
    // Then the root itself: the synthetic roots, and what only they reach.
    queue.push(0u32);
    let mut head = 0;
    loop {
        while head < queue.len() {
            let v = queue[head];
            head += 1;
            for e in snap.edges(v) {
                if !essential(snap, v, e) {
                    continue;
                }
                let w = snap.edge_to[e];
                if parent[w as usize] != NONE {
                    continue;
                }
                parent[w as usize] = v;
                via[w as usize] = e as u32;
                if deferred(w) {
                    later.push(w);
                } else {
                    queue.push(w);
                }
            }
        }
        if later.is_empty() {
            break;
        }
        queue.append(&mut later);
    }
    (parent, via)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::testutil::{snapshot_json, TestNode, V8_ORDER};
    use proptest::prelude::*;

    fn build(sizes: &[u64], edges: &[(usize, usize, bool)]) -> Snapshot {
        let mut nodes: Vec<TestNode<'_>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| ("object", "O", i as u32 * 2 + 1, size, Vec::new()))
            .collect();
        for &(from, to, weak) in edges {
            nodes[from]
                .4
                .push((if weak { "weak" } else { "property" }, "p", to));
        }
        parse(snapshot_json(&nodes, V8_ORDER).as_bytes()).expect("test snapshot")
    }

    /// Retained size by definition: what becomes unreachable when the node is removed.
    fn naive_retained(snap: &Snapshot, node: u32) -> u64 {
        let n = snap.node_count();
        let walk = |removed: Option<u32>| {
            let mut seen = vec![false; n];
            let mut stack = vec![0u32];
            seen[0] = true;
            while let Some(v) = stack.pop() {
                for e in snap.edges(v) {
                    let w = snap.edge_to[e];
                    if !snap.is_weak(e) && Some(w) != removed && !seen[w as usize] {
                        seen[w as usize] = true;
                        stack.push(w);
                    }
                }
            }
            seen
        };
        let all = walk(None);
        if node == 0 {
            return (0..n)
                .filter(|&v| all[v])
                .map(|v| snap.self_size(v as u32))
                .sum();
        }
        if !all[node as usize] {
            return snap.self_size(node);
        }
        let without = walk(Some(node));
        (0..n)
            .filter(|&v| all[v] && (!without[v] || v as u32 == node))
            .map(|v| snap.self_size(v as u32))
            .sum()
    }

    #[test]
    fn diamond_and_weak_edges() {
        // 0 → 1 → {2, 3} → 4; 0 -weak→ 5
        let snap = build(
            &[0, 1, 10, 100, 1000, 7],
            &[
                (0, 1, false),
                (1, 2, false),
                (1, 3, false),
                (2, 4, false),
                (3, 4, false),
                (0, 5, true),
            ],
        );
        let a = Analysis::new(&snap);
        assert_eq!(a.retained(1), 1111);
        assert_eq!(a.retained(2), 10);
        assert_eq!(a.immediate_dominator(4), Some(1));
        assert!(!a.is_reachable(5));
        assert_eq!(a.retained(0), 1111);
        let path: Vec<u32> = a.retainer_path(4).iter().map(|s| s.node).collect();
        assert_eq!(path, vec![1, 2, 4]);
        assert!(a.retainer_path(5).is_empty());
    }

    #[test]
    fn a_long_cyclic_chain_does_not_overflow() {
        let n = 200_000;
        let sizes = vec![1u64; n];
        let mut edges: Vec<(usize, usize, bool)> = (0..n - 1).map(|i| (i, i + 1, false)).collect();
        edges.push((n - 1, 1, false));
        let snap = build(&sizes, &edges);
        let a = Analysis::new(&snap);
        assert_eq!(a.retained(1), n as u64 - 1);
        assert_eq!(a.retained(n as u32 / 2), (n - n / 2) as u64);
        assert_eq!(a.retainer_path(n as u32 - 1).len(), n - 1);
    }

    proptest! {
        #[test]
        fn retained_sizes_match_the_definition(
            sizes in proptest::collection::vec(0u64..1000, 2..24),
            raw in proptest::collection::vec((any::<usize>(), any::<usize>(), proptest::bool::weighted(0.15)), 0..60),
        ) {
            let n = sizes.len();
            let edges: Vec<_> = raw.iter().map(|&(a, b, w)| (a % n, b % n, w)).collect();
            let snap = build(&sizes, &edges);
            let a = Analysis::new(&snap);
            for v in 0..n as u32 {
                prop_assert_eq!(a.retained(v), naive_retained(&snap, v), "node {}", v);
            }
        }
    }
}
