//! The parsed snapshot: columnar node and edge arrays, the string arena, and names for them.

use std::borrow::Cow;
use std::ops::Range;

/// Position of a node in the snapshot (0 is the synthetic root), not its V8 object id.
pub type NodeIndex = u32;

/// All strings of a snapshot in one byte arena.
#[derive(Debug, Default)]
pub(crate) struct Strings {
    pub(crate) bytes: Vec<u8>,
    /// `starts[i]..starts[i + 1]` is string `i`; one more entry than strings.
    pub(crate) starts: Vec<u64>,
}

impl Strings {
    pub(crate) fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub(crate) fn get(&self, index: u32) -> Cow<'_, str> {
        let i = index as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&start), Some(&end)) => {
                String::from_utf8_lossy(&self.bytes[start as usize..end as usize])
            }
            _ => Cow::Borrowed(""),
        }
    }
}

/// Type indices with a meaning for the analysis, resolved from the header by name.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Kinds {
    pub(crate) edge_weak: Option<u8>,
    pub(crate) edge_shortcut: Option<u8>,
    pub(crate) edge_element: Option<u8>,
    pub(crate) edge_hidden: Option<u8>,
    pub(crate) node_object: Option<u8>,
    pub(crate) node_native: Option<u8>,
    pub(crate) node_hidden: Option<u8>,
    pub(crate) node_code: Option<u8>,
    pub(crate) node_closure: Option<u8>,
    pub(crate) node_synthetic: Option<u8>,
    pub(crate) node_string: Option<u8>,
    pub(crate) node_sliced_string: Option<u8>,
}

/// Where a node's source is (closures, scripts), from the `locations` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The node it belongs to.
    pub node: NodeIndex,
    /// V8's script id.
    pub script_id: u32,
    /// Zero-based line.
    pub line: u32,
    /// Zero-based column.
    pub column: u32,
}

/// A parsed heap snapshot in columns: node `i`'s fields are `node_*[i]`, its outgoing edges
/// are `first_edge[i]..first_edge[i + 1]`.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(crate) node_type_names: Vec<String>,
    pub(crate) edge_type_names: Vec<String>,
    pub(crate) kinds: Kinds,
    pub(crate) strings: Strings,
    pub(crate) node_type: Vec<u8>,
    pub(crate) node_name: Vec<u32>,
    pub(crate) node_id: Vec<u32>,
    /// Bytes.
    pub(crate) node_self_size: Vec<u64>,
    pub(crate) first_edge: Vec<u32>,
    pub(crate) edge_type: Vec<u8>,
    pub(crate) edge_name: Vec<u32>,
    pub(crate) edge_to: Vec<NodeIndex>,
    /// Sorted by node.
    pub(crate) locations: Vec<Location>,
}

impl Snapshot {
    /// Number of nodes (heap objects plus synthetic ones).
    pub fn node_count(&self) -> usize {
        self.node_type.len()
    }

    /// Number of edges (references).
    pub fn edge_count(&self) -> usize {
        self.edge_to.len()
    }

    /// Number of strings in the `strings` section.
    pub fn string_count(&self) -> usize {
        self.strings.len()
    }

    /// The names of node types, as the header lists them.
    pub fn node_type_names(&self) -> &[String] {
        &self.node_type_names
    }

    /// V8's object id of a node: stable across snapshots of one process.
    pub fn id(&self, node: NodeIndex) -> u32 {
        self.node_id[node as usize]
    }

    /// Self size in bytes.
    pub fn self_size(&self, node: NodeIndex) -> u64 {
        self.node_self_size[node as usize]
    }

    /// Index of the node's type in [`Snapshot::node_type_names`].
    pub fn type_index(&self, node: NodeIndex) -> u8 {
        self.node_type[node as usize]
    }

    /// The node's type name, e.g. `object`, `closure`, `string`.
    pub fn type_name(&self, node: NodeIndex) -> &str {
        self.node_type_names
            .get(self.node_type[node as usize] as usize)
            .map_or("", String::as_str)
    }

