//! A plain-text table with fixed-width columns, for the harness's reports.

use std::fmt;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Rows of cells under a header; each column is as wide as its widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            columns: columns
                .iter()
                .map(|&(name, align)| (name.to_owned(), align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra ones are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Appends a separator line.
    pub fn rule(&mut self) {
        self.rows.push(Vec::new());
    }

    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| cell.chars().count())
                    .fold(name.chars().count(), usize::max)
            })
            .collect()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            let mut out = String::new();
            for (i, ((_, align), width)) in self.columns.iter().zip(&widths).enumerate() {
                let cell = cells.get(i).copied().unwrap_or("");
                if i > 0 {
                    out.push_str("  ");
                }
                match align {
                    Align::Left => out.push_str(&format!("{cell:<width$}")),
                    Align::Right => out.push_str(&format!("{cell:>width$}")),
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        let header: Vec<&str> = self.columns.iter().map(|(name, _)| name.as_str()).collect();
        line(f, &header)?;
        writeln!(f, "{}", "-".repeat(total))?;
        for row in &self.rows {
            if row.is_empty() {
                writeln!(f, "{}", "-".repeat(total))?;
            } else {
                let cells: Vec<&str> = row.iter().map(String::as_str).collect();
                line(f, &cells)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        table.row(vec!["a".to_owned(), "100".to_owned()]);
        table.rule();
        table.row(vec!["longer".to_owned(), "2".to_owned()]);
        let expected = "name      n\n-----------\na       100\n-----------\nlonger    2\n";
        assert_eq!(table.to_string(), expected);
    }
}
