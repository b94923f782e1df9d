//! Test helpers: write small snapshots as V8 would, from a list of nodes and edges.

/// A node for [`snapshot_json`]: (type name, name, id, self size, edges as (type, name, to)).
pub(crate) type TestNode<'a> = (&'a str, &'a str, u32, u64, Vec<(&'a str, &'a str, usize)>);

pub(crate) const NODE_TYPES: [&str; 8] = [
    "hidden",
    "array",
    "string",
    "object",
    "code",
    "closure",
    "synthetic",
    "native",
];
pub(crate) const EDGE_TYPES: [&str; 7] = [
    "context", "element", "property", "internal", "hidden", "shortcut", "weak",
];

/// A snapshot in V8's format; `node_order` permutes the node fields (names and numbers alike).
pub(crate) fn snapshot_json(nodes: &[TestNode<'_>], node_order: [usize; 6]) -> String {
    let fields = [
        "type",
        "name",
        "id",
        "self_size",
        "edge_count",
        "trace_node_id",
    ];
    let mut strings: Vec<String> = vec![String::new()];
    let mut intern = |s: &str| -> usize {
        if let Some(i) = strings.iter().position(|x| x == s) {
            return i;
        }
        strings.push(s.to_owned());
        strings.len() - 1
    };
    let mut node_numbers = Vec::new();
    let mut edge_numbers = Vec::new();
    for (kind, name, id, size, edges) in nodes {
        let t = NODE_TYPES
            .iter()
            .position(|k| k == kind)
            .expect("node type");
        let values = [
            t,
            intern(name),
            *id as usize,
            *size as usize,
            edges.len(),
            0,
        ];
        for &f in &node_order {
            node_numbers.push(values[f].to_string());
        }
        for (ekind, ename, to) in edges {
            let et = EDGE_TYPES
                .iter()
                .position(|k| k == ekind)
                .expect("edge type");
            let name = if *ekind == "element" || *ekind == "hidden" {
                ename.parse().expect("index")
            } else {
                intern(ename)
            };
            edge_numbers.push(format!("{et},{name},{}", to * 6));
        }
    }
    let node_fields: Vec<String> = node_order
        .iter()
        .map(|&f| format!("\"{}\"", fields[f]))
        .collect();
    let node_types: Vec<String> = node_order
        .iter()
        .map(|&f| {
            if f == 0 {
                format!(
                    "[{}]",
                    NODE_TYPES
                        .iter()
                        .map(|t| format!("\"{t}\""))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            } else {
                "\"number\"".to_owned()
            }
        })
        .collect();
    let edge_types = EDGE_TYPES
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{{\"snapshot\":{{\"meta\":{{\"node_fields\":[{}],\"node_types\":[{}],\
         \"edge_fields\":[\"type\",\"name_or_index\",\"to_node\"],\
         \"edge_types\":[[{edge_types}],\"string_or_number\",\"node\"]}},\
         \"node_count\":{},\"edge_count\":{}}},\n\"nodes\":[{}],\n\"edges\":[{}],\n\
         \"trace_function_infos\":[],\"samples\":[],\n\"strings\":[{}]}}",
        node_fields.join(","),
        node_types.join(","),
        nodes.len(),
        edge_numbers.len(),
        node_numbers.join(","),
        edge_numbers.join(",\n"),
        strings
            .iter()
            .map(|s| serde_json::to_string(s).expect("string"))
            .collect::<Vec<_>>()
            .join(",\n"),
    )
}

/// The field order V8 writes.
pub(crate) const V8_ORDER: [usize; 6] = [0, 1, 2, 3, 4, 5];