    /// The node's name: the constructor for objects, the value for strings, the function
    /// name for closures.
    pub fn name(&self, node: NodeIndex) -> Cow<'_, str> {
        self.strings.get(self.node_name[node as usize])
    }

    /// The source location of a node, when the snapshot has one.
    pub fn location(&self, node: NodeIndex) -> Option<Location> {
        let i = self
            .locations
            .binary_search_by_key(&node, |l| l.node)
            .ok()?;
        self.locations.get(i).copied()
    }

    /// Edge indices of a node's outgoing edges.
    pub fn edges(&self, node: NodeIndex) -> Range<usize> {
        self.first_edge[node as usize] as usize..self.first_edge[node as usize + 1] as usize
    }

    /// The node an edge points to.
    pub fn edge_target(&self, edge: usize) -> NodeIndex {
        self.edge_to[edge]
    }

    /// Whether the edge is weak (does not keep its target alive).
    pub fn is_weak(&self, edge: usize) -> bool {
        Some(self.edge_type[edge]) == self.kinds.edge_weak
    }

    /// How DevTools labels an edge: the property or variable name, or `[index]` for
    /// elements and hidden edges.
    pub fn edge_label(&self, edge: usize) -> String {
        let kind = Some(self.edge_type[edge]);
        if kind == self.kinds.edge_element || kind == self.kinds.edge_hidden {
            format!("[{}]", self.edge_name[edge])
        } else {
            self.strings.get(self.edge_name[edge]).into_owned()
        }
    }

    /// The edge label with element indices left out, for grouping similar paths.
    pub(crate) fn edge_label_generic(&self, edge: usize) -> Cow<'_, str> {
        let kind = Some(self.edge_type[edge]);
        if kind == self.kinds.edge_element || kind == self.kinds.edge_hidden {
            Cow::Borrowed("[]")
        } else {
            self.strings.get(self.edge_name[edge])
        }
    }

    /// A key that groups nodes by class (see [`Snapshot::class_name_of`]).
    pub(crate) fn class_key(&self, node: NodeIndex) -> u32 {
        let kind = self.node_type[node as usize];
        if Some(kind) == self.kinds.node_object || Some(kind) == self.kinds.node_native {
            self.node_name[node as usize]
        } else {
            // Strings counts are checked to fit in u32 with room for the types.
            self.strings.len() as u32 + u32::from(kind)
        }
    }

    /// How many distinct class keys there can be.
    pub(crate) fn class_key_count(&self) -> usize {
        self.strings.len() + self.node_type_names.len()
    }

    /// The class a key stands for, as DevTools names it: the constructor for objects,
    /// `(system)` for hidden nodes, `(compiled code)`, otherwise `(type)`.
    pub(crate) fn class_name_of(&self, key: u32) -> Cow<'_, str> {
        let strings = self.strings.len() as u32;
        if key < strings {
            return self.strings.get(key);
        }
        let kind = (key - strings) as u8;
        if Some(kind) == self.kinds.node_hidden {
            Cow::Borrowed("(system)")
        } else if Some(kind) == self.kinds.node_code {
            Cow::Borrowed("(compiled code)")
        } else {
            let name = self
                .node_type_names
                .get(kind as usize)
                .map_or("unknown", String::as_str);
            Cow::Owned(format!("({name})"))
        }
    }

    /// The node's class name (see [`Snapshot::class_name_of`]).
    pub fn class_name(&self, node: NodeIndex) -> Cow<'_, str> {
        self.class_name_of(self.class_key(node))
    }

    /// How DevTools shows a node in a retainer path, without its id: `Set`, `"text"`,
    /// `handler()`, `(system) Context`.
    pub fn display_name(&self, node: NodeIndex) -> String {
        let kind = Some(self.node_type[node as usize]);
        let name = self.name(node);
        if kind == self.kinds.node_object || kind == self.kinds.node_native {
            name.into_owned()
        } else if kind == self.kinds.node_string || kind == self.kinds.node_sliced_string {
            let mut text: String = name.chars().take(40).collect();
            if name.chars().nth(40).is_some() {
                text.push('…');
            }
            format!("\"{text}\"")
        } else if kind == self.kinds.node_closure {
            if name.is_empty() {
                "(anonymous)()".to_owned()
            } else {
                format!("{name}()")
            }
        } else if kind == self.kinds.node_synthetic {
            name.into_owned()
        } else if name.is_empty() {
            format!("({})", self.type_name(node))
        } else {
            format!("({}) {name}", self.type_name(node))
        }
    }
}

impl Snapshot {
    /// A retainer path the way DevTools shows it: each node as `name @id`, followed by the
    /// edge to the next one: `(GC roots) @1 → … → Context @45 .leaky → Set @123`. Long
    /// paths keep their first and last steps.
    pub fn path_text(&self, steps: &[crate::PathStep]) -> String {
        const HEAD: usize = 6;
        const TAIL: usize = 14;
        let mut out = String::new();
        for (i, step) in steps.iter().enumerate() {
            if steps.len() > HEAD + TAIL + 1 && i >= HEAD && i < steps.len() - TAIL {
                if i == HEAD {
                    out.push_str(&format!(" → … {} more …", steps.len() - HEAD - TAIL));
                }
                continue;
            }
            if i > 0 {
                out.push_str(" → ");
            }
            if let Some(edge) = step.edge {
                let label = self.edge_label(edge);
                if label.starts_with('[') {
                    out.push_str(&label);
                } else {
                    out.push('.');
                    out.push_str(&label);
                }
                out.push(' ');
            }
            out.push_str(&self.display_name(step.node));
            out.push_str(&format!(" @{}", self.id(step.node)));
        }
        out
    }
}
