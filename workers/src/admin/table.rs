//! Aligned columns for people; scripts use `--json`.

/// A table: a header row and rows of cells, rendered with each column padded to its widest
/// cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rendered table, one line per row, each ending in a newline. A cell's line breaks
    /// become spaces (error messages span lines) so one row stays one line.
    pub fn render(&self) -> String {
        let clean = |c: &str| c.replace(['\n', '\r', '\t'], " ");
        let all: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|r| r.iter().map(|c| clean(c)).collect())
            .collect();
        let columns = all.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                all.iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &all {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                // The last column is not padded: no trailing blanks.
                if i + 1 < row.len() {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for an absent value, so a column never looks shifted.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let mut t = Table::new(&["TOPIC", "P", "LAG"]);
        t.row(vec!["taskflow.task-events".into(), "0".into(), "12".into()]);
        t.row(vec!["r".into(), "10".into(), "3".into()]);
        assert_eq!(
            t.render(),
            "TOPIC                 P   LAG\n\
             taskflow.task-events  0   12\n\
             r                     10  3\n"
        );
    }

    #[test]
    fn line_breaks_in_cells_stay_on_one_line_and_width_counts_characters() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["é\nx".into(), "y".into()]);
        assert_eq!(t.render(), "A    B\né x  y\n");
        assert_eq!(opt(None::<i64>), "-");
        assert_eq!(opt(Some(3)), "3");
    }
}
